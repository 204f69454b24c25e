"""Crop and the elementwise ops of FCN's skip connections.

FCN's score maps of different resolutions are aligned by *cropping* the larger one at an
offset from its top-left corner to the size of the smaller one, then summed. The offsets
(5, 9 and 31 in FCN-8s) come from composing each layer's coordinate map
(:mod:`minifcn.models.coords`); they are not centred crops.
"""
from __future__ import annotations

from ..backend import get_array_module
from ._util import check_grad, check_input, pair


def crop_forward(x, offset, size, name="crop"):
    """Take the window ``x[:, :, oy:oy+h, ox:ox+w]``.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    offset : int or (int, int)
        ``(oy, ox)`` of the window's top-left corner in ``x``.
    size : (int, int)
        ``(h, w)``: the reference blob's spatial size.

    Returns
    -------
    out : array, shape (N, C, h, w)
    cache : tuple
    """
    check_input(x, name)
    oy, ox = pair(offset, "offset")
    h, w = pair(size, "size")
    if oy < 0 or ox < 0 or oy + h > x.shape[2] or ox + w > x.shape[3]:
        raise ValueError(
            f"{name}: window {h}x{w} at offset {(oy, ox)} does not fit in input {tuple(x.shape)}"
        )
    # explicit end indices: x[a:-0] would be empty
    return x[:, :, oy:oy + h, ox:ox + w], (x.shape, oy, ox, (h, w))


def crop_backward(dout, cache, name="crop"):
    """Zero-pad the gradient back to the input's shape (cropped pixels get no gradient)."""
    xp = get_array_module(dout)
    x_shape, oy, ox, (h, w) = cache
    check_grad(dout, x_shape[:2] + (h, w), name)
    dx = xp.zeros(x_shape, dtype=dout.dtype)
    dx[:, :, oy:oy + h, ox:ox + w] = dout
    return dx


def crop_naive(x, offset, size):
    """Loop twin of :func:`crop_forward`."""
    xp = get_array_module(x)
    oy, ox = pair(offset)
    h, w = pair(size)
    out = xp.zeros(x.shape[:2] + (h, w), dtype=x.dtype)
    for i in range(h):
        for j in range(w):
            out[:, :, i, j] = x[:, :, oy + i, ox + j]
    return out


def add_forward(a, b, name="add"):
    """Elementwise sum of two skip branches of equal shape; the gradient goes to both."""
    if a.shape != b.shape:
        raise ValueError(f"{name}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    return a + b, None


def add_backward(dout, cache):
    """Returns ``(da, db)``: both are ``dout``."""
    return dout, dout


def scale_forward(x, factor):
    """Multiply by a fixed ``factor`` (FCN-8s at-once scales pool4 by 0.01, pool3 by 1e-4)."""
    return x * x.dtype.type(factor), factor


def scale_backward(dout, cache):
    """``dx = factor * dout``."""
    return dout * dout.dtype.type(cache)

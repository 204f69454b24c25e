"""Max-pooling with Caffe's ceil rounding, and its backward to each window's winner.

FCN pools with ``ceil`` rounding: ``H_out = ceil((H + 2*padding - k) / stride) + 1``, so the
last window may hang off the bottom/right edge; it pools only the pixels that exist. That is
what keeps every FCN crop in bounds for every input size. A last window that would hold no
pixel at all is dropped, as PyTorch does (:func:`~minifcn.ops.conv_output_size`).

The forward places the input on a ``-inf`` canvas large enough for every window (padding and
overhang included: ``-inf`` never wins), and then, as in im2col, reads each of the ``kh*kw``
kernel offsets as one strided slice: tap ``(i, j)`` of every window. A running maximum over
the taps gives the output; the tap that set it is each window's *argmax*, kept for the
backward. The backward sends every output gradient to its window's argmax, again one strided
slice per tap.

Tie rule: when several pixels of a window share the maximum, the first one in row-major
window order (top-left first) wins and receives the whole gradient, as in Caffe and PyTorch.
The forward's strict ``>`` keeps the earlier tap.
"""
from __future__ import annotations

from ..backend import get_array_module
from ._util import check_grad, check_input, conv_output_size, pair


def check_pool_args(x, kernel_size, stride, padding, ceil_mode, name):
    """Validate a max-pool's arguments; return ``(kh, kw, sh, sw, ph, pw, out_h, out_w)``."""
    check_input(x, name)
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = pair(stride if stride is not None else kernel_size, "stride")
    ph, pw = pair(padding, "padding")
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"{name}: padding {(ph, pw)} must be at most half the kernel {(kh, kw)}")
    h, w = x.shape[2:]
    out_h = conv_output_size(h, kh, sh, ph, ceil_mode)
    out_w = conv_output_size(w, kw, sw, pw, ceil_mode)
    if out_h < 1 or out_w < 1:
        hint = "" if ceil_mode else "; ceil_mode=True would pool it"
        raise ValueError(f"{name}: kernel {kh}x{kw} is larger than the padded input "
                         f"{h + 2 * ph}x{w + 2 * pw} (input {tuple(x.shape)}){hint}")
    return kh, kw, sh, sw, ph, pw, out_h, out_w


def canvas_shape(x_shape, kernel, stride, padding, out_hw):
    """Shape of a canvas that holds the padded input and every window wholly:
    ``(N, C, max(H + 2*ph, (H_out - 1)*sh + kh), ...)`` (ceil mode's windows may hang off)."""
    (n, c, h, w), (kh, kw), (sh, sw), (ph, pw), (out_h, out_w) = (x_shape, kernel, stride,
                                                                  padding, out_hw)
    return (n, c, max(h + 2 * ph, (out_h - 1) * sh + kh), max(w + 2 * pw, (out_w - 1) * sw + kw))


def taps(kernel, stride, out_hw):
    """Yield ``(k, rows, cols)`` for every kernel offset ``(i, j)`` in row-major order:
    ``k = i*kw + j`` and the strided slices of the canvas that tap ``(i, j)`` of every window
    reads."""
    (kh, kw), (sh, sw), (out_h, out_w) = kernel, stride, out_hw
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + sh * (out_h - 1) + 1, sh)  # row i of every window
            yield i * kw + j, rows, slice(j, j + sw * (out_w - 1) + 1, sw)


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False, name="max_pool2d"):
    """Max-pool ``x`` over ``kernel_size`` windows.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int)
        Implicit ``-inf`` padding, at most half the kernel.
    ceil_mode : bool
        ``True`` for Caffe's (and FCN's) ceil rounding of the output size.
    name : str
        Layer name used in error messages.

    Returns
    -------
    out : array, shape (N, C, H_out, W_out)
    cache : tuple
        Each window's argmax (the tap ``i*kw + j`` that won it) and the geometry.

    Notes
    -----
    ``H_out = floor_or_ceil((H + 2*padding - kh) / stride) + 1``; with ``ceil_mode`` a last
    window that would start in the padding or past the input is dropped (PyTorch's rule).
    """
    kh, kw, sh, sw, ph, pw, out_h, out_w = check_pool_args(x, kernel_size, stride, padding,
                                                          ceil_mode, name)
    xp = get_array_module(x)
    h, w = x.shape[2:]
    shape = canvas_shape(x.shape, (kh, kw), (sh, sw), (ph, pw), (out_h, out_w))
    x_pad = xp.full(shape, -xp.inf, dtype=x.dtype)  # padding and overhang never win
    x_pad[:, :, ph:ph + h, pw:pw + w] = x
    out = xp.full(x.shape[:2] + (out_h, out_w), -xp.inf, dtype=x.dtype)
    argmax = xp.zeros(out.shape, dtype=xp.int64)
    for k, rows, cols in taps((kh, kw), (sh, sw), (out_h, out_w)):
        tap = x_pad[:, :, rows, cols]  # (N, C, H_out, W_out): tap k of every window
        better = tap > out  # strict: of equal pixels the earlier tap keeps the window
        out = xp.where(better, tap, out)
        argmax = xp.where(better, k, argmax)
    cache = (x.shape, shape, argmax, (kh, kw), (sh, sw), (ph, pw))
    return out, cache


def max_pool2d_backward(dout, cache, name="max_pool2d"):
    """Route each output gradient to the input pixel that won its window.

    Parameters
    ----------
    dout : array, shape (N, C, H_out, W_out)
    cache : tuple from :func:`max_pool2d_forward`
    name : str
        Layer name used in error messages.

    Returns
    -------
    dx : array, shape (N, C, H, W)
        A pixel that wins several overlapping windows (stride < kernel) collects the sum.
    """
    x_shape, shape, argmax, kernel, stride, (ph, pw) = cache
    check_grad(dout, argmax.shape, name)
    xp = get_array_module(dout)
    dx_pad = xp.zeros(shape, dtype=dout.dtype)
    for k, rows, cols in taps(kernel, stride, dout.shape[2:]):
        # the windows tap k won get their gradient; no pixel repeats within one slice
        dx_pad[:, :, rows, cols] += xp.where(argmax == k, dout, 0)
    h, w = x_shape[2:]
    return dx_pad[:, :, ph:ph + h, pw:pw + w]


def _window(size, o, k, s, p):
    """The pixels ``[start, stop)`` of window ``o`` along one axis, clipped to the image."""
    start = o * s - p
    return max(start, 0), min(start + k, size)


def max_pool2d_naive(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Loop twin of :func:`max_pool2d_forward`: each window clipped to the real image."""
    xp = get_array_module(x)
    kh, kw, sh, sw, ph, pw, out_h, out_w = check_pool_args(x, kernel_size, stride, padding,
                                                          ceil_mode, "naive")
    n, c, h, w = x.shape
    out = xp.zeros((n, c, out_h, out_w), dtype=x.dtype)
    for i in range(out_h):
        r0, r1 = _window(h, i, kh, sh, ph)
        for j in range(out_w):
            c0, c1 = _window(w, j, kw, sw, pw)
            out[:, :, i, j] = x[:, :, r0:r1, c0:c1].max(axis=(2, 3))
    return out


def max_pool2d_backward_naive(dout, x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Loop twin of :func:`max_pool2d_backward` with the same tie rule (first in row-major order)."""
    xp = get_array_module(x)
    kh, kw, sh, sw, ph, pw, out_h, out_w = check_pool_args(x, kernel_size, stride, padding,
                                                          ceil_mode, "naive")
    n, c, h, w = x.shape
    dx = xp.zeros_like(x)
    for b in range(n):
        for ch in range(c):
            for i in range(out_h):
                r0, r1 = _window(h, i, kh, sh, ph)
                for j in range(out_w):
                    c0, c1 = _window(w, j, kw, sw, pw)
                    window = x[b, ch, r0:r1, c0:c1]
                    r, s = divmod(int(window.argmax()), c1 - c0)  # first maximum, row-major
                    dx[b, ch, r0 + r, c0 + s] += dout[b, ch, i, j]
    return dx

"""Max-pooling with Caffe's ceil rounding, and its argmax-routed backward.

FCN pools with ``ceil`` rounding: ``H_out = ceil((H + 2*padding - k) / stride) + 1``, so the
last window may hang off the bottom/right edge; it pools only the pixels that exist. That is
what keeps every FCN crop in bounds for every input size.

Implementation: the input is padded with ``-inf`` (so padding and the overhang never win the
max), then, as in im2col, each of the ``kh*kw`` kernel offsets is one strided slice. A running
maximum over the offsets records which offset won (the argmax). Backward sends each output
gradient to that winner, again one strided slice per offset.

Cost: the ``-inf`` canvas is built only when some window reaches past the image (padding, or a
ceil-mode overhang); the argmax is kept as the offset index in the smallest integer type
(``int8`` for every kernel up to 11x11), a quarter of a float32 map; and when the windows tile
the canvas exactly (stride equal to the kernel, as in FCN) backward writes each offset's slice
once instead of zero-filling and accumulating.

Tie rule: when several pixels of a window share the maximum, the first one in row-major
window order (top-left first) wins and receives the whole gradient, as in Caffe and PyTorch.
"""
from __future__ import annotations

from ..backend import get_array_module
from ._threads import split_work
from ._util import check_input, conv_output_size, pair


def _geometry(x, kernel_size, stride, padding, ceil_mode, name):
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = pair(stride if stride is not None else kernel_size, "stride")
    ph, pw = pair(padding, "padding")
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"{name}: padding {(ph, pw)} must be at most half the kernel {(kh, kw)}")
    h, w = x.shape[2:]
    out_h = conv_output_size(h, kh, sh, ph, ceil_mode)
    out_w = conv_output_size(w, kw, sw, pw, ceil_mode)
    if out_h < 1 or out_w < 1:  # only in floor mode: ceil keeps a window that hangs off
        raise ValueError(
            f"{name}: kernel {kh}x{kw} is larger than the padded input "
            f"{h + 2 * ph}x{w + 2 * pw} (input {tuple(x.shape)}); ceil_mode=True would pool it"
        )
    return kh, kw, sh, sw, ph, pw, out_h, out_w


def _pad_neg_inf(x, ph, pw, full_h, full_w):
    """Place ``x`` at (ph, pw) in a ``-inf`` canvas of at least ``full_h x full_w``; ``x``
    itself when no padding is needed (a view, no copy)."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    if ph == pw == 0 and full_h <= h and full_w <= w:
        return x
    canvas = xp.full((n, c, max(full_h, h + ph), max(full_w, w + pw)), -xp.inf, dtype=x.dtype)
    canvas[:, :, ph:ph + h, pw:pw + w] = x
    return canvas


def _offset_dtype(xp, taps):
    """The smallest integer type that numbers ``taps`` kernel offsets."""
    return xp.int8 if taps <= 127 else xp.int16 if taps <= 32767 else xp.int32


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

    Returns
    -------
    out : array, shape (N, C, H_out, W_out)
    cache : tuple
        Shapes, geometry and the argmax: the winning kernel offset of every window.

    Notes
    -----
    ``H_out = floor_or_ceil((H + 2*padding - kh) / stride) + 1``; with ``ceil_mode`` a last
    window that would start inside the padding is dropped (Caffe's rule).
    """
    check_input(x, name)
    kh, kw, sh, sw, ph, pw, out_h, out_w = _geometry(x, kernel_size, stride, padding, ceil_mode, name)
    xp = get_array_module(x)
    x_pad = _pad_neg_inf(x, ph, pw, (out_h - 1) * sh + kh, (out_w - 1) * sw + kw)
    n, c = x.shape[:2]
    out = xp.empty((n, c, out_h, out_w), dtype=x.dtype)
    argmax = xp.zeros((n, c, out_h, out_w), dtype=_offset_dtype(xp, kh * kw))

    def pool(c0, c1):  # channels c0:c1 (the channels are split among CPU threads)
        best, won = out[:, c0:c1], argmax[:, c0:c1]
        for k in range(kh * kw):
            i, j = divmod(k, kw)
            v = x_pad[:, c0:c1, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw]
            if k == 0:
                best[...] = v
                continue
            better = v > best  # strict: on a tie the earlier offset keeps the max
            xp.maximum(best, v, out=best)
            won[better] = k

    split_work(pool, c, x.nbytes, xp)
    cache = (x.shape, x_pad.shape, argmax, (kh, kw), (sh, sw), (ph, pw))
    return out, cache


def max_pool2d_backward(dout, cache):
    """Route each output gradient to the input pixel that won its window.

    Parameters
    ----------
    dout : array, shape (N, C, H_out, W_out)

    Returns
    -------
    dx : array, shape (N, C, H, W)
    """
    x_shape, pad_shape, argmax, (kh, kw), (sh, sw), (ph, pw) = cache
    xp = get_array_module(dout)
    out_h, out_w = dout.shape[2:]
    # windows that tile the canvas (stride == kernel, no pixel left over) cover every pixel
    # exactly once: each offset's slice is written whole, no zero-fill, no accumulation
    tiled = (sh, sw) == (kh, kw) and pad_shape[2:] == (out_h * sh, out_w * sw)
    dx_pad = (xp.empty if tiled else xp.zeros)(pad_shape, dtype=dout.dtype)

    def route(c0, c1):  # channels c0:c1 (the channels are split among CPU threads)
        for k in range(kh * kw):
            i, j = divmod(k, kw)
            window = dx_pad[:, c0:c1, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw]
            routed = dout[:, c0:c1] * (argmax[:, c0:c1] == k)  # the gradient of the winners
            if tiled:
                window[...] = routed
            else:  # overlapping windows (stride < kernel) may share a winner: += accumulates
                window += routed

    split_work(route, dout.shape[1], dx_pad.nbytes, xp)
    h, w = x_shape[2:]
    return dx_pad[:, :, ph:ph + h, pw:pw + w]


def max_pool2d_pinned(x, cache):
    """Read, in every window of ``x``, the pixel that won it in the forward that made
    ``cache``: max-pooling with its branch pinned. Equal to that forward at its input; used
    by gradient checks so that a finite-difference step never switches winners.

    Returns an array of shape (N, C, H_out, W_out).
    """
    x_shape, pad_shape, argmax, (kh, kw), (sh, sw), (ph, pw) = cache
    xp = get_array_module(x)
    out_h, out_w = argmax.shape[2:]
    x_pad = _pad_neg_inf(x, ph, pw, pad_shape[2], pad_shape[3])
    out = xp.zeros(argmax.shape, dtype=x.dtype)
    for k in range(kh * kw):
        i, j = divmod(k, kw)
        v = x_pad[:, :, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw]
        out = xp.where(argmax == k, v, out)
    return out


def _window(h_or_w, o, k, s, p):
    start = o * s - p
    return max(start, 0), min(start + k, h_or_w)


def max_pool2d_naive(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Loop twin of :func:`max_pool2d_forward`: each window clipped to the real image."""
    xp = get_array_module(x)
    kh, kw, sh, sw, ph, pw, out_h, out_w = _geometry(x, kernel_size, stride, padding, ceil_mode, "naive")
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
    kh, kw, sh, sw, ph, pw, out_h, out_w = _geometry(x, kernel_size, stride, padding, ceil_mode, "naive")
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

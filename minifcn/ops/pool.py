"""Max-pooling with Caffe's ceil rounding, and its backward to each window's winner.

FCN pools with ``ceil`` rounding: ``H_out = ceil((H + 2*padding - k) / stride) + 1``, so the
last window may hang off the bottom/right edge; it pools only the pixels that exist. That is
what keeps every FCN crop in bounds for every input size. A last window that would hold no
pixel at all (it would start in the padding, or past the input when the kernel is smaller
than the stride) is dropped, as PyTorch does, so no output is ever ``-inf``: the rule lives
in :func:`~minifcn.ops.conv_output_size`, and every path here takes its sizes from it.

Implementation: as in im2col, each of the ``kh*kw`` kernel offsets is one strided slice of
the input, and the output is their running maximum. Where windows reach into the padding the
input is first placed on a ``-inf`` canvas (so the padding never wins); the ceil-mode overhang
needs no canvas: an offset that hangs off the bottom or right simply covers fewer windows.

The forward stores no argmax. The backward finds each window's winner again by comparing
every offset's slice with the pooled output, offset by offset: the first offset that equals a
window's maximum wins it, and later equal pixels of that window get nothing. The forward alone
(evaluation, inference) is then a few ``maximum`` passes, a quarter of the time of also
tracking the argmax, and training pays the comparisons once, in the backward. The cache refers
to the input and the output (no copies), so neither may be overwritten in place before the
backward. When the windows tile the input exactly (stride equal to the kernel, as in FCN)
backward writes each offset's slice once instead of zero-filling and accumulating.

Tie rule: when several pixels of a window share the maximum, the first one in row-major
window order (top-left first) wins and receives the whole gradient, as in Caffe and PyTorch.
"""
from __future__ import annotations

from ..backend import get_array_module
from ._threads import split_work
from ._util import check_grad, check_input, conv_output_size, pair


def _geometry(x, kernel_size, stride, padding, ceil_mode, name):
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
        raise ValueError(
            f"{name}: kernel {kh}x{kw} is larger than the padded input "
            f"{h + 2 * ph}x{w + 2 * pw} (input {tuple(x.shape)}){hint}"
        )
    return kh, kw, sh, sw, ph, pw, out_h, out_w


def _pad_neg_inf(x, ph, pw, out_h, out_w, sh, sw):
    """``x`` itself when every window starts inside the image (no padding), else ``x`` at
    (ph, pw) on a ``-inf`` canvas that holds every window's top-left pixel.

    The bottom and right of the canvas stop there: the rest of a window that hangs off them
    would be ``-inf`` anyway, so its offsets are simply not read (:func:`_offsets`).
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    full_h, full_w = max(h + ph, (out_h - 1) * sh + 1), max(w + pw, (out_w - 1) * sw + 1)
    if (full_h, full_w) == (h, w):
        return x
    canvas = xp.full((n, c, full_h, full_w), -xp.inf, dtype=x.dtype)
    canvas[:, :, ph:ph + h, pw:pw + w] = x
    return canvas


def _offsets(pad_shape, kernel, stride, out_shape):
    """The kernel offsets ``(i, j)`` in row-major order, with the slice of the padded input
    each one reads and how many windows (rows, columns) it reaches: all of them, except that
    an offset hanging off the bottom or right of the image misses the last ones."""
    (kh, kw), (sh, sw), (out_h, out_w) = kernel, stride, out_shape
    for i in range(kh):
        rows = min(out_h, -(-(pad_shape[2] - i) // sh))
        for j in range(kw):
            cols = min(out_w, -(-(pad_shape[3] - j) // sw))
            if rows > 0 and cols > 0:
                yield (slice(i, i + sh * (rows - 1) + 1, sh), slice(j, j + sw * (cols - 1) + 1, sw),
                       rows, cols)


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
        The (padded) input and ``out`` themselves, not copies, and the geometry; the
        backward finds the winners from them.

    Notes
    -----
    ``H_out = floor_or_ceil((H + 2*padding - kh) / stride) + 1``; with ``ceil_mode`` a last
    window that would start in the padding or past the input is dropped (PyTorch's rule).
    """
    check_input(x, name)
    kh, kw, sh, sw, ph, pw, out_h, out_w = _geometry(x, kernel_size, stride, padding, ceil_mode, name)
    xp = get_array_module(x)
    x_pad = _pad_neg_inf(x, ph, pw, out_h, out_w, sh, sw)
    n, c = x.shape[:2]
    out = xp.empty((n, c, out_h, out_w), dtype=x.dtype)
    offsets = list(_offsets(x_pad.shape, (kh, kw), (sh, sw), (out_h, out_w)))

    def pool(c0, c1):  # channels c0:c1 (the channels are split among CPU threads)
        best = out[:, c0:c1]
        for k, (rows, cols, r, s) in enumerate(offsets):
            v = x_pad[:, c0:c1, rows, cols]  # (N, c1-c0, r, s): this offset of r*s windows
            if k == 0:  # the top-left offset reaches every window
                best[...] = v
            else:
                xp.maximum(best[:, :, :r, :s], v, out=best[:, :, :r, :s])

    split_work(pool, c, x.nbytes, xp)
    cache = (x.shape, x_pad, out, (kh, kw), (sh, sw), (ph, pw))
    return out, cache


def _winners(x_pad, out, offsets, channels=slice(None)):
    """Yield ``(rows, cols, windows, won)`` for every offset in row-major order: its slices of
    the padded input, the windows it reaches (``[:, :, :r, :s]``), and the boolean map (N, C,
    r, s) of the windows it wins: where its pixel equals the window's maximum and no earlier
    offset won (the first of equal pixels wins, as in Caffe and PyTorch).

    ``channels`` restricts everything to a block of channels; ``won`` is reused from one
    offset to the next, so it is only valid until the next one.
    """
    xp = get_array_module(out)
    best = out[:, channels]
    won = xp.empty(best.shape, dtype=bool)
    open_ = None  # windows whose winner is not found yet
    for k, (rows, cols, r, s) in enumerate(offsets):
        windows = (slice(None), slice(None), slice(r), slice(s))
        xp.equal(x_pad[:, channels, rows, cols], best[windows], out=won[windows])
        if open_ is None:  # the first offset reaches every window, and all of them are open
            open_ = ~won
        else:
            won[windows] &= open_[windows]
            if k < len(offsets) - 1:  # the last offset closes nothing that is read again
                open_[windows] ^= won[windows]  # closed: they are won
        yield rows, cols, windows, won[windows]


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

    Notes
    -----
    The winners are found again from the cached input and output (:func:`_winners`), one
    offset at a time, and each offset's slice of ``dx`` gets ``dout`` where it won.
    """
    x_shape, x_pad, out, kernel, (sh, sw), (ph, pw) = cache
    check_grad(dout, out.shape, name)
    xp = get_array_module(dout)
    out_h, out_w = out.shape[2:]
    offsets = list(_offsets(x_pad.shape, kernel, (sh, sw), (out_h, out_w)))
    # windows that tile the input (stride == kernel, every pixel in a window) cover every
    # pixel exactly once: each offset's slice is written whole, no zero-fill, no accumulation
    tiled = (sh, sw) == kernel and out_h * sh >= x_pad.shape[2] and out_w * sw >= x_pad.shape[3]
    dx_pad = (xp.empty if tiled else xp.zeros)(x_pad.shape, dtype=dout.dtype)

    def route(c0, c1):  # channels c0:c1 (the channels are split among CPU threads)
        d = dout[:, c0:c1]
        for rows, cols, windows, won in _winners(x_pad, out, offsets, slice(c0, c1)):
            dx = dx_pad[:, c0:c1, rows, cols]
            if tiled:
                xp.multiply(d[windows], won, out=dx)
            else:  # overlapping windows (stride < kernel) may share a pixel: += accumulates
                dx += d[windows] * won

    split_work(route, dout.shape[1], dx_pad.nbytes, xp)
    h, w = x_shape[2:]
    return dx_pad[:, :, ph:ph + h, pw:pw + w]


def max_pool2d_pinned(x, cache):
    """Read, in every window of ``x``, the pixel that won it in the forward that made
    ``cache``: max-pooling with its branch pinned. Equal to that forward at its input; used
    by gradient checks so that a finite-difference step never switches winners.

    Returns an array of shape (N, C, H_out, W_out).
    """
    _, x_pad, out, kernel, (sh, sw), (ph, pw) = cache
    xp = get_array_module(x)
    out_h, out_w = out.shape[2:]
    x_new = _pad_neg_inf(x, ph, pw, out_h, out_w, sh, sw)  # placed as the cached input was
    pinned = xp.zeros(out.shape, dtype=x.dtype)
    offsets = list(_offsets(x_pad.shape, kernel, (sh, sw), (out_h, out_w)))
    for rows, cols, windows, won in _winners(x_pad, out, offsets):
        pinned[windows] = xp.where(won, x_new[:, :, rows, cols], pinned[windows])
    return pinned


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

"""Max-pooling that finds its winners in the backward: the engine's :mod:`minifcn.ops.pool`.

The same output, the same gradients and the same tie rule as the book's (tested equal in
``tests/test_engine_equivalence.py``), with three differences:

- The forward stores no argmax, only the running maximum: each of the ``kh*kw`` kernel offsets
  is one strided slice, and ``maximum`` is a quarter of the time of also tracking the
  argmax. Training pays the comparisons once, in the backward, which finds each window's
  winner again by comparing every offset's slice with the pooled output: the first offset
  that equals a window's maximum wins it (row-major, as Caffe and PyTorch). The cache refers
  to the input and the output (no copies), so neither may be overwritten before the backward.
- No ``-inf`` canvas unless a window reaches into the padding: the ceil-mode overhang is an
  offset that simply covers fewer windows. When the windows tile the input exactly (stride
  equal to the kernel, as in FCN) the backward writes each offset's slice once instead of
  zero-filling and accumulating.
- The channels are split among CPU threads, and each thread walks its channels in blocks of
  about ``BLOCK_BYTES`` of input (:func:`_blocks`), so that every kernel offset after the first
  reads what the first one brought into the cache.

What it buys (two threads, ``docs/performance.md`` items 4 and 11 and *Pooling in blocks*):
``pool1`` at 500x500 forward 123 to 36 ms, forward and backward together 183 to 111 ms; an
evaluation pass keeps the whole saving. The blocks: ``pool1``'s forward 25 to 16 ms, its
backward 63 to 41 ms.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ..ops._util import check_grad
from ..ops.pool import check_pool_args
from .threads import split_work


BLOCK_BYTES = 2**20  # of input per block of channels: the offsets' passes stay in the cache


def _blocks(c0, c1, channel_bytes, xp):
    """Slices of the channels ``c0:c1``, each of about ``BLOCK_BYTES`` of input
    (``channel_bytes`` per channel, the whole batch's), and at least one channel. On CuPy one
    slice, all of them: the GPU has no cache to keep, and each block would cost its own kernel
    launches."""
    if xp is not np:
        yield slice(c0, c1)
        return
    step = max(1, BLOCK_BYTES // max(1, channel_bytes))
    for b0 in range(c0, c1, step):
        yield slice(b0, min(c1, b0 + step))


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
    """Replaces :func:`minifcn.ops.pool.max_pool2d_forward`: the running maximum alone.

    Parameters and output as the book's. The cache holds the (padded) input and ``out``
    themselves, not copies, and the geometry; the backward finds the winners from them.
    Why: tracking the argmax made the forward three to four times slower than the maximum
    alone, and prediction never needs it. What it buys: ``pool1`` at 500x500, two threads,
    123 to 36 ms (``docs/performance.md``, item 11).
    """
    kh, kw, sh, sw, ph, pw, out_h, out_w = check_pool_args(x, kernel_size, stride, padding,
                                                          ceil_mode, name)
    xp = get_array_module(x)
    x_pad = _pad_neg_inf(x, ph, pw, out_h, out_w, sh, sw)
    n, c = x.shape[:2]
    out = xp.empty((n, c, out_h, out_w), dtype=x.dtype)
    offsets = list(_offsets(x_pad.shape, (kh, kw), (sh, sw), (out_h, out_w)))

    def pool(c0, c1):  # channels c0:c1 (the channels are split among CPU threads)
        for block in _blocks(c0, c1, x_pad[:, 0].nbytes, xp):
            best = out[:, block]
            for k, (rows, cols, r, s) in enumerate(offsets):
                v = x_pad[:, block, rows, cols]  # (N, channels, r, s): this offset's windows
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
    """Replaces :func:`minifcn.ops.pool.max_pool2d_backward`: each output gradient to the
    pixel that won its window, ``dx`` of shape (N, C, H, W).

    Notes
    -----
    The winners are found again from the cached input and output (:func:`_winners`), one
    offset at a time, and each offset's slice of ``dx`` gets ``dout`` where it won. That
    costs the backward what the forward saves (``pool1`` at 500x500 60 to 75 ms), so a
    training pass still gains: forward and backward together 183 to 111 ms
    (``docs/performance.md``, item 11).
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
        for block in _blocks(c0, c1, x_pad[:, 0].nbytes, xp):
            d = dout[:, block]
            for rows, cols, windows, won in _winners(x_pad, out, offsets, block):
                dx = dx_pad[:, block, rows, cols]
                if tiled:
                    xp.multiply(d[windows], won, out=dx)
                else:  # overlapping windows (stride < kernel) may share a pixel: += adds
                    dx += d[windows] * won

    split_work(route, dout.shape[1], dx_pad.nbytes, xp)
    h, w = x_shape[2:]
    return dx_pad[:, :, ph:ph + h, pw:pw + w]

"""im2col and col2im, fast: the engine's versions of :mod:`minifcn.ops.im2col`.

The same arguments and the same results as the book's functions (tested equal in
``tests/test_engine_equivalence.py``), plus what the engine's convolutions need:

- the channels are split among CPU threads (:func:`minifcn.engine.threads.split_work`);
- ``out=``: unfold into a kept buffer, fold straight into a gradient's rows;
- for large kernels, ``col2im`` folds by output phase (NumPy) or in one gather kernel (CuPy)
  instead of one pass per kernel offset (``benchmarks/bench_col2im.py``).
"""
from __future__ import annotations

import functools

import numpy as np

from ..backend import get_array_module
from ..ops.im2col import _windows
from .threads import split_work


def im2col(x, kernel_size, stride=1, padding=0, *, out=None):
    """Replaces :func:`minifcn.ops.im2col.im2col`: the same columns, on several threads.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    kernel_size, stride, padding : int or (int, int)
    out : array, shape (N, C*kh*kw, H_out*W_out), optional
        C-contiguous, of ``x``'s dtype: the columns are written into it (the banded
        convolution unfolds every band into one kept buffer, :func:`minifcn.engine.memory.scratch`).

    Returns
    -------
    cols : array, shape (N, C*kh*kw, H_out*W_out)

    Notes
    -----
    Why: the unfold is a memory-bound copy that NumPy runs on one core while OpenBLAS uses
    all of them. What it buys: im2col of a 64-channel band 11.4 to 7.8 ms on two threads
    (``docs/performance.md``, item 6), and no allocation per band (item 16).
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    kh, kw, sh, sw, ph, pw, out_h, out_w = _windows(h, w, kernel_size, stride, padding)
    if ph or pw:
        x = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    shape = (n, c, kh, kw, out_h, out_w)
    if out is None:
        cols = xp.empty(shape, dtype=x.dtype)
    elif (out.shape != (n, c * kh * kw, out_h * out_w) or out.dtype != x.dtype
          or not out.flags.c_contiguous):
        raise ValueError(
            f"im2col: out must be a C-contiguous {x.dtype} array of shape "
            f"{(n, c * kh * kw, out_h * out_w)}, found {out.dtype} {tuple(out.shape)}"
        )
    else:
        cols = out.reshape(shape)

    def unfold(c0, c1):  # channels c0:c1 (the channels are split among CPU threads)
        for i in range(kh):
            i_end = i + sh * (out_h - 1) + 1  # last row read by offset i, exclusive
            for j in range(kw):
                j_end = j + sw * (out_w - 1) + 1
                cols[:, c0:c1, i, j] = x[:, c0:c1, i:i_end:sh, j:j_end:sw]

    split_work(unfold, c, cols.nbytes, xp)
    return cols.reshape(n, c * kh * kw, out_h * out_w)  # (N, C*kh*kw, H_out*W_out)


def accumulate(total, part):
    """``total += part`` in place, returning ``total``; ``part`` itself when ``total`` is None.

    The running sum of per-band results: the first band's array is taken as it is (keeping
    its memory order, no copy), the later ones are added into it.
    """
    if total is None:
        return part
    total += part
    return total


PHASE_GAIN = 16  # k4 s2 gains nothing (4x fewer passes), k16 s8 gains (64x fewer)
GATHER_MIN_TAPS = 16  # below it the slice loop's kh*kw launches are few (3x3: 9)


def col2im_route(xp, kernel, stride, dtype):
    """The function :func:`col2im` hands a fold to: ``_col2im_gather`` (CuPy, float32/64,
    at least ``GATHER_MIN_TAPS`` taps), ``_col2im_phases`` (NumPy, when folding by phase needs
    at least ``PHASE_GAIN`` times fewer passes) or ``_col2im_slices`` (the book's loop)."""
    (kh, kw), (sh, sw) = kernel, stride
    if xp is not np and kh * kw >= GATHER_MIN_TAPS and np.dtype(dtype).itemsize >= 4:
        return _col2im_gather
    if xp is np and _phase_blocks(kh, kw, sh, sw) * PHASE_GAIN <= kh * kw:
        return _col2im_phases
    return _col2im_slices


def col2im(cols, input_shape, kernel_size, stride=1, padding=0, *, out=None):
    """Replaces :func:`minifcn.ops.im2col.col2im`: the same sums, fewer passes.

    Parameters
    ----------
    cols : array, shape (N, C*kh*kw, H_out*W_out)
    input_shape : tuple (N, C, H, W)
    kernel_size, stride, padding : int or (int, int)
    out : array, shape (N, C, H, W), optional
        An image to add the fold to, in place (``out += col2im(cols)``): the banded backward
        folds band after band into one gradient without a temporary per band.

    Returns
    -------
    x : array, shape (N, C, H, W); ``out`` itself when given.

    Notes
    -----
    Why: the book's loop makes ``kh*kw`` strided passes, 256 for upscore8 and 4,096 for
    FCN-32s' upscore. :func:`col2im_route` picks the fold. What it buys: on NumPy the phase
    fold is 2.2-2.3x faster than the slice loop on FCN's two large upsamplers at 500x500
    (upscore8 66.9 to 28.8 ms); on CuPy one kernel launch replaces ``kh*kw``; the slice loop
    itself runs on several threads (item 6 of ``docs/performance.md``).
    """
    xp = get_array_module(cols)
    n, c, h, w = input_shape
    geometry = _windows(h, w, kernel_size, stride, padding)
    if out is not None and tuple(out.shape) != tuple(input_shape):
        raise ValueError(f"col2im: out has shape {tuple(out.shape)}, expected {tuple(input_shape)}")
    fold = col2im_route(xp, geometry[:2], geometry[2:4], cols.dtype)
    return fold(cols, tuple(input_shape), geometry, out)


def _col2im_slices(cols, input_shape, geometry, out):
    """The book's slice loop, its channels split among threads, adding into ``out``."""
    xp = get_array_module(cols)
    n, c, h, w = input_shape
    kh, kw, sh, sw, ph, pw, out_h, out_w = geometry
    cols = cols.reshape(n, c, kh, kw, out_h, out_w)
    direct = out is not None and not (ph or pw)  # the slices below add into out itself
    x = out if direct else xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)

    def fold(c0, c1):  # channels c0:c1 (the channels are split among CPU threads)
        for i in range(kh):
            i_end = i + sh * (out_h - 1) + 1
            for j in range(kw):
                j_end = j + sw * (out_w - 1) + 1
                # one offset's slice never repeats a pixel, so += is a safe accumulation
                x[:, c0:c1, i:i_end:sh, j:j_end:sw] += cols[:, c0:c1, i, j]

    split_work(fold, c, cols.nbytes, xp)
    if direct:
        return out
    return accumulate(out, x[:, :, ph:ph + h, pw:pw + w])


def _phase_blocks(kh, kw, sh, sw):
    """Passes of :func:`_col2im_phases`: ``ceil(kh/sh) * ceil(kw/sw)``."""
    return -(-kh // sh) * -(-kw // sw)


def _col2im_phases(cols, input_shape, geometry, out):
    """col2im for large kernels: one pass per block of ``stride`` taps instead of per tap.

    A padded row ``R = sh*q + r`` is block ``q``, phase ``r``. Tap ``i = sh*a + r`` of window
    ``oh`` lands on row ``sh*(oh + a) + r``: block ``oh + a``, phase ``r``. So for a fixed ``a``
    the taps ``sh*a .. sh*a + sh - 1`` of all windows fill whole blocks with one plain
    (unstrided) add: a stride-``s`` fold is ``s*s`` interleaved stride-1 folds.
    """
    xp = get_array_module(cols)
    n, c, h, w = input_shape
    kh, kw, sh, sw, ph, pw, out_h, out_w = geometry
    cols = cols.reshape(n, c, kh, kw, out_h, out_w)
    mh, mw = -(-kh // sh), -(-kw // sw)
    # enough blocks for every window and for the crop (rows no window reaches stay 0)
    bh, bw = max(out_h + mh - 1, -(-(h + ph) // sh)), max(out_w + mw - 1, -(-(w + pw) // sw))
    phases = xp.zeros((n, c, sh, bh, sw, bw), dtype=cols.dtype)  # (N, C, r, q_row, t, q_col)
    for a in range(mh):
        rs = min(sh, kh - a * sh)  # the last block of taps may be partial
        for b in range(mw):
            ts = min(sw, kw - b * sw)
            # (N, C, rs, ts, out_h, out_w)
            tile = cols[:, :, a * sh:a * sh + rs, b * sw:b * sw + ts]
            phases[:, :, :rs, a:a + out_h, :ts, b:b + out_w] += tile.transpose(0, 1, 2, 4, 3, 5)
    x = phases.transpose(0, 1, 3, 2, 5, 4).reshape(n, c, bh * sh, bw * sw)  # row q*sh + r, ...
    return accumulate(out, x[:, :, ph:ph + h, pw:pw + w])


# CUDA C body of the gather kernel; plain C on purpose, so that a CPU test can compile it
# with a C compiler and check it against col2im_naive. ``i`` is the flat pixel index.
GATHER_BODY = r"""
long long px = i % w, py = (i / w) % h, nc = i / ((long long)w * h);
long long Y = py + ph, X = px + pw;  /* in the padded image */
/* the windows whose tap Y - oh*sh (X - ow*sw) lies in [0, kh) ([0, kw)) */
long long oh_lo = Y >= kh ? (Y - kh) / sh + 1 : 0;
long long oh_hi = Y / sh < out_h - 1 ? Y / sh : out_h - 1;
long long ow_lo = X >= kw ? (X - kw) / sw + 1 : 0;
long long ow_hi = X / sw < out_w - 1 ? X / sw : out_w - 1;
T acc = 0;
for (long long oh = oh_lo; oh <= oh_hi; ++oh) {
  for (long long ow = ow_lo; ow <= ow_hi; ++ow) {
    long long tap = (nc * kh + (Y - oh * sh)) * kw + (X - ow * sw);
    acc += cols[(tap * out_h + oh) * out_w + ow];
  }
}
img = acc;
"""
GATHER_PARAMS = ("raw T cols, int32 h, int32 w, int32 kh, int32 kw, int32 sh, int32 sw, "
                 "int32 ph, int32 pw, int32 out_h, int32 out_w")


@functools.cache
def _gather_kernel(xp):
    """The CuPy ElementwiseKernel (compiled on first launch), one per array module."""
    return xp.ElementwiseKernel(GATHER_PARAMS, "T img", GATHER_BODY, "minifcn_col2im_gather")


def _col2im_gather(cols, input_shape, geometry, out):
    """col2im in one CuPy launch: every pixel of (N, C, H, W) gathers its column entries, so
    there are no atomics and the result is deterministic."""
    xp = get_array_module(cols)
    kh, kw, sh, sw, ph, pw, out_h, out_w = geometry
    img = xp.empty(input_shape, dtype=cols.dtype)  # (N, C, H, W), every pixel written
    cols = xp.ascontiguousarray(cols)  # flat indexing below assumes C order
    _gather_kernel(xp)(cols, input_shape[2], input_shape[3], kh, kw, sh, sw, ph, pw,
                       out_h, out_w, img)
    return accumulate(out, img)

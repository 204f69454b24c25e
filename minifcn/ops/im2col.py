"""im2col and col2im: convolution as a matrix product.

``im2col`` copies every receptive field of a padded image into one column, so that a
convolution becomes a single matrix product ``weight (C_out, C_in*kh*kw) @ cols``.
``col2im`` is its exact adjoint (its transpose as a linear map): it adds each column back to
the pixels it was read from, summing where windows overlap. That adjoint is both the input
gradient of a convolution and the forward pass of a transposed convolution.

Both are written as one strided slice per kernel offset ``(i, j)``: a loop of ``kh*kw``
vectorised copies, the same code on NumPy and CuPy, no scatter with duplicate indices. On the
CPU, large jobs split their channels among threads (:mod:`minifcn.ops._threads`).
That loop is what to read. For the large kernels of FCN's upsamplers (upscore8: 16x16 = 256
offsets) ``col2im`` takes a measured fast path with the same result (see its Notes and
``benchmarks/bench_col2im.py``).

The naive twins (:func:`im2col_naive`, :func:`col2im_naive`) loop over every output position
and are the oracles in the tests.
"""
from __future__ import annotations

import functools

import numpy as np

from ..backend import get_array_module
from ._threads import split_work
from ._util import accumulate, conv_output_size, pair


def _windows(h, w, kernel_size, stride, padding):
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = pair(stride, "stride")
    ph, pw = pair(padding, "padding")
    out_h = conv_output_size(h, kh, sh, ph)
    out_w = conv_output_size(w, kw, sw, pw)
    return kh, kw, sh, sw, ph, pw, out_h, out_w


def im2col(x, kernel_size, stride=1, padding=0, out=None):
    """Unfold the receptive fields of ``x`` into columns.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    kernel_size, stride, padding : int or (int, int)
        Zero padding is added on all four sides.
    out : array, shape (N, C*kh*kw, H_out*W_out), optional
        C-contiguous, of ``x``'s dtype: the columns are written into it (a caller that
        unfolds many times reuses one buffer).

    Returns
    -------
    cols : array, shape (N, C*kh*kw, H_out*W_out)
        ``cols[n, (c*kh + i)*kw + j, oh*W_out + ow] = x_pad[n, c, oh*sh + i, ow*sw + j]``.

    Notes
    -----
    ``H_out = (H + 2*ph - kh) // sh + 1`` and likewise for W.
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


def col2im(cols, input_shape, kernel_size, stride=1, padding=0, out=None):
    """Fold columns back onto the image, summing overlaps: the adjoint of :func:`im2col`.

    Parameters
    ----------
    cols : array, shape (N, C*kh*kw, H_out*W_out)
    input_shape : tuple (N, C, H, W)
        Shape of the image the columns were (or would be) taken from.
    out : array, shape (N, C, H, W), optional
        An image to add the fold to, in place (``out += col2im(cols)``): a caller that folds
        band after band into one gradient makes no temporary per band when there is no
        padding.

    Returns
    -------
    x : array, shape (N, C, H, W)
        For every ``y``: ``<im2col(x), y> == <x, col2im(y)>``. ``out`` itself when given.

    Notes
    -----
    ``H_out = (H + 2*ph - kh) // sh + 1``. The slice loop below is the default. Two fast paths
    give the same sums for large kernels, where ``kh*kw`` passes cost too much:

    - NumPy, when folding by output phase needs at least ``PHASE_GAIN`` times fewer passes
      (:func:`_col2im_phases`; about 2x faster for upscore8 and FCN-32s' upscore).
    - CuPy, float32/float64, from ``GATHER_MIN_TAPS`` taps on: one kernel launch instead of
      ``kh*kw`` (:func:`_col2im_gather`); each pixel sums the column entries that cover it,
      so there are no atomics and the result is deterministic.
    """
    xp = get_array_module(cols)
    n, c, h, w = input_shape
    kh, kw, sh, sw, ph, pw, out_h, out_w = _windows(h, w, kernel_size, stride, padding)
    if out is not None and tuple(out.shape) != tuple(input_shape):
        raise ValueError(f"col2im: out has shape {tuple(out.shape)}, expected {tuple(input_shape)}")
    if xp is not np and kh * kw >= GATHER_MIN_TAPS and cols.dtype.itemsize >= 4:
        folded = _col2im_gather(xp, cols, input_shape, (kh, kw, sh, sw, ph, pw, out_h, out_w))
        return accumulate(out, folded)
    cols = cols.reshape(n, c, kh, kw, out_h, out_w)
    if xp is np and _phase_blocks(kh, kw, sh, sw) * PHASE_GAIN <= kh * kw:
        folded = _col2im_phases(cols, input_shape, (sh, sw), (ph, pw))
        return accumulate(out, folded)
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
    folded = x[:, :, ph:ph + h, pw:pw + w]
    return accumulate(out, folded)


PHASE_GAIN = 16  # k4 s2 gains nothing (4x fewer passes), k16 s8 gains (64x fewer)
GATHER_MIN_TAPS = 16  # below it the slice loop's kh*kw launches are few (3x3: 9)


def _phase_blocks(kh, kw, sh, sw):
    """Passes of :func:`_col2im_phases`: ``ceil(kh/sh) * ceil(kw/sw)``."""
    return -(-kh // sh) * -(-kw // sw)


def _col2im_phases(cols, input_shape, stride, padding):
    """col2im for large kernels: one pass per block of ``stride`` taps instead of per tap.

    A padded row ``R = sh*q + r`` is block ``q``, phase ``r``. Tap ``i = sh*a + r`` of window
    ``oh`` lands on row ``sh*(oh + a) + r``: block ``oh + a``, phase ``r``. So for a fixed ``a``
    the taps ``sh*a .. sh*a + sh - 1`` of all windows fill whole blocks with one plain
    (unstrided) add: a stride-``s`` fold is ``s*s`` interleaved stride-1 folds.

    ``cols`` has shape (N, C, kh, kw, out_h, out_w); returns (N, C, H, W).
    """
    xp = get_array_module(cols)
    n, c, kh, kw, out_h, out_w = cols.shape
    (sh, sw), (ph, pw), (h, w) = stride, padding, input_shape[2:]
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
    return x[:, :, ph:ph + h, pw:pw + w]


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


def _col2im_gather(xp, cols, input_shape, geometry):
    """col2im in one CuPy launch: every pixel of (N, C, H, W) gathers its column entries."""
    kh, kw, sh, sw, ph, pw, out_h, out_w = geometry
    img = xp.empty(input_shape, dtype=cols.dtype)  # (N, C, H, W), every pixel written
    cols = xp.ascontiguousarray(cols)  # flat indexing below assumes C order
    _gather_kernel(xp)(cols, input_shape[2], input_shape[3], kh, kw, sh, sw, ph, pw,
                       out_h, out_w, img)
    return img


def im2col_naive(x, kernel_size, stride=1, padding=0):
    """Loop twin of :func:`im2col`, written from the definition (tests and notebooks)."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    kh, kw, sh, sw, ph, pw, out_h, out_w = _windows(h, w, kernel_size, stride, padding)
    cols = xp.zeros((n, c * kh * kw, out_h * out_w), dtype=x.dtype)
    for b in range(n):
        for oh in range(out_h):
            for ow in range(out_w):
                row = 0
                for ch in range(c):
                    for i in range(kh):
                        for j in range(kw):
                            r, s = oh * sh + i - ph, ow * sw + j - pw
                            if 0 <= r < h and 0 <= s < w:
                                cols[b, row, oh * out_w + ow] = x[b, ch, r, s]
                            row += 1
    return cols


def col2im_naive(cols, input_shape, kernel_size, stride=1, padding=0):
    """Loop twin of :func:`col2im`: scatter-add every column entry to its source pixel."""
    xp = get_array_module(cols)
    n, c, h, w = input_shape
    kh, kw, sh, sw, ph, pw, out_h, out_w = _windows(h, w, kernel_size, stride, padding)
    x = xp.zeros((n, c, h, w), dtype=cols.dtype)
    for b in range(n):
        for oh in range(out_h):
            for ow in range(out_w):
                row = 0
                for ch in range(c):
                    for i in range(kh):
                        for j in range(kw):
                            r, s = oh * sh + i - ph, ow * sw + j - pw
                            if 0 <= r < h and 0 <= s < w:
                                x[b, ch, r, s] += cols[b, row, oh * out_w + ow]
                            row += 1
    return x

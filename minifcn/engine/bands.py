"""Bands of output rows, and the products made on them: the engine's convolution in parts.

The book's convolution (:func:`minifcn.ops.conv.conv2d_forward`) unfolds the whole image
into one column buffer and keeps it for the backward: 1.1 GB for FCN's ``conv1_2`` at
500x500, 3.2 GB over the network. The engine walks the output in bands of rows instead
(:func:`column_bands`): each band's columns are unfolded, used and dropped, and the backward
unfolds them again from the cached input. The arithmetic is the book's, split into row
blocks. Small bands (a few MB) are also faster than one big buffer: the GEMM reads the
columns from the cache that im2col just wrote them to. Peak memory of a full-width training
pass at 500x500: 6.1-6.2 GB to 2.3-2.4 GB (``docs/performance.md``, items 1, 9, 13).

Layouts: ``x`` (N, C_in, H, W), ``weight`` (C_out, C_in, kh, kw).
"""
from __future__ import annotations

from ..backend import get_array_module
from ..ops._util import conv_output_size, pair
from .im2col import im2col
from .memory import scratch

CHUNK_BYTES = 4 * 2**20  # a band's columns, still in cache when the GEMM reads them
MIN_BAND_ROWS = 5  # fewer rows per band cost more in per-band overheads than the cache saves


def is_pointwise(weight, stride, padding):
    """True for a 1x1 kernel with stride 1 and no padding: a per-pixel fully connected layer,
    whose columns are the pixels themselves (no unfolding at all)."""
    return weight.shape[2:] == (1, 1) and pair(stride) == (1, 1) and pair(padding) == (0, 0)


def band_rows(n, k, out_h, out_w, weight_bytes, itemsize):
    """Output rows per band, so that a band's columns ``(N, K, rows*W_out)`` take at most
    ``max(CHUNK_BYTES, 4 * weight_bytes)`` bytes, but at least ``MIN_BAND_ROWS`` rows while
    those stay under ``8 * CHUNK_BYTES`` (and always at least one row).

    The weight bound keeps bands of wide, short layers (fc6: 25088 x 256 columns, a 411 MB
    weight) whole: each band adds its weight gradient into ``dweight``, and that must stay
    cheap next to the band's GEMMs. The row floor matters for full-size 3x3 layers, whose
    output rows take 1.6 MB of columns each: bands of two rows spend more on padding, BLAS
    calls and thread hand-offs than they gain from the cache (docs/performance.md, item 9).
    """
    row_bytes = max(1, n * k * out_w * itemsize)  # an empty batch (N = 0): one band
    rows = max(CHUNK_BYTES, 4 * weight_bytes) // row_bytes
    if rows < MIN_BAND_ROWS:
        rows = min(MIN_BAND_ROWS, 8 * CHUNK_BYTES // row_bytes)
    return max(1, min(out_h, rows))


def image_rows(h, kh, sh, ph, out_h):
    """The output rows ``[first, last)`` whose windows read at least one row of the image.

    The others lie wholly in the zero padding: their outputs are the bias alone, and they
    add nothing to either gradient. FCN's ``conv1_1`` pads by 100, so at 500x500 196 of its
    698 output rows are such rows (134 of 232 in the demo's narrow net, padded by 69).
    """
    first = max(0, (ph - kh) // sh + 1)  # window oh reads padded rows [oh*sh, oh*sh + kh)
    last = min(out_h, (ph + h - 1) // sh + 1)  # and the image is padded rows [ph, ph + h)
    return first, max(first, last)


def column_bands(x, weight, stride, padding, unfold=True, reuse=False, rows=None, cols=None):
    """im2col of ``x``, one band of output rows at a time.

    Yields ``(out_rows, in_rows, cols)``: a slice of the output rows, the slice of the
    *padded* input rows they read (``out_rows.start*sh`` up to ``(out_rows.stop-1)*sh + kh``;
    consecutive bands overlap by ``kh - sh`` rows), and their columns, shape
    ``(N, C_in*kh*kw, band_rows*W_out)``: exactly those columns of ``im2col(x)``
    (``None`` with ``unfold=False``, for a caller that needs only the geometry).

    Only the band's rows are ever padded and unfolded, and only the rows of
    :func:`image_rows` are visited. A 1x1 kernel with stride 1 and no padding yields one band
    whose columns are ``x`` itself. With ``reuse=True`` every band is unfolded into the same
    buffer (:func:`minifcn.engine.memory.scratch`), valid only until the next band is asked
    for; keeping the bands (``list(column_bands(...))``) needs the default ``reuse=False``.

    ``rows`` and ``cols`` (slices of the output) restrict the bands to that rectangle of the
    output: the bands then hold ``band_rows * (cols.stop - cols.start)`` columns, and only
    the input rows and columns their windows read are padded and unfolded (the border of
    :mod:`minifcn.engine.bordered`: the input-dependent part of a map, without copying it out
    first). ``rows`` replaces :func:`image_rows`.
    """
    xp = get_array_module(x)
    n, c_in, h, w = x.shape
    kh, kw = weight.shape[2:]
    (sh, sw), (ph, pw) = stride, padding
    out_h, out_w = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    whole = rows is None and (cols is None or (cols.start, cols.stop) == (0, out_w))
    if whole and is_pointwise(weight, stride, padding):
        yield slice(0, h), slice(0, h), x.reshape(n, c_in, h * w)  # the pixels are the columns
        return
    c0, c1 = (0, out_w) if cols is None else (cols.start, cols.stop)
    left, right = c0 * sw, (c1 - 1) * sw + kw  # padded columns [left, right) are read
    lo_c = max(left, pw)  # the image's own columns among them, [lo_c, hi_c)
    hi_c = max(lo_c, min(right, pw + w))
    width = c1 - c0
    band = band_rows(n, c_in * kh * kw, out_h, width, weight.nbytes, x.dtype.itemsize)
    first, last = image_rows(h, kh, sh, ph, out_h) if rows is None else (rows.start, rows.stop)
    canvas = None  # one zero canvas per call, for every band
    for r0 in range(first, last, band):
        r1 = min(r0 + band, last)
        top, bottom = r0 * sh, (r1 - 1) * sh + kh  # padded rows [top, bottom) are read
        if not unfold:
            yield slice(r0, r1), slice(top, bottom), None
            continue
        lo = max(top, ph)  # the image's own rows among them, [lo, hi)
        hi = max(lo, min(bottom, ph + h))
        part = x[:, :, lo - ph:hi - ph, lo_c - pw:hi_c - pw]
        pad_top, pad_bottom = lo - top, bottom - hi
        if pad_top or pad_bottom or lo_c > left or hi_c < right:  # on zeros (as xp.pad, cheaper)
            if canvas is None:  # one zero canvas for every band: its side columns stay zero
                canvas = xp.zeros((n, c_in, (band - 1) * sh + kh, right - left), dtype=x.dtype)
            padded = canvas[:, :, :bottom - top]
            padded[:, :, :pad_top] = 0  # rows that an earlier band may have filled
            padded[:, :, pad_top + hi - lo:] = 0
            padded[:, :, pad_top:pad_top + hi - lo, lo_c - left:hi_c - left] = part
            part = padded
        out = None
        if reuse:
            out = scratch("columns", (n, c_in * kh * kw, (r1 - r0) * width), x.dtype, xp)
        yield slice(r0, r1), slice(top, bottom), im2col(part, (kh, kw), stride, 0, out=out)


def multiply_into(out, out_rows, w2d, cols, out_cols=None, bias=None):
    """``out[:, :, out_rows, out_cols] = w2d @ cols (+ bias)``: (C_out, K) @ (N, K,
    band_rows*W_band).

    ``out_cols`` (a slice, default every column) is the band's columns of the output;
    ``bias`` (C_out,), when given, is added as the product is copied into ``out`` (no second
    pass over the output)."""
    xp = get_array_module(out)
    n, c_out, _, out_w = out.shape
    whole = out_cols is None or (out_cols.start, out_cols.stop) == (0, out_w)
    if n == 1 and whole and out.flags.c_contiguous:  # the product lands in the output's rows
        # directly, no copy (on a transposed view, reshape would copy: the product would be lost)
        band = out[0, :, out_rows].reshape(c_out, -1)
        xp.matmul(w2d, cols[0], out=band)
        if bias is not None:
            band += bias[:, None]
        return
    # one batched product (N small GEMMs in one call), then a copy
    rows = out_rows.stop - out_rows.start  # not -1: N may be 0
    out_cols = slice(0, out_w) if out_cols is None else out_cols
    product = (w2d @ cols).reshape(n, c_out, rows, out_cols.stop - out_cols.start)
    if bias is None:
        out[:, :, out_rows, out_cols] = product
    else:
        xp.add(product, bias[:, None, None], out=out[:, :, out_rows, out_cols])


def conv_weight_grad(dout, cols):
    """Replaces :func:`minifcn.ops.conv.conv_weight_grad`: the same sums, in the orientation
    OpenBLAS runs best.

    Parameters and returns as the book's; ``dweight`` may be a transposed view.

    Notes
    -----
    ``dweight = sum_n dout[n] @ cols[n].T``. When ``C_out`` is the smallest of the three
    sizes (most convolutions: few channels, a long band of pixels) it is computed as the
    transpose of ``cols[n] @ dout[n].T``. Why: ``(64 x L) @ (L x 576)`` is one of OpenBLAS's
    slow shapes. What it buys: 10-20 % on one thread; with two threads on a busy machine
    3-20 against 60-100 GFLOP/s (``docs/performance.md``, item 2). cuBLAS does not mind.
    """
    c_out, k, length = dout.shape[1], cols.shape[1], dout.shape[2]
    if dout.shape[0] == 0:  # an empty batch adds nothing up
        return get_array_module(dout).zeros((c_out, k), dtype=dout.dtype)
    if c_out <= min(k, length):
        dweight_t = cols[0] @ dout[0].T  # (K, L) @ (L, C_out) -> (K, C_out)
        for n in range(1, dout.shape[0]):
            dweight_t += cols[n] @ dout[n].T
        return dweight_t.T  # (C_out, K)
    dweight = dout[0] @ cols[0].T  # (C_out, L) @ (L, K)
    for n in range(1, dout.shape[0]):
        dweight += dout[n] @ cols[n].T
    return dweight

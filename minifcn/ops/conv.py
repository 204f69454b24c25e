"""2-D convolution (cross-correlation, as in every deep-learning library) by im2col + GEMM.

Forward::

    cols = im2col(x)                       # (N, C_in*kh*kw, H_out*W_out)
    out  = weight.reshape(C_out, -1) @ cols + bias

Backward (the forward read backwards)::

    dweight = sum_n dout[n] @ cols[n].T    # conv_weight_grad, shared with conv_transpose2d
    dcols   = weight.reshape(C_out, -1).T @ dout
    dx      = col2im(dcols)                # the adjoint of im2col

The columns hold every input pixel ``kh*kw`` times: 1.1 GB for FCN's ``conv1_2`` at
500x500. So both passes walk the output in bands of rows (:func:`column_bands`): each band's
columns are unfolded, used and dropped, and the backward unfolds them again from the cached
input instead of keeping them. The arithmetic is the one above, split into row blocks. Small
bands (a few MB) are also faster than one big buffer: the GEMM reads the columns from the
cache that im2col just wrote them to, instead of from main memory.

A 1x1 convolution with stride 1 and no padding needs no im2col at all: it is a fully
connected layer (``C_in -> C_out``) applied at every pixel, i.e. one channel GEMM
``weight (C_out, C_in) @ x (N, C_in, H*W)``. FCN's fc7, score_fr, score_pool4 and
score_pool3 are such layers.

Layouts: ``x`` (N, C_in, H, W), ``weight`` (C_out, C_in, kh, kw), ``bias`` (C_out,).
"""
from __future__ import annotations

import math
import threading

from ..backend import get_array_module
from ._threads import split_work
from ._util import accumulate, check_grad, check_layer_args, conv_output_size, pair
from .im2col import col2im, im2col


def check_conv_args(x, weight, bias, stride, padding, name):
    """Validate a convolution's arguments; return ``(kh, kw, sh, sw, ph, pw, out_h, out_w)``."""
    kh, kw, sh, sw, ph, pw = check_layer_args(x, weight, bias, stride, padding, name)
    h, w = x.shape[2:]
    if kh > h + 2 * ph or kw > w + 2 * pw:
        raise ValueError(
            f"{name}: kernel {kh}x{kw} is larger than the padded input "
            f"{h + 2 * ph}x{w + 2 * pw} (input {tuple(x.shape)}, padding {(ph, pw)})"
        )
    return kh, kw, sh, sw, ph, pw, conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)


def is_pointwise(weight, stride, padding):
    """True for a 1x1 kernel with stride 1 and no padding: a per-pixel fully connected layer."""
    return weight.shape[2:] == (1, 1) and pair(stride) == (1, 1) and pair(padding) == (0, 0)


CHUNK_BYTES = 4 * 2**20  # a band's columns, still in cache when the GEMM reads them
MIN_BAND_ROWS = 5  # fewer rows per band cost more in per-band overheads than the cache saves


def band_rows(n, k, out_h, out_w, weight_bytes, itemsize):
    """Output rows per band, so that a band's columns ``(N, K, rows*W_out)`` take at most
    ``max(CHUNK_BYTES, 4 * weight_bytes)`` bytes, but at least ``MIN_BAND_ROWS`` rows while
    those stay under ``8 * CHUNK_BYTES`` (and always at least one row).

    The weight bound keeps bands of wide, short layers (fc6: 25088 x 256 columns, a 411 MB
    weight) whole: each band adds its weight gradient into ``dweight``, and that must stay
    cheap next to the band's GEMMs. The row floor matters for full-size 3x3 layers, whose
    output rows take 1.6 MB of columns each: bands of two rows spend more on padding, BLAS
    calls and thread hand-offs than they gain from the cache (docs/performance.md).
    """
    row_bytes = max(1, n * k * out_w * itemsize)  # an empty batch (N = 0): one band
    rows = max(CHUNK_BYTES, 4 * weight_bytes) // row_bytes
    if rows < MIN_BAND_ROWS:
        rows = min(MIN_BAND_ROWS, 8 * CHUNK_BYTES // row_bytes)
    return max(1, min(out_h, rows))


SCRATCH_MAX_BYTES = 64 * 2**20  # larger band buffers are allocated afresh, not kept
_scratch_buffers = threading.local()


def scratch(name, shape, dtype, xp):
    """A C-contiguous array of ``shape`` for temporary band data, kept from call to call.

    The convolutions need a few MB of columns per band, and a fresh allocation of that size
    is often fresh memory from the kernel, faulted in page by page (about 1,000 faults per
    4 MB): more than half of the narrow training step's faults under glibc's defaults.
    So each thread keeps one flat buffer per ``name`` (and array module and dtype), grown
    when too small, as Caffe keeps one column buffer. Its contents are garbage and valid
    only until the next call with the same ``name`` in the same thread. Buffers over
    ``SCRATCH_MAX_BYTES`` are not kept.
    """
    size = math.prod(shape)
    if size * xp.dtype(dtype).itemsize > SCRATCH_MAX_BYTES:
        return xp.empty(shape, dtype=dtype)
    buffers = _scratch_buffers.__dict__
    key = (name, xp.__name__, xp.dtype(dtype).str)
    buffer = buffers.get(key)
    if buffer is None or buffer.size < size:
        buffer = buffers[key] = xp.empty(size, dtype=dtype)
    return buffer[:size].reshape(shape)


def image_rows(h, kh, sh, ph, out_h):
    """The output rows ``[first, last)`` whose windows read at least one row of the image.

    The others lie wholly in the zero padding: their outputs are the bias alone, and they
    add nothing to either gradient. FCN's ``conv1_1`` pads by 100, so at 500x500 196 of its
    698 output rows are such rows (134 of 232 in the demo's narrow net, padded by 69).
    """
    first = max(0, (ph - kh) // sh + 1)  # window oh reads padded rows [oh*sh, oh*sh + kh)
    last = min(out_h, (ph + h - 1) // sh + 1)  # and the image is padded rows [ph, ph + h)
    return first, max(first, last)


def column_bands(x, weight, stride, padding, unfold=True, reuse=False):
    """im2col of ``x``, one band of output rows at a time.

    Yields ``(out_rows, in_rows, cols)``: a slice of the output rows, the slice of the
    *padded* input rows they read (``out_rows.start*sh`` up to ``(out_rows.stop-1)*sh + kh``;
    consecutive bands overlap by ``kh - sh`` rows), and their columns, shape
    ``(N, C_in*kh*kw, band_rows*W_out)``: exactly those columns of ``im2col(x)``
    (``None`` with ``unfold=False``, for a caller that needs only the geometry).

    Only the band's rows are ever padded and unfolded, so no column buffer (nor padded
    copy) of the whole image exists: 1.1 GB for ``conv1_2`` at 500x500 if it did. Only the
    rows of :func:`image_rows` are visited: the rest read nothing but zeros. A 1x1 kernel
    with stride 1 and no padding yields one band whose columns are ``x`` itself.

    With ``reuse=True`` every band is unfolded into the same buffer (:func:`scratch`, kept
    from call to call), so a band's columns are valid only until the next band is asked
    for, in any convolution of the same thread: what the convolutions do (use them, then
    move on). Keeping the bands (``list(column_bands(...))``) needs the default,
    ``reuse=False``.
    """
    xp = get_array_module(x)
    n, c_in, h, w = x.shape
    kh, kw = weight.shape[2:]
    (sh, sw), (ph, pw) = stride, padding
    out_h, out_w = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    if is_pointwise(weight, stride, padding):
        yield slice(0, h), slice(0, h), x.reshape(n, c_in, h * w)  # the pixels are the columns
        return
    rows = band_rows(n, c_in * kh * kw, out_h, out_w, weight.nbytes, x.dtype.itemsize)
    first, last = image_rows(h, kh, sh, ph, out_h)
    canvas = None  # one zero canvas per call, for every band
    for r0 in range(first, last, rows):
        r1 = min(r0 + rows, last)
        top, bottom = r0 * sh, (r1 - 1) * sh + kh  # padded rows [top, bottom) are read
        if not unfold:
            yield slice(r0, r1), slice(top, bottom), None
            continue
        lo, hi = max(top, ph), min(bottom, ph + h)  # the image's own rows among them, [lo, hi)
        band = x[:, :, lo - ph:hi - ph]
        pad_top, pad_bottom = lo - top, bottom - hi
        if pad_top or pad_bottom or pw:  # the band on zeros (as xp.pad, without its overhead)
            if canvas is None:  # one zero canvas for every band: its side columns stay zero
                canvas = xp.zeros((n, c_in, (rows - 1) * sh + kh, w + 2 * pw), dtype=x.dtype)
            padded = canvas[:, :, :bottom - top]
            padded[:, :, :pad_top] = 0  # rows that an earlier band may have filled
            padded[:, :, pad_top + hi - lo:] = 0
            padded[:, :, pad_top:pad_top + hi - lo, pw:pw + w] = band
            band = padded
        cols = None
        if reuse:
            cols = scratch("columns", (n, c_in * kh * kw, (r1 - r0) * out_w), x.dtype, xp)
        yield slice(r0, r1), slice(top, bottom), im2col(band, (kh, kw), stride, 0, out=cols)


def conv_weight_grad(dout, cols):
    """Weight gradient of ``out = W @ cols``, summed over the batch.

    Parameters
    ----------
    dout : array, shape (N, C_out, L)
    cols : array, shape (N, K, L)

    Returns
    -------
    dweight : array, shape (C_out, K)
        Possibly a transposed view (see Notes).

    Notes
    -----
    ``dweight = sum_n dout[n] @ cols[n].T``. When ``C_out`` is the smallest of the three
    sizes (most convolutions: few channels, a long band of pixels) it is computed as the
    transpose of ``cols[n] @ dout[n].T``: the same sums, in the orientation OpenBLAS runs
    best (10-20% faster on one thread; with two threads on a busy machine the other one
    was up to 30 times slower). cuBLAS does not mind either way.
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


def _zero_unseen_rows(out, seen):
    """Zero the rows of ``out`` (N, C, H_out, W_out) outside ``seen = (first, last)``: the
    rows that read only padding, which the bands skip."""
    first, last = seen
    out[:, :, :first] = 0
    out[:, :, last:] = 0


def _multiply_into(out, out_rows, w2d, cols):
    """``out[:, :, out_rows] = w2d @ cols``: (C_out, K) @ (N, K, band_rows*W_out)."""
    n, c_out, _, out_w = out.shape
    if n == 1:  # the product lands in the output's rows directly, no copy
        get_array_module(out).matmul(w2d, cols[0], out=out[0, :, out_rows].reshape(c_out, -1))
    else:  # one batched product (N small GEMMs in one call), then a copy
        rows = out_rows.stop - out_rows.start  # not -1: N may be 0
        out[:, :, out_rows] = (w2d @ cols).reshape(n, c_out, rows, out_w)


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, name="conv2d"):
    """Convolve ``x`` with ``weight`` and add ``bias``.

    Parameters
    ----------
    x : array, shape (N, C_in, H, W)
    weight : array, shape (C_out, C_in, kh, kw)
    bias : array, shape (C_out,), or None
    stride, padding : int or (int, int)
    name : str
        Layer name used in error messages.

    Returns
    -------
    out : array, shape (N, C_out, H_out, W_out)
    cache : tuple
        What :func:`conv2d_backward` needs: ``x`` itself (no copy), not its columns.

    Notes
    -----
    ``H_out = (H + 2*padding - kh) // stride + 1`` (floor), likewise ``W_out``.

    The product ``weight2d @ im2col(x)`` is computed one band of output rows at a time
    (:func:`column_bands`): each band's columns are unfolded, multiplied and dropped. The
    result is the same as with one GEMM over all columns (up to float rounding: BLAS may sum
    in another order), while memory stays at one band's columns, about ``CHUNK_BYTES``.
    """
    kh, kw, sh, sw, ph, pw, out_h, out_w = check_conv_args(x, weight, bias, stride, padding, name)
    xp = get_array_module(x)
    n, c_out = x.shape[0], weight.shape[0]
    w2d = weight.reshape(c_out, -1)  # (C_out, C_in*kh*kw)
    out = xp.empty((n, c_out, out_h, out_w), dtype=x.dtype)
    _zero_unseen_rows(out, image_rows(x.shape[2], kh, sh, ph, out_h))
    for out_rows, _, cols in column_bands(x, weight, (sh, sw), (ph, pw), reuse=True):
        _multiply_into(out, out_rows, w2d, cols)
    if bias is not None:
        def add_bias(c0, c1):  # channels c0:c1 (split among CPU threads)
            out[:, c0:c1] += bias[c0:c1, None, None]

        split_work(add_bias, c_out, out.nbytes, xp)
    cache = (x, weight, bias is not None, (sh, sw), (ph, pw))
    return out, cache


def conv2d_backward(dout, cache, input_grad=True, weight_grad=True, name="conv2d"):
    """Gradients of :func:`conv2d_forward`.

    Parameters
    ----------
    dout : array, shape (N, C_out, H_out, W_out)
    cache : tuple from :func:`conv2d_forward`
    input_grad, weight_grad : bool
        ``False`` skips that gradient and returns ``None`` in its place: the first layer of
        a net needs no image gradient (``dcols`` and ``col2im`` are skipped), a frozen
        weight no weight gradient (nor the columns it is made from).
    name : str
        Layer name used in error messages.

    Returns
    -------
    dx : array, shape (N, C_in, H, W), or None
    dweight : array, shape (C_out, C_in, kh, kw), or None
    dbias : array, shape (C_out,), or None when the forward had no bias

    Notes
    -----
    Band by band, as the forward: the band's columns are unfolded again from the cached
    ``x`` (recomputing them costs far less than the GEMMs that use them), its share of the
    weight gradient is added up, and its input gradient is folded back by ``col2im`` onto
    the padded rows that the band read. Bands overlap by ``kh - sh`` rows, so the folds add.

    A stride-1 layer that does not widen (``C_out <= C_in``, FCN's 3x3 layers but the
    first of each block) takes another route to the same sums: both gradients from one
    unfolding of ``dout`` (:func:`stride1_backward`), which is cheaper than unfolding ``x``
    and folding back ``dcols`` (docs/performance.md). A 1x1 kernel (fc7, the scorers) has
    nothing to unfold, and rotating its weight would only copy it twice (64 MB for fc7):
    it keeps the plain route.
    """
    x, weight, has_bias, stride, padding = cache
    xp = get_array_module(dout)
    n, c_in, h, w = x.shape
    c_out, (ph, pw), kernel = weight.shape[0], padding, weight.shape[2:]
    out_hw = [conv_output_size(*axis) for axis in zip((h, w), kernel, stride, padding)]
    check_grad(dout, (n, c_out, *out_hw), name)
    dbias = dout.sum(axis=(0, 2, 3)) if has_bias else None
    if (input_grad and stride == (1, 1) and c_out <= c_in and kernel != (1, 1)
            and ph < kernel[0] and pw < kernel[1]):
        return stride1_backward(dout, x, weight, padding, weight_grad) + (dbias,)
    w2d = weight.reshape(c_out, -1)  # (C_out, C_in*kh*kw)
    dweight = dx_pad = None
    if input_grad:
        dx_pad = xp.zeros((n, c_in, h + 2 * ph, w + 2 * pw), dtype=dout.dtype)
    bands = column_bands(x, weight, stride, padding, unfold=weight_grad, reuse=True)
    for out_rows, in_rows, cols in bands:
        length = (out_rows.stop - out_rows.start) * out_hw[1]  # not -1: N may be 0
        d = dout[:, :, out_rows].reshape(n, c_out, length)  # (N, C_out, band_rows*W_out)
        if weight_grad:
            # (C_out, C_in*kh*kw), kept in the first band's memory order: no transposing copy
            dweight = accumulate(dweight, conv_weight_grad(d, cols))
        if input_grad:
            dcols = scratch("dcols", (n, w2d.shape[1], d.shape[2]), d.dtype, xp)
            xp.matmul(w2d.T, d, out=dcols)  # (N, C_in*kh*kw, band_rows*W_out)
            band_shape = (n, c_in, in_rows.stop - in_rows.start, w + 2 * pw)
            col2im(dcols, band_shape, kernel, stride, 0, out=dx_pad[:, :, in_rows])
    if weight_grad and dweight is None:  # no output row saw the image
        dweight = xp.zeros_like(weight)
    elif weight_grad:
        dweight = xp.ascontiguousarray(dweight).reshape(weight.shape)  # (C_out, C_in, kh, kw)
    dx = dx_pad[:, :, ph:ph + h, pw:pw + w] if input_grad else None
    return dx, dweight, dbias


def rotated_kernel(weight):
    """The kernel rotated by 180 degrees with its two channel axes swapped, contiguous.

    ``(A, B, kh, kw) -> (B, A, kh, kw)``. Running a stride-1 convolution backwards is a
    convolution with this weight (:func:`stride1_backward`), and so is a transposed
    convolution (:mod:`minifcn.ops.conv_matrix`). Applied twice it gives ``weight`` back.
    """
    xp = get_array_module(weight)
    return xp.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


def stride1_backward(dout, x, weight, padding, weight_grad=True):
    """Both gradients of a stride-1 convolution from one unfolding of ``dout``.

    Parameters
    ----------
    dout : array, shape (N, C_out, H_out, W_out)
    x : array, shape (N, C_in, H, W)
        The forward's input.
    weight : array, shape (C_out, C_in, kh, kw)
    padding : (int, int)
        The forward's padding ``(ph, pw)``, at most ``(kh - 1, kw - 1)``.
    weight_grad : bool
        ``False`` returns ``None`` for the weight gradient.

    Returns
    -------
    dx : array, shape (N, C_in, H, W)
    dweight : array, shape (C_out, C_in, kh, kw), or None

    Notes
    -----
    ``out[y, x] = sum W[i, j] x_pad[y + i, x + j]`` (channels left out), so pixel ``x[y, x]``
    met ``W[i, j]`` in output ``(y + ph - i, x + pw - j)``. Two sums follow:

    - ``dx[y, x] = sum dout[y + ph - i, x + pw - j] W[i, j]``: a convolution of ``dout``,
      padded by ``kh - 1 - ph`` (and ``kw - 1 - pw``), with the kernel rotated by 180 degrees
      and its input and output channels swapped. It is ``H_out + kh - 1 - 2*ph = H`` rows
      tall, as it must be.
    - ``dW[i, j] = sum x[y, x] dout[y + ph - i, x + pw - j]``: the columns of that same
      unfolding of ``dout``, multiplied by ``x`` itself (and rotated back).

    So ``cols = im2col(dout)`` (``C_out*kh*kw`` rows, one column per input pixel) gives
    ``dx = rotated2d @ cols`` and ``dW`` from ``x @ cols.T``, band by band as in the forward.
    """
    xp = get_array_module(dout)
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    rotated = rotated_kernel(weight)  # (C_in, C_out, kh, kw)
    r2d = rotated.reshape(c_in, -1)  # (C_in, C_out*kh*kw)
    dout_padding = (kh - 1 - padding[0], kw - 1 - padding[1])
    dx = xp.empty((n, c_in, h, w), dtype=dout.dtype)  # every row is written: padding < kernel
    grad = None  # (C_in, C_out*kh*kw): the weight gradient, rotated
    for rows, _, cols in column_bands(dout, rotated, (1, 1), dout_padding, reuse=True):
        _multiply_into(dx, rows, r2d, cols)  # cols: (N, C_out*kh*kw, band_rows*W)
        if weight_grad:
            x_band = x[:, :, rows].reshape(n, c_in, (rows.stop - rows.start) * w)  # (N, C_in, L)
            grad = accumulate(grad, conv_weight_grad(x_band, cols))
    if not weight_grad:
        return dx, None
    return dx, rotated_kernel(grad.reshape(c_in, c_out, kh, kw))  # rotated back


def conv2d_naive(x, weight, bias=None, stride=1, padding=0):
    """Loop twin of :func:`conv2d_forward`: every output pixel as a sum over its window."""
    xp = get_array_module(x)
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    sh, sw = pair(stride)
    ph, pw = pair(padding)
    out_h, out_w = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    x_pad = xp.zeros((n, c_in, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    x_pad[:, :, ph:ph + h, pw:pw + w] = x
    out = xp.zeros((n, c_out, out_h, out_w), dtype=x.dtype)
    for b in range(n):
        for o in range(c_out):
            for i in range(out_h):
                for j in range(out_w):
                    window = x_pad[b, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
                    out[b, o, i, j] = (window * weight[o]).sum()
            if bias is not None:
                out[b, o] += bias[o]
    return out


def conv2d_backward_naive(dout, x, weight, stride=1, padding=0):
    """Loop twin of :func:`conv2d_backward`: each output pixel sends its gradient back
    to the window it read. Returns ``(dx, dweight, dbias)``."""
    xp = get_array_module(x)
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    sh, sw = pair(stride)
    ph, pw = pair(padding)
    x_pad = xp.zeros((n, c_in, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    x_pad[:, :, ph:ph + h, pw:pw + w] = x
    dx_pad = xp.zeros_like(x_pad)
    dweight = xp.zeros_like(weight)
    for b in range(n):
        for o in range(c_out):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    g = dout[b, o, i, j]
                    rows, cols = slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)
                    dweight[o] += g * x_pad[b, :, rows, cols]
                    dx_pad[b, :, rows, cols] += g * weight[o]
    dbias = dout.sum(axis=(0, 2, 3))
    return dx_pad[:, :, ph:ph + h, pw:pw + w], dweight, dbias

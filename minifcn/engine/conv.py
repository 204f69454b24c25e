"""The engine's convolution: the book's im2col + GEMM, in bands, on kept buffers and threads.

Replaces :func:`minifcn.ops.conv.conv2d_forward` and :func:`minifcn.ops.conv.conv2d_backward`
with the same arguments and results (tested equal in ``tests/test_engine_equivalence.py``).
What differs, and why (figures from ``docs/performance.md``):

- bands of output rows (:mod:`minifcn.engine.bands`): no column buffer of the whole image,
  the cache keeps the input, not its columns (items 1, 9, 13, 15, 16);
- the weight gradient in OpenBLAS's better orientation (item 2);
- a batch-1 product written straight into the output's rows (item 6);
- stride-1 layers that do not widen take :func:`minifcn.engine.stride1.stride1_backward`
  (item 12); the others fold band by band into the gradient (items 16, 17, 19);
- the forward of 3x3 layers with many channels by Winograd's F(2x2, 3x3), and the input
  gradient of those that do not widen (:mod:`minifcn.engine.winograd`, *Fewer
  multiplications*).

Layouts: ``x`` (N, C_in, H, W), ``weight`` (C_out, C_in, kh, kw), ``bias`` (C_out,).
"""
from __future__ import annotations

from ..backend import get_array_module
from ..ops._util import check_grad, pair
from ..ops.conv import check_conv_args
from .bordered import (box_input_grad_applies, bordered_forward, bordered_input_grad,
                       bordered_weight_grad, keeps_border)
from .bands import column_bands, conv_weight_grad, image_rows, multiply_into
from .im2col import accumulate, col2im
from .memory import scratch
from .reach import dout_reach, reach_backward, reach_pays
from .stride1 import backward_is_convolution, stride1_backward
from .winograd import winograd_conv, winograd_pays
from .threads import split_work

__all__ = ["conv2d_forward", "conv2d_backward", "conv_weight_grad", "forward_route",
           "banded_forward", "winograd_forward", "backward_route", "banded_backward"]


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, name="conv2d", *, border=None):
    """Replaces :func:`minifcn.ops.conv.conv2d_forward`: the same output, band by band or by
    Winograd's F(2x2, 3x3) (:func:`forward_route`).

    Parameters and returns as the book's; the cache holds ``x`` itself (no copy), not its
    columns. ``border`` (keyword-only, a :class:`minifcn.engine.border.ConvBorder`: FCN's
    trunk passes one) says which positions of the output are the blank-image constant: only
    the others are computed (:func:`minifcn.engine.bordered.bordered_forward`), and the
    backward's weight gradient uses it too.

    Notes
    -----
    Why: the book's column buffer is 1.1 GB for ``conv1_2`` at 500x500. What it buys: a
    full-width forward at 500x500 in 0.9 GB of resident memory (PyTorch's: 1.35 GB), in
    1.1-1.4x PyTorch's time with the bands alone and 0.67-0.85x with the border and Winograd
    (``docs/performance.md``, Results). Rows whose windows see only padding
    are not computed: their output is the bias (item 13). The 3x3 layers with many channels
    take 4/9 of the multiplications (Winograd: 0.65-0.84x of the banded route's time,
    ``docs/performance.md``, *Fewer multiplications*).
    """
    kh, kw, sh, sw, ph, pw, out_h, out_w = check_conv_args(x, weight, bias, stride, padding, name)
    xp = get_array_module(x)
    n, c_out = x.shape[0], weight.shape[0]
    if not keeps_border(border, weight, (sh, sw), (ph, pw)):
        border = None  # nothing constant, or too little to pay: the plain route
    if border is not None:
        out = bordered_forward(x, weight, bias, (sh, sw), (ph, pw), border)
        return out, (x, weight, bias is not None, (sh, sw), (ph, pw), out.shape, border)
    out = xp.empty((n, c_out, out_h, out_w), dtype=x.dtype)
    forward_route(weight, (sh, sw), (ph, pw))(x, weight, (sh, sw), (ph, pw), out)
    if bias is not None:
        def add_bias(c0, c1):  # channels c0:c1 (split among CPU threads)
            out[:, c0:c1] += bias[c0:c1, None, None]

        split_work(add_bias, c_out, out.nbytes, xp)
    cache = (x, weight, bias is not None, (sh, sw), (ph, pw), out.shape, None)
    return out, cache


def forward_route(weight, stride, padding):
    """The function :func:`conv2d_forward` hands a forward without a border to.

    :func:`winograd_forward` for a 3x3, stride-1 layer with many channels
    (:func:`minifcn.engine.winograd.winograd_pays`), else :func:`banded_forward`.
    A forward with a border takes the same choice for its box
    (:func:`minifcn.engine.bordered.bordered_forward`).
    """
    if winograd_pays(weight, pair(stride), pair(padding)):
        return winograd_forward
    return banded_forward


conv2d_forward.route = forward_route  # read by ``minifcn describe --routes``


def banded_forward(x, weight, stride, padding, out):
    """``out`` = the convolution without bias, band by band (:func:`column_bands`).

    Rows whose windows read only padding are not unfolded: they are zeros (item 13).
    """
    kh, (sh, _), (ph, _) = weight.shape[2], stride, padding
    w2d = weight.reshape(weight.shape[0], -1)  # (C_out, C_in*kh*kw)
    first, last = image_rows(x.shape[2], kh, sh, ph, out.shape[2])
    out[:, :, :first] = 0  # rows that read only padding: the bands skip them
    out[:, :, last:] = 0
    for out_rows, _, cols in column_bands(x, weight, stride, padding, reuse=True):
        multiply_into(out, out_rows, w2d, cols)


def winograd_forward(x, weight, stride, padding, out):
    """``out`` = the convolution without bias by Winograd's F(2x2, 3x3)
    (:func:`minifcn.engine.winograd.winograd_conv`; stride 1, padding at most 2: every output
    row reads the image)."""
    winograd_conv(x, weight, padding, out)


def backward_route(weight, stride, padding, input_grad=True):
    """The function :func:`conv2d_backward` hands its gradients to.

    :func:`~minifcn.engine.stride1.stride1_backward` for a stride-1 layer that does not widen
    (``C_out <= C_in``), pads less than its kernel and is not 1x1 (whose rotation would only
    copy the weight twice: item 18), when the input gradient is wanted; else
    :func:`banded_backward`, the book's ``col2im`` route in bands.
    """
    c_out, c_in, kh, kw = weight.shape
    if (input_grad and c_out <= c_in and (kh, kw) != (1, 1)
            and backward_is_convolution(stride, padding, (kh, kw))):
        return stride1_backward
    return banded_backward


def conv2d_backward(dout, cache, input_grad=True, weight_grad=True, name="conv2d"):
    """Replaces :func:`minifcn.ops.conv.conv2d_backward`: the same gradients, by the route of
    :func:`backward_route`.

    Parameters and returns as the book's (``input_grad`` / ``weight_grad`` False: that
    gradient is skipped and ``None`` returned in its place). ``input_grad="box"`` (FCN's
    trunk in training, with a border): the input gradient is wanted only on the
    input's box and frames and as per-channel sums elsewhere
    (:func:`minifcn.engine.bordered.bordered_input_grad`); without a border it is the whole
    one. The book takes ``"box"`` as True.

    Notes
    -----
    Why: the book's backward reads the forward's whole column buffer and folds a second one
    of the same size. What it buys (``docs/performance.md``): no column buffer kept between
    the passes (500x500 training peak 6.1 to 2.4 GB, item 1); the stride-1 route's whole
    backward of ``conv1_2`` at 500x500 595 to 467 ms (item 12); folding straight into the
    gradient's rows, 64 -> 128 channels at 349x349 257-269 to 244-250 ms (item 17).
    """
    x, weight, has_bias, stride, padding, out_shape, border = cache
    check_grad(dout, out_shape, name)
    dbias = dout.sum(axis=(0, 2, 3)) if has_bias else None
    if input_grad == "box" and box_input_grad_applies(border, stride, padding, weight.shape[2:],
                                                      weight[0].size):
        # the layer below reads the input gradient only on its box and frames, and its sums
        dweight = None
        if weight_grad:
            dweight = bordered_weight_grad(dout, x, weight, stride, padding, border, dbias)
        return bordered_input_grad(dout, weight, padding, border), dweight, dbias
    input_grad = bool(input_grad)
    # a gradient that is zero outside a rectangle (the final crop's reach): that rectangle only
    reach = dout_reach(dout) if pair(stride) == (1, 1) else None
    if reach_pays(reach, dout.shape, stride, padding, weight.shape[2:]):
        dx, dweight = reach_backward(dout, x, weight, padding, reach, input_grad, weight_grad)
        return dx, dweight, dbias
    route = backward_route(weight, stride, padding, input_grad)
    if border is not None and route is banded_backward:
        # the weight gradient over the box and frames only, plus one outer product for the
        # constant; the input gradient needs no columns at all. (The stride-1 route gets its
        # weight gradient from the unfolding its input gradient makes anyway: cheaper whole.)
        dweight = None
        if weight_grad:
            dweight = bordered_weight_grad(dout, x, weight, stride, padding, border, dbias)
        dx = None
        if input_grad:
            dx = banded_backward(dout, x, weight, stride, padding, True, False)[0]
        return dx, dweight, dbias
    if route is stride1_backward:
        dx, dweight = stride1_backward(dout, x, weight, padding, weight_grad)
    else:
        dx, dweight = banded_backward(dout, x, weight, stride, padding, input_grad, weight_grad)
    return dx, dweight, dbias


conv2d_backward.route = backward_route  # read by ``minifcn describe --routes``


def banded_backward(dout, x, weight, stride, padding, input_grad=True, weight_grad=True):
    """The book's backward (``dW = dout @ cols.T``, ``dx = col2im(W.T @ dout)``), band by band.

    Returns ``(dx, dweight)``, either None when not asked for.

    Notes
    -----
    The band's columns are unfolded again from the cached ``x`` (recomputing them costs far
    less than the GEMMs that use them), its share of the weight gradient is added up, and its
    input gradient is folded by ``col2im`` straight onto the padded rows that the band read.
    Bands overlap by ``kh - sh`` rows, so the folds add.
    """
    xp = get_array_module(dout)
    n, c_out = dout.shape[:2]
    _, c_in, h, w = x.shape
    (ph, pw), kernel = padding, weight.shape[2:]
    w2d = weight.reshape(c_out, -1)  # (C_out, C_in*kh*kw)
    dweight = dx_pad = None
    if input_grad:
        dx_pad = xp.zeros((n, c_in, h + 2 * ph, w + 2 * pw), dtype=dout.dtype)
    bands = column_bands(x, weight, stride, padding, unfold=weight_grad, reuse=True)
    for out_rows, in_rows, cols in bands:
        length = (out_rows.stop - out_rows.start) * dout.shape[3]  # not -1: N may be 0
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
    return dx, dweight

"""The engine's transposed convolution: FCN's fixed upsamplers as two matrix products.

Replaces :func:`minifcn.ops.conv_transpose.conv_transpose2d_forward` and
:func:`minifcn.ops.conv_transpose.conv_transpose2d_backward` with the same arguments and
results (tested equal in ``tests/test_engine_equivalence.py``). A weight that keeps channels
apart and has separable kernels (FCN's bilinear upsamplers) is applied as ``A @ x @ B.T`` per
channel (:mod:`minifcn.engine.separable`); any other weight takes the book's route,
``col2im(W^T x)``, with the engine's col2im (phases for large kernels, threads, a gather
kernel on CuPy). The weight gradient always comes from the columns of ``dout``.
"""
from __future__ import annotations

from ..backend import get_array_module
from ..ops._util import check_grad
from ..ops.conv_transpose import check_conv_transpose_args
from .bands import conv_weight_grad
from .im2col import col2im, im2col
from .separable import separable_factors, separable_upsample_backward, separable_upsample_forward


def conv_transpose2d_forward(x, weight, bias=None, stride=1, padding=0, output_padding=0,
                             name="conv_transpose2d"):
    """Replaces :func:`minifcn.ops.conv_transpose.conv_transpose2d_forward`.

    Parameters and returns as the book's; the cache also holds the separable route's
    matrices (None on the column route).

    Notes
    -----
    Why: for upscore8 (k16, s8) the book builds a column buffer of ``C*256`` rows per input
    pixel and folds it in 256 passes. What it buys (upscore8 at 500x500, one thread,
    ``docs/performance.md`` item 8): forward 48.5 to 14.0 ms, input gradient 69.9 to
    12.5 ms. A learned upsampler on the column route still gains the phase fold of
    :func:`minifcn.engine.im2col.col2im` (upscore8's fold at 500x500: 66.9 to 28.8 ms).
    """
    kh, kw, sh, sw, ph, pw, oph, opw, out_h, out_w = check_conv_transpose_args(
        x, weight, bias, stride, padding, output_padding, name)
    n, c_in, h, w = x.shape
    factors = separable_factors(weight)
    if factors is not None:  # bilinear-like: two small products, no columns
        out, matrices = separable_upsample_forward(x, factors, (out_h, out_w), (sh, sw), (ph, pw))
    else:
        out, matrices = columns_forward(x, weight, (out_h, out_w), (sh, sw), (ph, pw)), None
    if bias is not None:
        out += bias[:, None, None]
    cache = (x.reshape(n, c_in, h * w), weight, bias is not None, (sh, sw), (ph, pw), (h, w),
             out.shape, matrices)
    return out, cache


def columns_forward(x, weight, out_hw, stride, padding):
    """The book's route, ``col2im(W^T x)``, with the engine's col2im.

    Returns an array of shape (N, C_out, H_out, W_out).
    """
    n, c_in, h, w = x.shape
    c_out, kh, kw = weight.shape[1:]
    cols = weight.reshape(c_in, -1).T @ x.reshape(n, c_in, h * w)  # (N, C_out*kh*kw, H*W)
    return col2im(cols, (n, c_out) + tuple(out_hw), (kh, kw), stride, padding)


def forward_route(weight, stride=1, padding=0):
    """The function the forward hands its work to: the separable products or the columns."""
    return separable_upsample_forward if separable_factors(weight) is not None else columns_forward


conv_transpose2d_forward.route = forward_route  # read by ``minifcn describe --routes``


def conv_transpose2d_backward(dout, cache, input_grad=True, weight_grad=True,
                              name="conv_transpose2d"):
    """Replaces :func:`minifcn.ops.conv_transpose.conv_transpose2d_backward`.

    Parameters and returns as the book's. The input gradient takes the forward's route
    transposed (``A.T @ dout @ B``, or ``W @ im2col(dout)``); the weight gradient, when
    wanted, comes from ``im2col(dout)`` as in the book. FCN's fixed upsamplers need no weight
    gradient, so they unfold nothing. What it buys: upscore8's input gradient at 500x500, one
    thread, 69.9 to 12.5 ms, and 13-19 ms of weight gradient a fixed layer no longer computes
    (``docs/performance.md``, item 8).
    """
    x2d, weight, has_bias, stride, padding, hw, out_shape, matrices = cache
    check_grad(dout, out_shape, name)
    xp = get_array_module(dout)
    dcols = dx = dweight = None
    if weight_grad or (input_grad and matrices is None):
        # the windows the forward scattered into; output_padding rows lie outside all of them
        dcols = im2col(dout, weight.shape[2:], stride, padding)  # (N, C_out*kh*kw, H*W)
    if input_grad and matrices is not None:
        dx = separable_upsample_backward(dout, matrices)
    elif input_grad:
        dx = columns_backward(dcols, weight, hw)
    if weight_grad:
        dweight = xp.ascontiguousarray(conv_weight_grad(x2d, dcols)).reshape(weight.shape)
    dbias = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dweight, dbias


def columns_backward(dcols, weight, hw):
    """The book's input gradient, ``W @ im2col(dout)``. Returns (N, C_in, H, W)."""
    c_in = weight.shape[0]
    return (weight.reshape(c_in, -1) @ dcols).reshape(dcols.shape[0], c_in, *hw)


def backward_route(weight, stride=1, padding=0):
    """The function the backward hands the input gradient to (as :func:`forward_route`)."""
    if separable_factors(weight) is not None:
        return separable_upsample_backward
    return columns_backward


conv_transpose2d_backward.route = backward_route  # read by ``minifcn describe --routes``

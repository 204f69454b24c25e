"""A convolution of FCN's trunk that computes only what the image can reach.

:mod:`minifcn.engine.border` tells, for every convolution of the trunk, which positions of
its output are the blank-image constant and which depend on the input (the box and the
frames), and what the constants are. These functions use that:

- :func:`bordered_forward`: the output is the constant, written where it holds, and the
  engine's banded convolution on each input-dependent rectangle
  (:func:`minifcn.engine.bands.column_bands` with a row and column range): the GEMMs shrink
  to the box and the frames;
- :func:`bordered_weight_grad`: ``dW = sum_o dout[o] cols[o]^T`` over the input-dependent
  positions only, plus one outer product for all the others, whose columns are all the same
  vector (the constant below, at every tap): ``(sum of dout there) x (constant patch)``.

Both return what the book returns (tested equal in ``tests/test_border.py``); the input
gradient is the engine's usual one (every position of it is needed by the layer below).

Layouts: ``x`` (N, C_in, H, W), ``weight`` (C_out, C_in, kh, kw).
"""
from __future__ import annotations

from ..backend import get_array_module
from .bands import column_bands, conv_weight_grad, multiply_into
from .im2col import accumulate


def bordered_forward(x, weight, bias, stride, padding, border):
    """The convolution's output, computing only the input-dependent rectangles.

    Parameters
    ----------
    x : array, shape (N, C_in, H, W)
    weight : array, shape (C_out, C_in, kh, kw)
    bias : array, shape (C_out,), or None
    stride, padding : (int, int)
    border : minifcn.engine.border.ConvBorder
        The regions of ``x`` and of the output, and the output's constant.

    Returns
    -------
    out : array, shape (N, C_out, H_out, W_out)
    """
    xp = get_array_module(x)
    n, c_out = x.shape[0], weight.shape[0]
    out_h, out_w = border.out.shape
    out = xp.empty((n, c_out, out_h, out_w), dtype=x.dtype)
    constant = border.out_constant.astype(x.dtype, copy=False)[:, None, None]  # (C_out, 1, 1)
    for rows, cols in border.out.pieces(constant=True):
        out[:, :, rows, cols] = constant
    w2d = weight.reshape(c_out, -1)  # (C_out, C_in*kh*kw)
    for rows, cols in border.out.pieces():
        for out_rows, _, columns in column_bands(x, weight, stride, padding, reuse=True,
                                                 rows=rows, cols=cols):
            multiply_into(out, out_rows, w2d, columns, cols)
        if bias is not None:
            out[:, :, rows, cols] += bias[:, None, None]
    return out


def bordered_weight_grad(dout, x, weight, stride, padding, border, dout_sum=None):
    """The weight gradient, with GEMMs over the input-dependent positions only.

    Parameters
    ----------
    dout : array, shape (N, C_out, H_out, W_out)
    x, weight, stride, padding, border : as :func:`bordered_forward`
    dout_sum : array, shape (C_out,), optional
        ``dout.sum(axis=(0, 2, 3))`` (the bias gradient) when the caller has it.

    Returns
    -------
    dweight : array, shape (C_out, C_in, kh, kw)

    Notes
    -----
    An output position ``o`` in the constant region reads the input's constant ``c`` at
    every tap, so its column is ``c`` repeated ``kh*kw`` times per channel (the constant
    patch ``P``), and ``sum over those o of dout[o] P^T = (sum over those o of dout[o]) P^T``:
    the sum over the constant positions is the whole sum less the input-dependent ones'.
    """
    xp = get_array_module(dout)
    n, c_out = dout.shape[:2]
    c_in, kh, kw = weight.shape[1:]
    if dout_sum is None:
        dout_sum = dout.sum(axis=(0, 2, 3))
    dweight, varying_sum = None, xp.zeros_like(dout_sum)
    for rows, cols in border.out.pieces():
        width = cols.stop - cols.start
        for out_rows, _, columns in column_bands(x, weight, stride, padding, reuse=True,
                                                 rows=rows, cols=cols):
            length = (out_rows.stop - out_rows.start) * width
            d = dout[:, :, out_rows, cols].reshape(n, c_out, length)  # (N, C_out, L), a copy
            dweight = accumulate(dweight, conv_weight_grad(d, columns))  # (C_out, C_in*kh*kw)
            varying_sum += d.sum(axis=(0, 2))
    if dweight is None:
        dweight = xp.zeros((c_out, c_in * kh * kw), dtype=dout.dtype)
    elif not dweight.flags.c_contiguous:
        dweight = xp.ascontiguousarray(dweight)
    if border.inp_constant is not None:
        patch = xp.repeat(border.inp_constant.astype(dout.dtype, copy=False), kh * kw)
        dweight += (dout_sum - varying_sum)[:, None] * patch[None, :]  # (C_out, C_in*kh*kw)
    return dweight.reshape(c_out, c_in, kh, kw)

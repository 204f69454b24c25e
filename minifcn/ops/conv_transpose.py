"""Transposed convolution: the transpose of a convolution, as code.

Write a convolution of a ``C_out x H x W`` image to a ``C_in x h x w`` map as a matrix ``C``
acting on the flattened image. A transposed convolution multiplies by ``C^T``: it takes a
``C_in x h x w`` map back to a ``C_out x H x W`` image. Since the gradient of ``y = C x`` with
respect to ``x`` is ``C^T dy``, the transposed convolution's forward pass *is* the
convolution's input-gradient pass, and its backward pass *is* the convolution's forward::

    forward:   cols = weight2d.T @ x ;  out = col2im(cols)        (conv's backward-data)
    backward:  dcols = im2col(dout)                                (conv's forward)
               dx = weight2d @ dcols
               dweight = conv_weight_grad(x, dcols)                (shared with conv2d)

The weight has layout ``(C_in, C_out, kh, kw)`` (Caffe and PyTorch): read as a convolution
weight ``(out, in, kh, kw)`` it is exactly the convolution whose transpose this is, a
convolution from ``C_out`` to ``C_in`` channels.

Nothing is inverted: ``C^T`` is not ``C^{-1}``. It only restores the *shape* of the
convolution's input (and, for a bilinear kernel, a smooth upsampling of the values).
"""
from __future__ import annotations

from ..backend import get_array_module
from ._util import check_grad, check_layer_args, pair, transposed_output_size
from .conv import conv_weight_grad
from .im2col import col2im, im2col


def check_conv_transpose_args(x, weight, bias, stride, padding, output_padding, name):
    """Validate arguments; return ``(kh, kw, sh, sw, ph, pw, oph, opw, out_h, out_w)``."""
    kh, kw, sh, sw, ph, pw = check_layer_args(x, weight, bias, stride, padding, name, transposed=True)
    oph, opw = pair(output_padding, "output_padding")
    if not (0 <= oph < sh and 0 <= opw < sw):
        raise ValueError(f"{name}: output_padding {output_padding} must be in [0, stride)")
    h, w = x.shape[2:]
    out_h = transposed_output_size(h, kh, sh, ph, oph)
    out_w = transposed_output_size(w, kw, sw, pw, opw)
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"{name}: output would be {out_h}x{out_w} for input {tuple(x.shape)}, kernel "
            f"{kh}x{kw}, stride {(sh, sw)}, padding {(ph, pw)}"
        )
    return kh, kw, sh, sw, ph, pw, oph, opw, out_h, out_w


def conv_transpose2d_forward(x, weight, bias=None, stride=1, padding=0, output_padding=0,
                             name="conv_transpose2d"):
    """Transposed convolution (a.k.a. "deconvolution", fractionally strided convolution).

    Parameters
    ----------
    x : array, shape (N, C_in, H, W)
    weight : array, shape (C_in, C_out, kh, kw)
    bias : array, shape (C_out,), or None
    stride, padding : int or (int, int)
        Those of the convolution this is the transpose of.
    output_padding : int or (int, int)
        Extra rows/columns added at the bottom/right (``0 <= output_padding < stride``). A
        strided convolution maps several input sizes to one output size; this picks which
        of them to return.
    name : str
        Layer name used in error messages.

    Returns
    -------
    out : array, shape (N, C_out, H_out, W_out)
    cache : tuple

    Notes
    -----
    ``H_out = stride*(H - 1) + kh - 2*padding + output_padding``, likewise ``W_out``.
    """
    kh, kw, sh, sw, ph, pw, oph, opw, out_h, out_w = check_conv_transpose_args(
        x, weight, bias, stride, padding, output_padding, name)
    n, c_in, h, w = x.shape
    c_out = weight.shape[1]
    x2d = x.reshape(n, c_in, h * w)  # (N, C_in, H*W)
    # every input pixel's kernel, scaled by its value: (C_out*kh*kw, C_in) @ (N, C_in, H*W)
    cols = weight.reshape(c_in, c_out * kh * kw).T @ x2d
    out = col2im(cols, (n, c_out, out_h, out_w), (kh, kw), (sh, sw), (ph, pw))  # overlaps add
    if bias is not None:
        out = out + bias[:, None, None]
    cache = (x2d, weight, bias is not None, (sh, sw), (ph, pw), (h, w), out.shape)
    return out, cache


def conv_transpose2d_backward(dout, cache, input_grad=True, weight_grad=True,
                              name="conv_transpose2d"):
    """Gradients of :func:`conv_transpose2d_forward`.

    Parameters
    ----------
    dout : array, shape (N, C_out, H_out, W_out)
    cache : tuple from :func:`conv_transpose2d_forward`
    input_grad, weight_grad : bool
        ``False`` skips that gradient (``None`` in its place); FCN's fixed bilinear
        upsamplers need no weight gradient.
    name : str
        Layer name used in error messages.

    Returns
    -------
    dx : array, shape (N, C_in, H, W), or None
    dweight : array, shape (C_in, C_out, kh, kw), or None
    dbias : array, shape (C_out,), or None
    """
    x2d, weight, has_bias, stride, padding, (h, w), out_shape = cache
    check_grad(dout, out_shape, name)
    n, c_in = x2d.shape[:2]
    dx = dweight = None
    if input_grad or weight_grad:
        # the windows the forward scattered into, one per input pixel (output_padding rows lie
        # outside every window and drop out here)
        dcols = im2col(dout, weight.shape[2:], stride, padding)  # (N, C_out*kh*kw, H*W)
    if input_grad:
        dx = (weight.reshape(c_in, -1) @ dcols).reshape(n, c_in, h, w)  # a convolution of dout
    if weight_grad:
        dweight = conv_weight_grad(x2d, dcols).reshape(weight.shape)  # (C_in, C_out, kh, kw)
    dbias = dout.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dweight, dbias


def conv_transpose2d_naive(x, weight, bias=None, stride=1, padding=0, output_padding=0):
    """Loop twin: every input pixel adds its value times the kernel into the output."""
    xp = get_array_module(x)
    n, c_in, h, w = x.shape
    _, c_out, kh, kw = weight.shape
    sh, sw = pair(stride)
    ph, pw = pair(padding)
    oph, opw = pair(output_padding)
    out_h = transposed_output_size(h, kh, sh, ph, oph)
    out_w = transposed_output_size(w, kw, sw, pw, opw)
    full = xp.zeros((n, c_out, sh * (h - 1) + kh + oph, sw * (w - 1) + kw + opw), dtype=x.dtype)
    for b in range(n):
        for c in range(c_in):
            for i in range(h):
                for j in range(w):
                    full[b, :, i * sh:i * sh + kh, j * sw:j * sw + kw] += x[b, c, i, j] * weight[c]
    out = full[:, :, ph:ph + out_h, pw:pw + out_w]
    if bias is not None:
        out = out + bias[:, None, None]
    return out

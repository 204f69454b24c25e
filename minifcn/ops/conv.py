"""2-D convolution (cross-correlation, as in every deep-learning library) by im2col + GEMM.

Forward::

    cols = im2col(x)                       # (N, C_in*kh*kw, H_out*W_out)
    out  = weight.reshape(C_out, -1) @ cols + bias

Backward (the forward read backwards)::

    dweight = sum_n dout[n] @ cols[n].T    # conv_weight_grad, shared with conv_transpose2d
    dcols   = weight.reshape(C_out, -1).T @ dout
    dx      = col2im(dcols)                # the adjoint of im2col

A 1x1 convolution with stride 1 and no padding needs no im2col at all: it is a fully
connected layer (``C_in -> C_out``) applied at every pixel, i.e. one channel GEMM
``weight (C_out, C_in) @ x (N, C_in, H*W)``. FCN's fc7, score_fr, score_pool4 and
score_pool3 are such layers.

Layouts: ``x`` (N, C_in, H, W), ``weight`` (C_out, C_in, kh, kw), ``bias`` (C_out,).
"""
from __future__ import annotations

from ..backend import get_array_module
from ._util import check_float, check_input, check_same_dtype, conv_output_size, pair
from .im2col import col2im, im2col


def check_conv_args(x, weight, bias, stride, padding, name):
    """Validate a convolution's arguments; return ``(kh, kw, sh, sw, ph, pw, out_h, out_w)``."""
    check_input(x, name)
    if getattr(weight, "ndim", None) != 4:
        raise ValueError(
            f"{name}: weight must be 4-D (C_out, C_in, kh, kw), got shape {tuple(weight.shape)}"
        )
    check_float(weight, name, "weight")
    check_same_dtype(name, input=x, weight=weight, bias=bias)
    c_out, c_in, kh, kw = weight.shape
    if x.shape[1] != c_in:
        raise ValueError(
            f"{name}: input {tuple(x.shape)} has {x.shape[1]} channels but weight "
            f"{tuple(weight.shape)} expects {c_in}"
        )
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise ValueError(f"{name}: bias shape {tuple(bias.shape)} does not match ({c_out},)")
    sh, sw = pair(stride, "stride")
    ph, pw = pair(padding, "padding")
    if sh < 1 or sw < 1 or ph < 0 or pw < 0:
        raise ValueError(f"{name}: stride must be >= 1 and padding >= 0, got {stride}, {padding}")
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


def conv_weight_grad(dout, cols):
    """Weight gradient of ``out = W @ cols``, summed over the batch.

    Parameters
    ----------
    dout : array, shape (N, C_out, L)
    cols : array, shape (N, K, L)

    Returns
    -------
    dweight : array, shape (C_out, K)
    """
    dweight = dout[0] @ cols[0].T  # (C_out, L) @ (L, K)
    for n in range(1, dout.shape[0]):
        dweight += dout[n] @ cols[n].T
    return dweight


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
        What :func:`conv2d_backward` needs.

    Notes
    -----
    ``H_out = (H + 2*padding - kh) // stride + 1`` (floor), likewise ``W_out``.
    """
    kh, kw, sh, sw, ph, pw, out_h, out_w = check_conv_args(x, weight, bias, stride, padding, name)
    n, c_in, h, w = x.shape
    c_out = weight.shape[0]
    if is_pointwise(weight, stride, padding):
        cols = x.reshape(n, c_in, h * w)  # (N, C_in, H*W): the pixels are the columns
    else:
        cols = im2col(x, (kh, kw), (sh, sw), (ph, pw))  # (N, C_in*kh*kw, H_out*W_out)
    out = weight.reshape(c_out, -1) @ cols  # (N, C_out, H_out*W_out)
    if bias is not None:
        out += bias[:, None]
    cache = (x.shape, cols, weight, bias is not None, (sh, sw), (ph, pw))
    return out.reshape(n, c_out, out_h, out_w), cache


def conv2d_backward(dout, cache):
    """Gradients of :func:`conv2d_forward`.

    Parameters
    ----------
    dout : array, shape (N, C_out, H_out, W_out)
    cache : tuple from :func:`conv2d_forward`

    Returns
    -------
    dx : array, shape (N, C_in, H, W)
    dweight : array, shape (C_out, C_in, kh, kw)
    dbias : array, shape (C_out,), or None when the forward had no bias
    """
    x_shape, cols, weight, has_bias, stride, padding = cache
    n, c_out = dout.shape[:2]
    dout = dout.reshape(n, c_out, -1)  # (N, C_out, H_out*W_out)
    w2d = weight.reshape(c_out, -1)  # (C_out, C_in*kh*kw)
    dweight = conv_weight_grad(dout, cols).reshape(weight.shape)
    dbias = dout.sum(axis=(0, 2)) if has_bias else None
    dcols = w2d.T @ dout  # (N, C_in*kh*kw, H_out*W_out)
    if is_pointwise(weight, stride, padding):
        dx = dcols.reshape(x_shape)
    else:
        dx = col2im(dcols, x_shape, weight.shape[2:], stride, padding)
    return dx, dweight, dbias


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

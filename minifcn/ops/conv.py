"""2-D convolution (cross-correlation, as in every deep-learning library) by im2col + GEMM.

Forward::

    cols = im2col(x)                       # (N, C_in*kh*kw, H_out*W_out)
    out  = weight.reshape(C_out, -1) @ cols + bias

Backward (the forward read backwards)::

    dweight = sum_n dout[n] @ cols[n].T    # conv_weight_grad, shared with conv_transpose2d
    dbias   = dout summed over the batch and the pixels
    dcols   = weight.reshape(C_out, -1).T @ dout
    dx      = col2im(dcols)                # the adjoint of im2col

The forward keeps its columns in the cache for the backward. That is simple, and cheap for
the small networks of the notebooks; at full width they are large (1.1 GB for FCN's
``conv1_2`` at 500x500), and the engine (:mod:`minifcn.engine.conv`) computes the same
products band by band instead.

Layouts: ``x`` (N, C_in, H, W), ``weight`` (C_out, C_in, kh, kw), ``bias`` (C_out,).
"""
from __future__ import annotations

from ..backend import get_array_module
from ._util import check_grad, check_layer_args, conv_output_size, pair
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


def conv_weight_grad(dout, cols):
    """Weight gradient of ``out[n] = W @ cols[n]``, summed over the batch.

    Parameters
    ----------
    dout : array, shape (N, C_out, L)
    cols : array, shape (N, K, L)

    Returns
    -------
    dweight : array, shape (C_out, K)
        ``sum_n dout[n] @ cols[n].T`` (zeros for an empty batch: nothing to add up).
    """
    xp = get_array_module(dout)
    dweight = xp.zeros((dout.shape[1], cols.shape[1]), dtype=dout.dtype)
    for n in range(dout.shape[0]):
        dweight += dout[n] @ cols[n].T  # (C_out, L) @ (L, K)
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
        What :func:`conv2d_backward` needs: the columns, the weight and the geometry.

    Notes
    -----
    ``H_out = (H + 2*padding - kh) // stride + 1`` (floor), likewise ``W_out``.
    """
    kh, kw, sh, sw, ph, pw, out_h, out_w = check_conv_args(x, weight, bias, stride, padding, name)
    n, c_out = x.shape[0], weight.shape[0]
    cols = im2col(x, (kh, kw), (sh, sw), (ph, pw))  # (N, C_in*kh*kw, H_out*W_out)
    out = weight.reshape(c_out, -1) @ cols  # (C_out, K) @ (N, K, L) -> (N, C_out, L)
    if bias is not None:
        out += bias[:, None]  # one number per output channel, at every pixel
    out = out.reshape(n, c_out, out_h, out_w)
    cache = (x.shape, cols, weight, bias is not None, (sh, sw), (ph, pw), out.shape)
    return out, cache


def conv2d_backward(dout, cache, input_grad=True, weight_grad=True, name="conv2d"):
    """Gradients of :func:`conv2d_forward`.

    Parameters
    ----------
    dout : array, shape (N, C_out, H_out, W_out)
    cache : tuple from :func:`conv2d_forward`
    input_grad, weight_grad : bool
        ``False`` skips that gradient and returns ``None`` in its place: the first layer of
        a net needs no image gradient, a frozen weight no weight gradient.
    name : str
        Layer name used in error messages.

    Returns
    -------
    dx : array, shape (N, C_in, H, W), or None
    dweight : array, shape (C_out, C_in, kh, kw), or None
    dbias : array, shape (C_out,), or None when the forward had no bias
    """
    x_shape, cols, weight, has_bias, stride, padding, out_shape = cache
    check_grad(dout, out_shape, name)
    n, c_out, out_h, out_w = out_shape
    dout = dout.reshape(n, c_out, out_h * out_w)  # (N, C_out, H_out*W_out); not -1: N may be 0
    dx = dweight = None
    if weight_grad:
        dweight = conv_weight_grad(dout, cols).reshape(weight.shape)  # (C_out, C_in, kh, kw)
    dbias = dout.sum(axis=(0, 2)) if has_bias else None
    if input_grad:
        dcols = weight.reshape(c_out, -1).T @ dout  # (K, C_out) @ (N, C_out, L) -> (N, K, L)
        dx = col2im(dcols, x_shape, weight.shape[2:], stride, padding)  # (N, C_in, H, W)
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

"""Bilinear upsampling as two matrix products: the engine's route for fixed upsamplers.

FCN's fixed upsamplers are transposed convolutions whose weight is zero off the channel
diagonal (channel ``c`` only feeds channel ``c``) and whose kernel is separable
(``weight[c, c] = outer(u_c, v_c)``: for bilinear, the tent times itself). Such a layer never
mixes channels and treats rows and columns independently, so the transposed convolution of
one channel ``x_c`` (H x W) is::

    out_c = A_c @ x_c @ B_c.T        A_c: (H_out, H),  A_c[r, i] = u_c[r + ph - i*sh]
                                     B_c: (W_out, W),  B_c[s, j] = v_c[s + pw - j*sw]

(zero where the tap index falls outside the kernel). ``A_c`` is the one-dimensional transposed
convolution written as a matrix: the "transpose of convolution" story in one dimension, twice.
Its backward is the transpose: ``dx_c = A_c.T @ dout_c @ B_c``.

For upscore8 (k16, s8) this replaces a column buffer of ``C*256`` rows per input pixel and
its col2im by two small batched products: at 500x500, one thread, forward 48.5 to 14.0 ms and
input gradient 69.9 to 12.5 ms (``docs/performance.md``, item 8). :func:`separable_factors`
decides whether a weight qualifies (exactly, up to float rounding);
:mod:`minifcn.engine.conv_transpose` takes this path only then, and the book's im2col/col2im
route otherwise (learned, mixed-channel weights). The book's transposed convolution
(:mod:`minifcn.ops.conv_transpose`) always takes the columns. The weight gradient always
comes from the columns.
"""
from __future__ import annotations

from ..backend import get_array_module


def separable_factors(weight):
    """``(u, v)`` with ``weight[c, c] == outer(u[c], v[c])`` and zero off the diagonal, or None.

    Parameters
    ----------
    weight : array, shape (C, C, kh, kw)
        A transposed-convolution weight (C_in = C_out = C).

    Returns
    -------
    u : array, shape (C, kh), and v : array, shape (C, kw); or None when the weight mixes
    channels or a diagonal kernel is not (to float rounding) rank one.
    """
    xp = get_array_module(weight)
    c_in, c_out, kh, kw = weight.shape
    if c_in != c_out:
        return None
    diagonal = weight[xp.arange(c_in), xp.arange(c_in)]  # (C, kh, kw)
    if int(xp.count_nonzero(weight)) != int(xp.count_nonzero(diagonal)):  # mixes channels
        return None
    # factor each kernel through its largest entry: u = that column, v = that row / entry
    flat = xp.abs(diagonal).reshape(c_in, -1).argmax(axis=1)  # (C,)
    rows, cols = flat // kw, flat % kw
    channels = xp.arange(c_in)
    peak = diagonal[channels, rows, cols]  # (C,)
    scale = xp.where(peak == 0, 1, peak)
    u = diagonal[channels, :, cols]  # (C, kh)
    v = diagonal[channels, rows, :] / scale[:, None]  # (C, kw)
    rebuilt = u[:, :, None] * v[:, None, :]  # (C, kh, kw)
    tolerance = 8 * xp.finfo(weight.dtype).eps * float(xp.abs(diagonal).max())
    if float(xp.abs(rebuilt - diagonal).max()) > tolerance:
        return None
    return u, v


def interpolation_matrices(taps, size_in, size_out, stride, padding):
    """The one-dimensional transposed convolutions as matrices, one per channel.

    Parameters
    ----------
    taps : array, shape (C, k)
        Each channel's kernel along this axis.
    size_in, size_out, stride, padding : int

    Returns
    -------
    matrices : array, shape (C, size_out, size_in)
        ``matrices[c, r, i] = taps[c, r + padding - i*stride]`` where that tap exists, else 0.
    """
    xp = get_array_module(taps)
    k = taps.shape[1]
    tap = xp.arange(size_out)[:, None] + padding - stride * xp.arange(size_in)[None, :]  # (out, in)
    inside = (tap >= 0) & (tap < k)
    picked = taps[:, xp.clip(tap, 0, k - 1)]  # (C, size_out, size_in)
    return xp.where(inside[None], picked, xp.zeros((), dtype=taps.dtype))


def separable_upsample_forward(x, factors, out_size, stride, padding):
    """``out[n, c] = A_c @ x[n, c] @ B_c.T``: the transposed convolution of a separable,
    channel-diagonal weight; replaces the book's ``col2im(W^T x)`` for such weights.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    factors : (u, v) from :func:`separable_factors`
    out_size : (H_out, W_out)
    stride, padding : (int, int)

    Returns
    -------
    out : array, shape (N, C, H_out, W_out)
    matrices : (A, B), shapes (C, H_out, H) and (C, W_out, W), for the backward
    """
    (u, v), (h, w) = factors, x.shape[2:]
    a = interpolation_matrices(u, h, out_size[0], stride[0], padding[0])  # (C, H_out, H)
    b = interpolation_matrices(v, w, out_size[1], stride[1], padding[1])  # (C, W_out, W)
    out = (a @ x) @ b.transpose(0, 2, 1)  # (N, C, H_out, W) @ (C, W, W_out)
    return out, (a, b)


def separable_upsample_backward(dout, matrices):
    """``dx[n, c] = A_c.T @ dout[n, c] @ B_c``: the input gradient of the forward above.

    Parameters
    ----------
    dout : array, shape (N, C, H_out, W_out)
    matrices : (A, B) from :func:`separable_upsample_forward`

    Returns
    -------
    dx : array, shape (N, C, H, W)
    """
    a, b = matrices
    return (a.transpose(0, 2, 1) @ dout) @ b  # (N, C, H, W_out) @ (C, W_out, W)

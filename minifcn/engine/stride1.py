"""Both gradients of a stride-1 convolution from one unfolding of ``dout``.

The book's backward (:func:`minifcn.ops.conv.conv2d_backward`) multiplies ``weight.T @ dout``
into columns and folds them back with ``col2im``. With stride 1 the input gradient is itself
a convolution, of ``dout`` with the kernel rotated by 180 degrees, and the columns of that
unfolding also give the weight gradient. When a layer does not widen (``C_out <= C_in``: all
of FCN's 3x3 layers but the first of each block) that is less work: one unfolding, two
products and no fold. Whole backward of one layer, two threads (``docs/performance.md``,
item 12): ``conv1_2`` at 500x500 595 to 467 ms, ``conv2_2`` 471 to 408 ms, the narrow net's
``conv1_2`` 12.1 to 7.9 ms.
"""
from __future__ import annotations

from ..backend import get_array_module
from ..ops._util import pair
from .bands import column_bands, conv_weight_grad, multiply_into
from .im2col import accumulate
from .rectangles import convolve_rectangles
from .winograd import winograd_conv, winograd_pays


def backward_is_convolution(stride, padding, kernel):
    """True when the input gradient is a convolution of ``dout`` with the rotated kernel
    (:func:`stride1_backward`'s Notes): stride 1 and padding less than the kernel on both
    axes, so that ``dout`` is padded by ``kernel - 1 - padding >= 0``."""
    (ph, pw), (kh, kw) = pair(padding), kernel
    return pair(stride) == (1, 1) and ph < kh and pw < kw


def input_grad_into(dx, dout, rotated, padding, rectangles):
    """``dx[:, :, rows, cols]`` = the stride-1 input gradient, on each rectangle and nowhere else.

    Parameters
    ----------
    dx : array, shape (N, C_in, H, W)
    dout : array, shape (N, C_out, H_out, W_out)
    rotated : array, shape (C_in, C_out, kh, kw)
        :func:`rotated_kernel` of the forward's weight.
    padding : (int, int)
        The forward's, less than the kernel (:func:`backward_is_convolution`).
    rectangles : iterable of (slice, slice)
        Rows and columns of ``dx``.

    Notes
    -----
    The gradient is the convolution of ``dout``, padded by ``kernel - 1 - padding``, with
    ``rotated`` (:func:`stride1_backward`'s Notes), so
    :func:`minifcn.engine.rectangles.convolve_rectangles` computes it: bands that unfold only
    the rows and columns of ``dout`` a rectangle reads, or Winograd's F(2x2, 3x3) for the 3x3
    layers with many channels.
    """
    (ph, pw), (kh, kw) = padding, rotated.shape[2:]
    convolve_rectangles(dx, dout, rotated, (1, 1), (kh - 1 - ph, kw - 1 - pw), rectangles)


def rotated_kernel(weight):
    """The kernel rotated by 180 degrees with its two channel axes swapped, contiguous.

    ``(A, B, kh, kw) -> (B, A, kh, kw)``. Running a stride-1 convolution backwards is a
    convolution with this weight (:func:`stride1_backward`). Applied twice it gives
    ``weight`` back.
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
    The 3x3 layers with many channels take ``dx`` by Winograd's F(2x2, 3x3) instead, as
    their forward does (:func:`minifcn.engine.winograd.winograd_conv`), and the unfolding for
    ``dW`` alone.
    """
    xp = get_array_module(dout)
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    rotated = rotated_kernel(weight)  # (C_in, C_out, kh, kw)
    r2d = rotated.reshape(c_in, -1)  # (C_in, C_out*kh*kw)
    dout_padding = (kh - 1 - padding[0], kw - 1 - padding[1])
    dx = xp.empty((n, c_in, h, w), dtype=dout.dtype)  # every row is written: padding < kernel
    winograd = winograd_pays(rotated, (1, 1), dout_padding)
    if winograd:  # dx by Winograd's F(2x2, 3x3); the unfolding below serves dW alone
        winograd_conv(dout, rotated, dout_padding, dx)
    grad = None  # (C_in, C_out*kh*kw): the weight gradient, rotated
    if weight_grad or not winograd:
        for rows, _, cols in column_bands(dout, rotated, (1, 1), dout_padding, reuse=True):
            if not winograd:
                multiply_into(dx, rows, r2d, cols)  # cols: (N, C_out*kh*kw, band_rows*W)
            if weight_grad:
                length = (rows.stop - rows.start) * w
                x_band = x[:, :, rows].reshape(n, c_in, length)  # (N, C_in, L)
                grad = accumulate(grad, conv_weight_grad(x_band, cols))
    if not weight_grad:
        return dx, None
    return dx, rotated_kernel(grad.reshape(c_in, c_out, kh, kw))  # rotated back

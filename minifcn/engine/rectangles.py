"""The convolution on rectangles of its output: Winograd where it pays, bands elsewhere.

FCN's trunk computes a layer's output (and the input gradient of one that does not widen,
itself a convolution of ``dout``) only on the rectangles the image reaches: the box, and
frames a few positions thick (:mod:`minifcn.engine.border`). :func:`convolve_rectangles`
takes each rectangle by the route that suits it. Used by
:func:`minifcn.engine.bordered.bordered_forward` and
:func:`minifcn.engine.stride1.input_grad_into`.
"""
from __future__ import annotations

from .bands import column_bands, multiply_into
from .winograd import mix_kernel, winograd_conv, winograd_pays

# Rectangles thinner than this (FCN's frames) take the banded route: Winograd's 2x2 blocks would
# hang over their edge, and their products would be short.
MIN_WINOGRAD_SIDE = 4
# A rectangle at most this wide and taller than it is wide (FCN's side frames) is convolved
# transposed (:func:`is_tall`).
TALL_MAX_WIDTH = 8


def is_tall(rows, cols):
    """True for a rectangle that :func:`transposed` arrays compute faster: taller than it is
    wide, and at most ``TALL_MAX_WIDTH`` wide.

    Convolving the transposed image with the transposed kernel gives the transposed output,
    so such a rectangle is a wide, short one of the transposed arrays. Why: im2col copies one
    output row of each kernel tap at a time, and a side frame's rows are 1-6 positions long:
    thousands of tiny copies. Transposed, each copy runs along the frame's height. What it
    buys: a (110, 3) frame of the demo's narrow ``conv2_2`` (8 channels, batch 4) 0.22 to
    0.07 ms (``docs/performance.md``, *Frames as strips, tall ones transposed*).
    """
    height, width = rows.stop - rows.start, cols.stop - cols.start
    return width < height and width <= TALL_MAX_WIDTH


def transposed(a):
    """The view of ``a`` (..., H, W) with its last two axes swapped, (..., W, H); no copy."""
    return a.swapaxes(-1, -2)


def convolve_rectangles(out, x, weight, stride, padding, rectangles, mixed_kernel=None,
                        bias=None):
    """``out[:, :, rows, cols]`` = the convolution of ``x`` (plus ``bias``), for each rectangle.

    Parameters
    ----------
    out : array, shape (N, C_out, H_out, W_out)
        Written on the rectangles only.
    x : array, shape (N, C_in, H, W)
    weight : array, shape (C_out, C_in, kh, kw)
    stride, padding : (int, int)
    rectangles : iterable of (slice, slice)
        Rows and columns of ``out``.
    mixed_kernel : array, shape (4, 4, C_out, C_in), optional
        :func:`minifcn.engine.winograd.mix_kernel` of ``weight``, when the caller has it.
    bias : array, shape (C_out,), optional

    Notes
    -----
    The 3x3 layers with many channels (:func:`minifcn.engine.winograd.winograd_pays`) take
    Winograd's F(2x2, 3x3) on rectangles at least ``MIN_WINOGRAD_SIDE`` on both sides; the
    others, and thinner rectangles, take the bands
    (:func:`minifcn.engine.bands.column_bands`), which unfold only the rows and columns of
    ``x`` that a rectangle reads; a tall, thin rectangle (:func:`is_tall`) of the transposed
    arrays.
    """
    if mixed_kernel is None and winograd_pays(weight, stride, padding):
        mixed_kernel = mix_kernel(weight)
    for rows, cols in rectangles:
        if mixed_kernel is not None and min(rows.stop - rows.start,
                                            cols.stop - cols.start) >= MIN_WINOGRAD_SIDE:
            winograd_conv(x, weight, padding, out, rows, cols, mixed_kernel=mixed_kernel)
            if bias is not None:
                out[:, :, rows, cols] += bias[:, None, None]
        elif is_tall(rows, cols):  # the same rectangle of the transposed arrays, wide and short
            banded_rectangle(transposed(out), transposed(x), transposed(weight), stride[::-1],
                             padding[::-1], cols, rows, bias)
        else:
            banded_rectangle(out, x, weight, stride, padding, rows, cols, bias)


def banded_rectangle(out, x, weight, stride, padding, rows, cols, bias=None):
    """``out[:, :, rows, cols]`` = the convolution of ``x`` (plus ``bias``), band by band
    (:func:`minifcn.engine.bands.column_bands`). Any of the arrays may be a transposed view."""
    w2d = weight.reshape(weight.shape[0], -1)  # (C_out, C_in*kh*kw), a copy when transposed
    for out_rows, _, columns in column_bands(x, weight, stride, padding, reuse=True,
                                             rows=rows, cols=cols):
        multiply_into(out, out_rows, w2d, columns, cols, bias)

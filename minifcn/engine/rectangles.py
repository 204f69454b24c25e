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


def convolve_rectangles(out, x, weight, stride, padding, rectangles, mixed_kernel=None):
    """``out[:, :, rows, cols]`` = the convolution of ``x`` (no bias), for each rectangle.

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

    Notes
    -----
    The 3x3 layers with many channels (:func:`minifcn.engine.winograd.winograd_pays`) take
    Winograd's F(2x2, 3x3) on rectangles at least ``MIN_WINOGRAD_SIDE`` on both sides; the
    others, and thinner rectangles, take the bands
    (:func:`minifcn.engine.bands.column_bands`), which unfold only the rows and columns of
    ``x`` that a rectangle reads.
    """
    if mixed_kernel is None and winograd_pays(weight, stride, padding):
        mixed_kernel = mix_kernel(weight)
    w2d = weight.reshape(weight.shape[0], -1)  # (C_out, C_in*kh*kw)
    for rows, cols in rectangles:
        if mixed_kernel is not None and min(rows.stop - rows.start,
                                            cols.stop - cols.start) >= MIN_WINOGRAD_SIDE:
            winograd_conv(x, weight, padding, out, rows, cols, mixed_kernel=mixed_kernel)
            continue
        for out_rows, _, columns in column_bands(x, weight, stride, padding, reuse=True,
                                                 rows=rows, cols=cols):
            multiply_into(out, out_rows, w2d, columns, cols)

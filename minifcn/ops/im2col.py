"""im2col and col2im: convolution as a matrix product.

``im2col`` copies every receptive field of a padded image into one column, so that a
convolution becomes a single matrix product ``weight (C_out, C_in*kh*kw) @ cols``.
``col2im`` is its exact adjoint (its transpose as a linear map): it adds each column back to
the pixels it was read from, summing where windows overlap. That adjoint is both the input
gradient of a convolution and the forward pass of a transposed convolution.

Both are written as one strided slice per kernel offset ``(i, j)``: tap ``(i, j)`` of every
window at once. That is a loop of ``kh*kw`` vectorised copies, the same code on NumPy and
CuPy, and no scatter: within one offset no pixel repeats, so ``+=`` never collides (a scatter
with ``np.add.at`` is 3-30x slower on the CPU, and CuPy's ``a[idx] += v`` with repeated
indices is undefined).

The naive twins (:func:`im2col_naive`, :func:`col2im_naive`) loop over every output position
and are the oracles in the tests.
"""
from __future__ import annotations

from ..backend import get_array_module
from ._util import conv_output_size, pair


def _windows(h, w, kernel_size, stride, padding):
    """``(kh, kw, sh, sw, ph, pw, out_h, out_w)`` for an ``h x w`` image."""
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = pair(stride, "stride")
    ph, pw = pair(padding, "padding")
    out_h = conv_output_size(h, kh, sh, ph)
    out_w = conv_output_size(w, kw, sw, pw)
    return kh, kw, sh, sw, ph, pw, out_h, out_w


def im2col(x, kernel_size, stride=1, padding=0):
    """Unfold the receptive fields of ``x`` into columns.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    kernel_size, stride, padding : int or (int, int)
        Zero padding is added on all four sides.

    Returns
    -------
    cols : array, shape (N, C*kh*kw, H_out*W_out)
        ``cols[n, (c*kh + i)*kw + j, oh*W_out + ow] = x_pad[n, c, oh*sh + i, ow*sw + j]``.

    Notes
    -----
    ``H_out = (H + 2*ph - kh) // sh + 1`` and likewise for W.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    kh, kw, sh, sw, ph, pw, out_h, out_w = _windows(h, w, kernel_size, stride, padding)
    x_pad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # (N, C, H + 2ph, W + 2pw)
    cols = xp.empty((n, c, kh, kw, out_h, out_w), dtype=x.dtype)
    for i in range(kh):
        i_end = i + sh * (out_h - 1) + 1  # one past the last row that tap i reads
        for j in range(kw):
            j_end = j + sw * (out_w - 1) + 1
            # tap (i, j) of every window: one strided slice, (N, C, H_out, W_out)
            cols[:, :, i, j] = x_pad[:, :, i:i_end:sh, j:j_end:sw]
    return cols.reshape(n, c * kh * kw, out_h * out_w)  # (N, C*kh*kw, H_out*W_out)


def col2im(cols, input_shape, kernel_size, stride=1, padding=0):
    """Fold columns back onto the image, summing overlaps: the adjoint of :func:`im2col`.

    Parameters
    ----------
    cols : array, shape (N, C*kh*kw, H_out*W_out)
    input_shape : tuple (N, C, H, W)
        Shape of the image the columns were (or would be) taken from.
    kernel_size, stride, padding : int or (int, int)

    Returns
    -------
    x : array, shape (N, C, H, W)
        For every ``y``: ``<im2col(x), y> == <x, col2im(y)>``.

    Notes
    -----
    ``H_out = (H + 2*ph - kh) // sh + 1``. The padding's share of the sums is dropped: those
    pixels are not part of the image.
    """
    xp = get_array_module(cols)
    n, c, h, w = input_shape
    kh, kw, sh, sw, ph, pw, out_h, out_w = _windows(h, w, kernel_size, stride, padding)
    cols = cols.reshape(n, c, kh, kw, out_h, out_w)
    x_pad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        i_end = i + sh * (out_h - 1) + 1
        for j in range(kw):
            j_end = j + sw * (out_w - 1) + 1
            # tap (i, j) of every window back where it was read; no pixel repeats in one slice
            x_pad[:, :, i:i_end:sh, j:j_end:sw] += cols[:, :, i, j]
    return x_pad[:, :, ph:ph + h, pw:pw + w]  # explicit ends: x[p:-p] is empty when p == 0


def im2col_naive(x, kernel_size, stride=1, padding=0):
    """Loop twin of :func:`im2col`, written from the definition (tests and notebooks)."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    kh, kw, sh, sw, ph, pw, out_h, out_w = _windows(h, w, kernel_size, stride, padding)
    cols = xp.zeros((n, c * kh * kw, out_h * out_w), dtype=x.dtype)
    for b in range(n):
        for oh in range(out_h):
            for ow in range(out_w):
                row = 0
                for ch in range(c):
                    for i in range(kh):
                        for j in range(kw):
                            r, s = oh * sh + i - ph, ow * sw + j - pw
                            if 0 <= r < h and 0 <= s < w:
                                cols[b, row, oh * out_w + ow] = x[b, ch, r, s]
                            row += 1
    return cols


def col2im_naive(cols, input_shape, kernel_size, stride=1, padding=0):
    """Loop twin of :func:`col2im`: scatter-add every column entry to its source pixel."""
    xp = get_array_module(cols)
    n, c, h, w = input_shape
    kh, kw, sh, sw, ph, pw, out_h, out_w = _windows(h, w, kernel_size, stride, padding)
    x = xp.zeros((n, c, h, w), dtype=cols.dtype)
    for b in range(n):
        for oh in range(out_h):
            for ow in range(out_w):
                row = 0
                for ch in range(c):
                    for i in range(kh):
                        for j in range(kw):
                            r, s = oh * sh + i - ph, ow * sw + j - pw
                            if 0 <= r < h and 0 <= s < w:
                                x[b, ch, r, s] += cols[b, row, oh * out_w + ow]
                            row += 1
    return x

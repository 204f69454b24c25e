"""Two independent readings of a transposed convolution, as oracles and as teaching code.

1. **The matrix reading.** A convolution is linear in its input, so for a fixed weight and
   input size it *is* a matrix ``C``: ``conv2d(x)[n].ravel() == C @ x[n].ravel()``.
   :func:`conv_matrix` writes ``C`` down entry by entry from the definition of a convolution
   (no im2col, no conv2d), and :func:`conv_transpose_matrix` is the matrix ``C^T`` of the
   transposed convolution that shares the weight.
2. **The zero-insertion reading.** :func:`conv_transpose2d_zero_insertion` computes the same
   thing as an ordinary stride-1 convolution: put ``stride - 1`` zeros between the input's
   pixels, pad by ``k - 1 - padding``, and convolve with the kernel flipped in both axes and its
   two channel axes swapped (:func:`zero_insert` builds that input).

Both are slow and meant for small sizes: they are the oracles that the op
(:func:`minifcn.ops.conv_transpose2d_forward`, GEMM then col2im) is tested against, and the
pictures in ``docs/transposed-convolution.md`` are drawn from them. To stay independent they
share no code with the ops or the engine: sizes, pairs and the flipped kernel are worked out
here again, on the host, in NumPy.
"""
from __future__ import annotations

import numpy as np


def _pair(v):
    """``(v, v)`` for an int, the pair itself for a pair."""
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def conv_matrix(weight, input_hw, stride=1, padding=0):
    """The dense matrix of a convolution with a fixed weight on a fixed input size.

    Parameters
    ----------
    weight : array, shape (C_out, C_in, kh, kw)
        A convolution weight (host array; small sizes only).
    input_hw : (int, int)
        ``(H, W)`` of the input image.
    stride, padding : int or (int, int)

    Returns
    -------
    C : numpy.ndarray, shape (C_out*H_out*W_out, C_in*H*W)
        Row ``(o, i, j)`` (row-major) holds the kernel taps that output pixel ``(o, i, j)``
        multiplies with input pixel ``(c, r, s)`` in column ``(c, r, s)``; zero padding shows up
        as taps that fall outside the image and are simply left out of the row.

    Notes
    -----
    ``H_out = (H + 2*padding - kh) // stride + 1``, likewise ``W_out``; then
    ``conv2d(x)[n].ravel() == C @ x[n].ravel()`` for every batch element ``n``.
    """
    weight = np.asarray(weight)
    c_out, c_in, kh, kw = weight.shape
    h, w = input_hw
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    out_h, out_w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    C = np.zeros((c_out, out_h, out_w, c_in, h, w), dtype=weight.dtype)
    for o in range(c_out):
        for i in range(out_h):
            for j in range(out_w):
                for a in range(kh):
                    for b in range(kw):
                        # output (i, j) reads input (i*sh+a-ph, j*sw+b-pw) through tap (a, b)
                        r, s = i * sh + a - ph, j * sw + b - pw
                        if 0 <= r < h and 0 <= s < w:
                            C[o, i, j, :, r, s] = weight[o, :, a, b]
    return C.reshape(c_out * out_h * out_w, c_in * h * w)  # (rows: outputs, cols: inputs)


def conv_transpose_matrix(weight, input_hw, stride=1, padding=0, output_padding=0):
    """The dense matrix of a transposed convolution: ``C^T`` of the convolution it transposes.

    Parameters
    ----------
    weight : array, shape (C_in, C_out, kh, kw)
        A transposed-convolution weight. Read as a convolution weight ``(out, in, kh, kw)`` it
        is the convolution from ``C_out`` channels back to ``C_in`` whose transpose this is.
    input_hw : (int, int)
        ``(H, W)`` of the transposed convolution's input.
    stride, padding, output_padding : int or (int, int)

    Returns
    -------
    CT : numpy.ndarray, shape (C_out*H_out*W_out, C_in*H*W)

    Notes
    -----
    ``H_out = stride*(H - 1) + kh - 2*padding + output_padding``: the convolution of an
    ``H_out x W_out`` image with the same weight, stride and padding has an ``H x W`` output,
    which is why ``C`` is built for the *output* size here.
    """
    kh, kw = np.shape(weight)[2:]
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    oph, opw = _pair(output_padding)
    out_hw = (sh * (input_hw[0] - 1) + kh - 2 * ph + oph, sw * (input_hw[1] - 1) + kw - 2 * pw + opw)
    return conv_matrix(weight, out_hw, stride, padding).T  # (C_out*H_out*W_out, C_in*H*W)


def zero_insert(x, kernel_size, stride=1, padding=0, output_padding=0):
    """The input of the zero-insertion reading: zeros between the pixels, then padding.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    kernel_size, stride, padding, output_padding : int or (int, int)
        Those of the transposed convolution.

    Returns
    -------
    z : numpy.ndarray, shape (N, C, H_z, W_z)
        ``stride - 1`` zeros between neighbouring pixels, ``k - 1 - padding`` zeros on both
        sides and ``output_padding`` more at the bottom/right. A negative pad (when
        ``padding > k - 1``) is a crop.

    Notes
    -----
    ``H_z = stride*(H - 1) + 1 + 2*(kh - 1 - padding) + output_padding``.
    """
    x = np.asarray(x)
    n, c, h, w = x.shape
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    oph, opw = _pair(output_padding)
    # pad by the full k - 1 first; padding p then crops p from each side
    full = np.zeros((n, c, sh * (h - 1) + 1 + 2 * (kh - 1) + oph,
                     sw * (w - 1) + 1 + 2 * (kw - 1) + opw), dtype=x.dtype)
    full[:, :, kh - 1:kh - 1 + sh * (h - 1) + 1:sh, kw - 1:kw - 1 + sw * (w - 1) + 1:sw] = x
    return full[:, :, ph:full.shape[2] - ph, pw:full.shape[3] - pw]


def conv_transpose2d_zero_insertion(x, weight, stride=1, padding=0, output_padding=0):
    """A transposed convolution computed as a stride-1 convolution of a zero-stuffed input.

    Parameters
    ----------
    x : array, shape (N, C_in, H, W)
    weight : array, shape (C_in, C_out, kh, kw)
    stride, padding, output_padding : int or (int, int)

    Returns
    -------
    out : numpy.ndarray, shape (N, C_out, H_out, W_out)

    Notes
    -----
    :func:`zero_insert` spreads and pads the input to ``stride*(H-1) + 1 + 2*(k-1-padding) +
    output_padding`` rows; a stride-1 correlation with ``weight`` flipped in both spatial axes
    and read as ``(C_out, C_in, kh, kw)`` then leaves ``that - k + 1``, i.e.
    ``H_out = stride*(H - 1) + k - 2*padding + output_padding``.
    """
    weight = np.asarray(weight)
    kh, kw = weight.shape[2:]
    z = zero_insert(x, (kh, kw), stride, padding, output_padding)  # (N, C_in, H_z, W_z)
    # the flipped kernel with its channel axes swapped: a (C_out, C_in, kh, kw) conv weight
    flipped = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C_out, C_in, kh, kw)
    out_h, out_w = z.shape[2] - kh + 1, z.shape[3] - kw + 1
    out = np.zeros((z.shape[0], flipped.shape[0], out_h, out_w), dtype=z.dtype)
    for a in range(kh):
        for b in range(kw):
            window = z[:, :, a:a + out_h, b:b + out_w]  # (N, C_in, H_out, W_out)
            out += np.einsum("oc,nchw->nohw", flipped[:, :, a, b], window)
    return out

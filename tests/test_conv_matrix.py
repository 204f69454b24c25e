"""The matrix reading and the zero-insertion reading of (transposed) convolution.

``conv_matrix`` is written from the definition of a convolution, independently of im2col and
col2im, so every test here compares two different computations.
"""
import numpy as np
import pytest

from minifcn.ops import conv2d_forward, conv2d_naive, conv_transpose2d_forward
from minifcn.ops._util import transposed_output_size
from minifcn.ops.conv_matrix import (conv_matrix, conv_transpose2d_zero_insertion,
                                     conv_transpose_matrix, zero_insert)
from tests.conftest import random_geometries

GEOMETRIES = list(random_geometries(seed=31, count=20))


def apply_matrix(M, x, out_shape):
    """``M @ x[n].ravel()`` for every batch element, reshaped to ``(N, *out_shape)``."""
    return np.stack([M @ xn.ravel() for xn in x]).reshape(len(x), *out_shape)


def transposed_case(geo, seed):
    """Random input, weight (C_in, C_out, kh, kw) and output_padding for a transposed conv."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((geo["n"], geo["c_in"], geo["h"], geo["w"]))
    weight = rng.standard_normal((geo["c_in"], geo["c_out"], *geo["kernel"]))
    output_padding = tuple(int(rng.integers(0, s)) for s in geo["stride"])
    return x, weight, output_padding


def test_toy_matrix_by_hand():
    # 4x4 input, 3x3 kernel, stride 1, no padding: 2x2 output, so C is 4x16. Each row is the
    # kernel laid into a 4x4 grid at the window's position and read row by row.
    weight = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    C = conv_matrix(weight, (4, 4))
    k = [1, 2, 3, 0, 4, 5, 6, 0, 7, 8, 9, 0]
    expected = np.array([k + [0] * 4,
                         [0] + k + [0] * 3,
                         [0] * 4 + k,
                         [0] * 5 + k[:-1]], dtype=float)
    np.testing.assert_array_equal(C, expected)


@pytest.mark.parametrize("geo", GEOMETRIES, ids=str)
def test_conv2d_is_the_matrix_product(geo):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((geo["n"], geo["c_in"], geo["h"], geo["w"]))
    weight = rng.standard_normal((geo["c_out"], geo["c_in"], *geo["kernel"]))
    out, _ = conv2d_forward(x, weight, None, geo["stride"], geo["padding"])
    C = conv_matrix(weight, (geo["h"], geo["w"]), geo["stride"], geo["padding"])
    assert C.shape == (out[0].size, x[0].size)
    np.testing.assert_allclose(apply_matrix(C, x, out.shape[1:]), out, rtol=1e-12, atol=1e-12)
    naive = conv2d_naive(x, weight, None, geo["stride"], geo["padding"])
    np.testing.assert_allclose(apply_matrix(C, x, out.shape[1:]), naive, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("geo", GEOMETRIES, ids=str)
def test_conv_transpose2d_is_the_transposed_matrix(geo):
    # The transposed conv's weight (C_in, C_out, kh, kw), read unchanged as a conv weight
    # (out, in, kh, kw), is a conv from C_out channels to C_in: built on the transposed conv's
    # *output* size, its matrix C maps that output space back to the input space, and the
    # transposed conv is C^T.
    x, weight, output_padding = transposed_case(geo, seed=2)
    out, _ = conv_transpose2d_forward(x, weight, None, geo["stride"], geo["padding"],
                                      output_padding)
    C = conv_matrix(weight, out.shape[2:], geo["stride"], geo["padding"])
    assert C.shape == (x[0].size, out[0].size)
    np.testing.assert_allclose(apply_matrix(C.T, x, out.shape[1:]), out, rtol=1e-12, atol=1e-12)
    CT = conv_transpose_matrix(weight, x.shape[2:], geo["stride"], geo["padding"], output_padding)
    np.testing.assert_array_equal(CT, C.T)


@pytest.mark.parametrize("geo", GEOMETRIES, ids=str)
def test_adjoint_identity(geo):
    # <conv2d(x), y> == <x, conv_transpose2d(y)> with one weight array for both. A strided conv
    # loses (H + 2p - k) % s rows; output_padding gives them back so the shapes meet.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((geo["n"], geo["c_in"], geo["h"], geo["w"]))
    weight = rng.standard_normal((geo["c_out"], geo["c_in"], *geo["kernel"]))
    cx, _ = conv2d_forward(x, weight, None, geo["stride"], geo["padding"])
    y = rng.standard_normal(cx.shape)
    lost = [(size + 2 * p - k) % s for size, p, k, s in
            zip(x.shape[2:], geo["padding"], geo["kernel"], geo["stride"])]
    ty, _ = conv_transpose2d_forward(y, weight, None, geo["stride"], geo["padding"], tuple(lost))
    assert ty.shape == x.shape
    assert np.vdot(cx, y) == pytest.approx(np.vdot(x, ty), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("geo", GEOMETRIES, ids=str)
def test_zero_insertion_reading(geo):
    x, weight, output_padding = transposed_case(geo, seed=4)
    args = (geo["stride"], geo["padding"], output_padding)
    out, _ = conv_transpose2d_forward(x, weight, None, *args)
    np.testing.assert_allclose(conv_transpose2d_zero_insertion(x, weight, *args), out,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("geo", [g for g in GEOMETRIES
                                 if all(p <= k - 1 for p, k in zip(g["padding"], g["kernel"]))],
                         ids=str)
def test_zero_insertion_with_conv2d_naive(geo):
    # the recipe spelled out with the library's loop-twin convolution: zeros between pixels,
    # pad k-1-p (output_padding more at the end), flip the kernel, swap its channel axes
    x, weight, (oph, opw) = transposed_case(geo, seed=5)
    (sh, sw), (ph, pw), (kh, kw) = geo["stride"], geo["padding"], geo["kernel"]
    n, c_in, h, w = x.shape
    top, left = kh - 1 - ph, kw - 1 - pw
    z = np.zeros((n, c_in, sh * (h - 1) + 1 + 2 * top + oph, sw * (w - 1) + 1 + 2 * left + opw))
    z[:, :, top:top + sh * (h - 1) + 1:sh, left:left + sw * (w - 1) + 1:sw] = x
    np.testing.assert_array_equal(zero_insert(x, (kh, kw), (sh, sw), (ph, pw), (oph, opw)), z)
    flipped = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    expected = conv2d_naive(z, flipped)
    out, _ = conv_transpose2d_forward(x, weight, None, (sh, sw), (ph, pw), (oph, opw))
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_transposed_output_size_matches_matrix_shape():
    # stride*(H-1) + k - 2*padding + output_padding, for FCN's upsamplers among others
    for size, k, s, p, op, expected in [(16, 4, 2, 0, 0, 34), (34, 4, 2, 0, 0, 70),
                                        (70, 16, 8, 0, 0, 568), (16, 64, 32, 0, 0, 544),
                                        (2, 3, 1, 0, 0, 4), (3, 3, 2, 1, 1, 6)]:
        assert transposed_output_size(size, k, s, p, op) == expected
    CT = conv_transpose_matrix(np.ones((1, 1, 3, 3)), (3, 3), 2, 1, 1)
    assert CT.shape == (36, 9)


def test_transpose_is_not_the_inverse():
    # toy case: C (4x16) has rank 4, so C^T C (16x16) cannot be the identity
    rng = np.random.default_rng(6)
    weight = rng.standard_normal((1, 1, 3, 3))
    C = conv_matrix(weight, (4, 4))
    assert np.linalg.matrix_rank(C.T @ C) == 4
    x = rng.standard_normal((1, 1, 4, 4))
    y, _ = conv2d_forward(x, weight)
    back, _ = conv_transpose2d_forward(y, weight)
    assert back.shape == x.shape
    assert np.abs(back - x).max() > 0.1

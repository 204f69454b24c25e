"""The separable shortcut of conv_transpose2d (bilinear upsamplers as two matrix products):
when it is taken, that it equals the loop twin, and its input gradient."""
import importlib

import numpy as np
import pytest

from minifcn.gradcheck import numerical_gradient, rel_error
from minifcn.init import bilinear_upsampling_weight
from minifcn.layers import ConvTranspose2d
from minifcn.ops import conv_transpose2d_backward, conv_transpose2d_forward, conv_transpose2d_naive
from minifcn.ops.separable import interpolation_matrices, separable_factors

conv_transpose_module = importlib.import_module("minifcn.ops.conv_transpose")

# (channels, kernel, stride, padding, output_padding, input H x W): odd, non-square, FCN's own
GEOMETRIES = [
    (3, (4, 4), (2, 2), (0, 0), (0, 0), (5, 7)),  # upscore2
    (2, (16, 16), (8, 8), (0, 0), (0, 0), (3, 4)),  # upscore8
    (2, (5, 3), (3, 2), (1, 2), (2, 1), (4, 3)),
    (4, (3, 4), (1, 3), (2, 0), (0, 2), (6, 5)),
    (1, (2, 2), (2, 2), (1, 0), (1, 1), (3, 3)),
]


def separable_weight(channels, kernel, seed, dtype=np.float64):
    """Channel-diagonal weight whose kernels are random outer products (not bilinear)."""
    rng = np.random.default_rng(seed)
    weight = np.zeros((channels, channels, *kernel), dtype)
    for c in range(channels):
        weight[c, c] = np.outer(rng.standard_normal(kernel[0]), rng.standard_normal(kernel[1]))
    return weight


def refuse_col2im(*args, **kwargs):
    raise AssertionError("the column path was taken")


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_matches_loop_twin_without_columns(geometry, monkeypatch):
    channels, kernel, stride, padding, output_padding, (h, w) = geometry
    weight = separable_weight(channels, kernel, seed=1)
    x = np.random.default_rng(2).standard_normal((2, channels, h, w))
    bias = np.random.default_rng(3).standard_normal(channels)
    monkeypatch.setattr(conv_transpose_module, "col2im", refuse_col2im)
    out, _ = conv_transpose2d_forward(x, weight, bias, stride, padding, output_padding)
    slow = conv_transpose2d_naive(x, weight, bias, stride, padding, output_padding)
    assert out.shape == slow.shape
    np.testing.assert_allclose(out, slow, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_input_gradient_numerically(geometry):
    channels, kernel, stride, padding, output_padding, (h, w) = geometry
    weight = separable_weight(channels, kernel, seed=4)
    x = np.random.default_rng(5).standard_normal((2, channels, h, w))
    args = (stride, padding, output_padding)
    out, cache = conv_transpose2d_forward(x, weight, None, *args)
    assert cache[-1] is not None  # the separable path's matrices
    dout = np.random.default_rng(6).standard_normal(out.shape)
    dx, dweight, _ = conv_transpose2d_backward(dout, cache)
    numeric = numerical_gradient(lambda: conv_transpose2d_forward(x, weight, None, *args)[0], x, dout)
    assert rel_error(numeric, dx) < 1e-8
    # the weight gradient comes from the column path, checked against finite differences too
    numeric_w = numerical_gradient(lambda: conv_transpose2d_forward(x, weight, None, *args)[0],
                                   weight, dout)
    assert rel_error(numeric_w, dweight) < 1e-8


def test_frozen_layer_skips_the_weight_gradient(monkeypatch):
    layer = ConvTranspose2d("upscore8", bilinear_upsampling_weight(3, 16, np.float64), stride=8)
    layer.weight.requires_grad = False
    x = np.random.default_rng(7).standard_normal((1, 3, 4, 5))
    out = layer(x)
    np.testing.assert_allclose(out, conv_transpose2d_naive(x, layer.weight.data, None, 8), atol=1e-12)
    monkeypatch.setattr(conv_transpose_module, "im2col", refuse_col2im)  # no columns at all
    dx = layer.backward(np.ones_like(out))
    assert dx.shape == x.shape and layer.weight.grad is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_factors_recognise_bilinear_and_refuse_the_rest(dtype):
    bilinear = bilinear_upsampling_weight(4, 16, dtype)
    u, v = separable_factors(bilinear)
    rtol = 4 * np.finfo(dtype).eps  # v is a row divided by the peak: exact up to rounding
    np.testing.assert_allclose(u[:, :, None] * v[:, None, :], bilinear[range(4), range(4)], rtol=rtol)
    mixed = bilinear.copy()
    mixed[0, 1, 3, 3] = 1e-3  # one channel leaks into another
    assert separable_factors(mixed) is None
    full_rank = bilinear.copy()
    full_rank[2, 2, 0, 0] += 1e-3  # one kernel no longer an outer product
    assert separable_factors(full_rank) is None
    assert separable_factors(np.zeros((3, 2, 4, 4), dtype)) is None  # C_in != C_out
    zeros = np.zeros((2, 2, 4, 4), dtype)  # all-zero kernels factor trivially
    u, v = separable_factors(zeros)
    assert not u.any() and not v.any()


def test_interpolation_matrix_is_the_one_dimensional_transposed_convolution():
    # column i of the matrix is the kernel placed at i*stride - padding, cut to the output
    taps = np.array([[1.0, 2.0, 3.0]])
    a = interpolation_matrices(taps, size_in=3, size_out=6, stride=2, padding=1)
    expected = np.array([[2, 0, 0], [3, 1, 0], [0, 2, 0], [0, 3, 1], [0, 0, 2], [0, 0, 3]], float)
    np.testing.assert_array_equal(a[0], expected)

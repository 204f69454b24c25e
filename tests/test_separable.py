"""The engine's separable route of conv_transpose2d (bilinear upsamplers as two matrix
products), against the loop twin and finite differences: its own oracles, beside its
equality with the book (tests/test_engine_equivalence.py)."""
import numpy as np
import pytest

from minifcn import engine
from minifcn.engine.conv_transpose import backward_route, forward_route
from minifcn.engine.separable import separable_upsample_backward, separable_upsample_forward
from minifcn.gradcheck import numerical_gradient, rel_error
from minifcn.init import bilinear_upsampling_weight
from minifcn.layers import ConvTranspose2d
from minifcn.ops import conv_transpose2d_naive

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


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_matches_loop_twin(geometry):
    channels, kernel, stride, padding, output_padding, (h, w) = geometry
    weight = separable_weight(channels, kernel, seed=1)
    assert forward_route(weight) is separable_upsample_forward
    x = np.random.default_rng(2).standard_normal((2, channels, h, w))
    bias = np.random.default_rng(3).standard_normal(channels)
    out, _ = engine.conv_transpose2d_forward(x, weight, bias, stride, padding, output_padding)
    slow = conv_transpose2d_naive(x, weight, bias, stride, padding, output_padding)
    assert out.shape == slow.shape
    np.testing.assert_allclose(out, slow, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_gradients_numerically(geometry):
    channels, kernel, stride, padding, output_padding, (h, w) = geometry
    weight = separable_weight(channels, kernel, seed=4)
    assert backward_route(weight) is separable_upsample_backward
    x = np.random.default_rng(5).standard_normal((2, channels, h, w))
    args = (stride, padding, output_padding)
    out, cache = engine.conv_transpose2d_forward(x, weight, None, *args)
    dout = np.random.default_rng(6).standard_normal(out.shape)
    dx, dweight, _ = engine.conv_transpose2d_backward(dout, cache)

    def f():
        return engine.conv_transpose2d_forward(x, weight, None, *args)[0]

    assert rel_error(numerical_gradient(f, x, dout), dx) < 1e-8
    # the weight gradient comes from the columns of dout, checked against finite differences too
    assert rel_error(numerical_gradient(f, weight, dout), dweight) < 1e-8


def test_a_frozen_engine_upsampler_computes_no_weight_gradient():
    layer = ConvTranspose2d("upscore8", bilinear_upsampling_weight(3, 16, np.float64), stride=8,
                            ops="engine")
    layer.weight.requires_grad = False
    assert layer.routes() == (separable_upsample_forward, separable_upsample_backward)
    x = np.random.default_rng(7).standard_normal((1, 3, 4, 5))
    out = layer(x)
    np.testing.assert_allclose(out, conv_transpose2d_naive(x, layer.weight.data, None, 8), atol=1e-12)
    dx = layer.backward(np.ones_like(out))
    assert dx.shape == x.shape and layer.weight.grad is None

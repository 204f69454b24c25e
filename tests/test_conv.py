import numpy as np
import pytest

from minifcn.gradcheck import numerical_gradient, rel_error
from minifcn.ops import conv2d_backward, conv2d_backward_naive, conv2d_forward, conv2d_naive
from tests.conftest import random_geometries

GEOMETRIES = list(random_geometries(seed=3, count=30))


def _arrays(geo, seed=0, bias=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((geo["n"], geo["c_in"], geo["h"], geo["w"]))
    w = rng.standard_normal((geo["c_out"], geo["c_in"]) + geo["kernel"])
    b = rng.standard_normal(geo["c_out"]) if bias else None
    return x, w, b


@pytest.mark.parametrize("geo", GEOMETRIES, ids=str)
def test_conv2d_matches_loop_twin(geo):
    x, w, b = _arrays(geo)
    out, cache = conv2d_forward(x, w, b, geo["stride"], geo["padding"])
    np.testing.assert_allclose(out, conv2d_naive(x, w, b, geo["stride"], geo["padding"]), atol=1e-12)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    for fast, slow in zip(conv2d_backward(dout, cache),
                          conv2d_backward_naive(dout, x, w, geo["stride"], geo["padding"])):
        np.testing.assert_allclose(fast, slow, atol=1e-12)


def test_conv2d_known_numbers():
    # 3x3 image, 2x2 kernel of ones plus bias 1: each output is its window's sum + 1
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    out, _ = conv2d_forward(x, np.ones((1, 1, 2, 2)), np.ones(1))
    np.testing.assert_array_equal(out[0, 0], [[9, 13], [21, 25]])


def test_pointwise_conv_is_a_per_pixel_fully_connected_layer(rng):
    x = rng.standard_normal((2, 5, 4, 3))
    w = rng.standard_normal((7, 5, 1, 1))
    b = rng.standard_normal(7)
    out, _ = conv2d_forward(x, w, b)
    for i in range(4):
        for j in range(3):
            np.testing.assert_allclose(out[:, :, i, j], x[:, :, i, j] @ w[:, :, 0, 0].T + b)


@pytest.mark.parametrize("geo", GEOMETRIES[:10] + [
    dict(n=2, c_in=3, c_out=2, h=5, w=7, kernel=(1, 1), stride=(1, 1), padding=(0, 0)),
    dict(n=1, c_in=2, c_out=3, h=9, w=8, kernel=(7, 7), stride=(1, 1), padding=(0, 0)),
], ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_gradients_float64(geo, bias, ops):
    x, w, b = _arrays(geo, seed=4, bias=bias)
    out, cache = ops.conv2d_forward(x, w, b, geo["stride"], geo["padding"])
    dout = np.random.default_rng(5).standard_normal(out.shape)
    dx, dw, db = ops.conv2d_backward(dout, cache)

    def f():
        return ops.conv2d_forward(x, w, b, geo["stride"], geo["padding"])[0]

    assert rel_error(numerical_gradient(f, x, dout), dx) < 1e-7
    assert rel_error(numerical_gradient(f, w, dout), dw) < 1e-7
    if bias:
        assert rel_error(numerical_gradient(f, b, dout), db) < 1e-7
    else:
        assert db is None


def test_conv2d_float32_runs_in_float32(rng, ops):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    out, cache = ops.conv2d_forward(x, w, np.zeros(3, np.float32), 1, 1)
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in ops.conv2d_backward(np.ones_like(out), cache))


def test_a_1x1_convolutions_columns_are_its_pixels(rng):
    # no unfolding needed: im2col of a 1x1 kernel (stride 1, no padding) is x itself, reshaped
    from minifcn.ops import im2col

    x = rng.standard_normal((2, 5, 4, 3))
    np.testing.assert_array_equal(im2col(x, 1), x.reshape(2, 5, 12))


def test_skipped_gradients_are_none_and_the_others_unchanged(rng, ops):
    x, w, b = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    out, cache = ops.conv2d_forward(x, w, b, 1, 1)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = ops.conv2d_backward(dout, cache)
    no_dx = ops.conv2d_backward(dout, cache, input_grad=False)
    no_dw = ops.conv2d_backward(dout, cache, weight_grad=False)
    assert no_dx[0] is None and no_dw[1] is None
    np.testing.assert_allclose(no_dx[1], dw, rtol=1e-12)
    np.testing.assert_allclose(no_dw[0], dx, rtol=1e-12)
    np.testing.assert_array_equal(no_dx[2], db)

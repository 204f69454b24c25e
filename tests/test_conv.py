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
def test_conv2d_gradients_float64(geo, bias):
    x, w, b = _arrays(geo, seed=4, bias=bias)
    out, cache = conv2d_forward(x, w, b, geo["stride"], geo["padding"])
    dout = np.random.default_rng(5).standard_normal(out.shape)
    dx, dw, db = conv2d_backward(dout, cache)

    def f():
        return conv2d_forward(x, w, b, geo["stride"], geo["padding"])[0]

    assert rel_error(numerical_gradient(f, x, dout), dx) < 1e-7
    assert rel_error(numerical_gradient(f, w, dout), dw) < 1e-7
    if bias:
        assert rel_error(numerical_gradient(f, b, dout), db) < 1e-7
    else:
        assert db is None


def test_conv2d_float32_runs_in_float32(rng):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    out, cache = conv2d_forward(x, w, np.zeros(3, np.float32), 1, 1)
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in conv2d_backward(np.ones_like(out), cache))

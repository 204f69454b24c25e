"""ReLU, dropout, crop, add, scale and the loss: op vs loop twin, gradients, known numbers."""
import numpy as np
import pytest

from minifcn.gradcheck import numerical_gradient, rel_error
from minifcn.ops import (add_backward, add_forward, crop_backward, crop_forward, crop_naive,
                         dropout_backward, dropout_forward, relu_backward, relu_forward, relu_naive,
                         scale_backward, scale_forward, softmax_cross_entropy_backward,
                         softmax_cross_entropy_forward, softmax_cross_entropy_naive)


def test_relu_matches_loop_twin_and_gradient(rng, ops):
    x = rng.standard_normal((2, 3, 5, 7))
    out, mask = ops.relu_forward(x)
    np.testing.assert_array_equal(out, relu_naive(x))
    dout = rng.standard_normal(x.shape)
    numeric = numerical_gradient(lambda: ops.relu_forward(x)[0], x, dout)
    assert rel_error(numeric, ops.relu_backward(dout, mask)) < 1e-7
    np.testing.assert_array_equal(ops.relu_forward(x[0, 0, 0])[0], relu_naive(x[0, 0, 0]))  # 1-D


def test_dropout_is_inverted_and_seeded(rng):
    x = np.ones((4, 8, 16, 16))
    out, mask = dropout_forward(x, 0.5, True, np.random.default_rng(0))
    assert set(np.unique(out)) == {0.0, 2.0}  # survivors scaled by 1/(1-p)
    assert abs(out.mean() - 1.0) < 0.05  # expectation preserved
    again, _ = dropout_forward(x, 0.5, True, np.random.default_rng(0))
    np.testing.assert_array_equal(out, again)
    other, _ = dropout_forward(x, 0.5, True, np.random.default_rng(1))
    assert not np.array_equal(out, other)
    np.testing.assert_array_equal(dropout_backward(np.ones_like(x), mask), out)


def test_dropout_eval_is_identity(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    out, cache = dropout_forward(x, 0.5, train=False)
    assert out is x and cache is None
    assert dropout_backward(x, cache) is x


def test_dropout_gradient(rng):
    x = rng.standard_normal((2, 3, 5, 4))
    out, mask = dropout_forward(x, 0.3, True, np.random.default_rng(9))
    dout = rng.standard_normal(x.shape)
    numeric = numerical_gradient(lambda: dropout_forward(x, 0.3, True, np.random.default_rng(9))[0], x, dout)
    assert rel_error(numeric, dropout_backward(dout, mask)) < 1e-7


@pytest.mark.parametrize("offset,size", [((0, 0), (3, 4)), ((2, 1), (5, 2)), ((4, 6), (1, 1)), (3, (4, 4))])
def test_crop_matches_loop_twin_and_pads_back(rng, offset, size):
    x = rng.standard_normal((2, 3, 8, 9))
    out, cache = crop_forward(x, offset, size)
    np.testing.assert_array_equal(out, crop_naive(x, offset, size))
    dout = rng.standard_normal(out.shape)
    dx = crop_backward(dout, cache)
    numeric = numerical_gradient(lambda: crop_forward(x, offset, size)[0], x, dout)
    assert rel_error(numeric, dx) < 1e-7
    assert dx.sum() == pytest.approx(dout.sum())


def test_crop_is_from_the_top_left_not_centred():
    x = np.arange(100.0).reshape(1, 1, 10, 10)
    out, _ = crop_forward(x, (5, 5), (3, 3))
    assert out[0, 0, 0, 0] == 55.0


def test_add_and_scale(rng):
    a, b = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 4, 5))
    out, cache = add_forward(a, b)
    np.testing.assert_array_equal(out, a + b)
    da, db = add_backward(out, cache)
    assert da is out and db is out
    scaled, factor = scale_forward(a, 0.01)
    np.testing.assert_allclose(scaled, a * 0.01)
    dout = rng.standard_normal(a.shape)
    numeric = numerical_gradient(lambda: scale_forward(a, 0.01)[0], a, dout)
    assert rel_error(numeric, scale_backward(dout, factor)) < 1e-7


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_matches_loop_twin_and_gradient(rng, reduction, weighted):
    scores = rng.standard_normal((2, 4, 3, 5)) * 3
    labels = rng.integers(0, 4, size=(2, 3, 5))
    labels[0, 1, :2] = 255
    weight = rng.uniform(0.5, 2, 4) if weighted else None
    loss, cache = softmax_cross_entropy_forward(scores, labels, 255, weight, reduction)
    assert loss == pytest.approx(softmax_cross_entropy_naive(scores, labels, 255, weight, reduction), rel=1e-12)
    dscores = softmax_cross_entropy_backward(1.0, cache)
    numeric = numerical_gradient(
        lambda: softmax_cross_entropy_forward(scores, labels, 255, weight, reduction)[0], scores)
    assert rel_error(numeric, dscores) < 1e-7
    assert np.all(dscores[0, :, 1, :2] == 0)  # void pixels get no gradient


def test_loss_known_numbers_and_stability():
    # two classes, equal scores: loss log 2 per pixel; huge scores must not overflow
    scores = np.array([[[[0.0]], [[0.0]]]])
    loss, _ = softmax_cross_entropy_forward(scores, np.array([[[1]]]))
    assert loss == pytest.approx(np.log(2))
    big = np.array([[[[1000.0]], [[0.0]]]])
    loss, cache = softmax_cross_entropy_forward(big, np.array([[[1]]]))
    assert loss == pytest.approx(1000.0)
    assert np.isfinite(softmax_cross_entropy_backward(1.0, cache)).all()


def test_loss_all_void_is_zero_not_nan():
    loss, cache = softmax_cross_entropy_forward(np.zeros((1, 3, 2, 2)), np.full((1, 2, 2), 255))
    assert loss == 0.0
    assert not softmax_cross_entropy_backward(1.0, cache).any()


def test_loss_names_bad_labels():
    with pytest.raises(ValueError, match=r"\[3, 7\]"):
        softmax_cross_entropy_forward(np.zeros((1, 3, 2, 2)), np.array([[[0, 3], [7, 255]]]))
    with pytest.raises(TypeError, match="integer"):
        softmax_cross_entropy_forward(np.zeros((1, 3, 2, 2)), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="does not match"):
        softmax_cross_entropy_forward(np.zeros((1, 3, 2, 2)), np.zeros((1, 2, 3), dtype=int))

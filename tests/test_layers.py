"""Layer objects: parameters with .data/.grad, cached forward, frozen parameters, modes, the
op set each runs and the routes it reports."""
import numpy as np
import pytest

from minifcn import engine, layers
from minifcn import ops as book
from minifcn.engine import conv as engine_conv
from minifcn.engine.stride1 import stride1_backward
from minifcn.init import bilinear_upsampling_weight


@pytest.mark.parametrize("name", ["book", "engine"])
def test_conv_layer_fills_parameter_gradients(rng, name):
    ops = layers.op_set(name)
    w, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    conv = layers.Conv2d("conv1_1", w.copy(), b.copy(), stride=1, padding=1, ops=name)
    assert conv.ops is ops
    x = rng.standard_normal((2, 3, 6, 5))
    out = conv(x)
    ref, cache = ops.conv2d_forward(x, w, b, 1, 1)
    np.testing.assert_array_equal(out, ref)
    dout = rng.standard_normal(out.shape)
    dx = conv.backward(dout)
    rdx, rdw, rdb = ops.conv2d_backward(dout, cache)
    np.testing.assert_array_equal(dx, rdx)
    np.testing.assert_array_equal(conv.weight.grad, rdw)
    np.testing.assert_array_equal(conv.bias.grad, rdb)
    assert set(conv.parameters()) == {"weight", "bias"}


@pytest.mark.parametrize("kind", ["conv", "deconv"])
def test_backward_drops_the_last_gradients_before_it_computes_new_ones(rng, kind):
    # the old and the new gradient never take memory together (fc6's: 411 MB each)
    if kind == "conv":
        layer = layers.Conv2d("fc6", rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4))
        op_name = "conv2d_backward"
    else:
        layer = layers.ConvTranspose2d("up", rng.standard_normal((3, 4, 4, 4)),
                                       rng.standard_normal(4), stride=2)
        op_name = "conv_transpose2d_backward"
    out = layer(rng.standard_normal((2, 3, 5, 6)))
    layer.backward(rng.standard_normal(out.shape))
    old = layer.weight.grad, layer.bias.grad
    seen = []

    def spy(*args):  # the op, asked for the new gradients
        seen.append((layer.weight.grad, layer.bias.grad))
        return getattr(book, op_name)(*args)

    class Ops:
        pass

    ops = Ops()
    setattr(ops, op_name, spy)
    layer.ops = ops
    layer.backward(rng.standard_normal(out.shape))
    assert len(seen) == 1 and seen[0][0] is None and seen[0][1] is None
    assert layer.weight.grad.shape == old[0].shape and layer.weight.grad is not old[0]
    assert layer.bias.grad.shape == old[1].shape
    kept = layer.weight.grad
    layer.cache = None  # a backward refused before it starts keeps them
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(rng.standard_normal(out.shape))
    assert layer.weight.grad is kept


def test_frozen_parameter_gets_no_gradient(rng):
    up = layers.ConvTranspose2d("upscore2", bilinear_upsampling_weight(3, 4, np.float64), stride=2)
    assert up.ops is book  # the default: what a learner steps through
    up.weight.requires_grad = False
    out = up(rng.standard_normal((1, 3, 4, 5)))
    assert out.shape == (1, 3, 10, 12)
    up.backward(np.ones_like(out))
    assert up.weight.grad is None
    assert set(up.parameters()) == {"weight"}


def test_dropout_layer_modes_and_reproducibility(rng):
    x = rng.standard_normal((2, 4, 5, 5))
    drop = layers.Dropout("drop6", p=0.5, seed=3)
    a = drop(x)
    assert not np.array_equal(a, x)
    np.testing.assert_array_equal(drop.backward(np.ones_like(x)), (a != 0) * 2.0)
    again = layers.Dropout("drop6", p=0.5, seed=3)(x)
    np.testing.assert_array_equal(a, again)
    drop.eval()
    assert drop(x) is x
    assert drop.backward(x) is x


def test_pool_crop_scale_layers(rng):
    x = rng.standard_normal((1, 2, 7, 9))
    pool = layers.MaxPool2d("pool1", 2, 2, ceil_mode=True)
    out = pool(x)
    assert out.shape == (1, 2, 4, 5)
    assert pool.backward(np.ones_like(out)).shape == x.shape
    crop = layers.Crop("crop", (1, 2))
    c = crop(x, (3, 4))
    np.testing.assert_array_equal(c, x[:, :, 1:4, 2:6])
    assert crop.backward(np.ones_like(c)).sum() == 2 * 3 * 4
    scale = layers.Scale("scale_pool4", 0.01)
    np.testing.assert_allclose(scale(x), 0.01 * x)
    np.testing.assert_allclose(scale.backward(np.ones_like(x)), 0.01)


def test_an_unknown_op_set_is_named():
    with pytest.raises(ValueError, match=r"ops must be 'book' \(minifcn.ops\) or 'engine'.*'fast'"):
        layers.ReLU("relu1_1", ops="fast")


def test_the_engine_relu_works_in_place_and_the_book_relu_never_does(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    for name, shared in [("engine", True), ("book", False)]:
        y = x.copy()
        relu = layers.ReLU("relu1_1", inplace=True, ops=name)
        out = relu(y)
        assert np.shares_memory(out, y) == shared
        np.testing.assert_array_equal(out, np.maximum(x, 0))
        np.testing.assert_array_equal(relu.backward(np.ones_like(x)), x > 0)


def test_routes_name_the_functions_each_pass_runs():
    narrowing = layers.Conv2d("conv1_2", np.zeros((4, 4, 3, 3)), np.zeros(4), 1, 1)
    widening = layers.Conv2d("conv2_1", np.zeros((8, 4, 3, 3)), np.zeros(8), 1, 1)
    assert narrowing.routes() == (book.conv2d_forward, book.conv2d_backward)
    assert narrowing.routes("engine") == (engine_conv.banded_forward, stride1_backward)
    assert widening.routes("engine") == (engine_conv.banded_forward, engine_conv.banded_backward)
    wide = layers.Conv2d("conv3_2", np.zeros((256, 256, 3, 3)), np.zeros(256), 1, 1)
    assert wide.routes("engine") == (engine_conv.winograd_forward, stride1_backward)
    fixed = layers.ConvTranspose2d("upscore2", bilinear_upsampling_weight(3, 4, np.float64), stride=2)
    learned = layers.ConvTranspose2d("upscore2", np.ones((3, 3, 4, 4)), stride=2)  # mixes classes
    assert fixed.routes() == (book.conv_transpose2d_forward, book.conv_transpose2d_backward)
    assert [f.__name__ for f in fixed.routes("engine")] == ["separable_upsample_forward",
                                                            "separable_upsample_backward"]
    assert [f.__name__ for f in learned.routes("engine")] == ["columns_forward", "columns_backward"]
    pool = layers.MaxPool2d("pool1", 2, 2, ceil_mode=True, ops="engine")
    assert pool.routes() == (engine.max_pool2d_forward, engine.max_pool2d_backward)
    assert layers.Crop("score", 31).routes("engine") == (book.crop_forward, book.crop_backward)

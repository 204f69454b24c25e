"""Layer objects: parameters with .data/.grad, cached forward, frozen parameters, modes."""
import numpy as np

from minifcn import layers, ops
from minifcn.init import bilinear_upsampling_weight


def test_conv_layer_fills_parameter_gradients(rng):
    w, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    conv = layers.Conv2d("conv1_1", w.copy(), b.copy(), stride=1, padding=1)
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


def test_frozen_parameter_gets_no_gradient(rng):
    up = layers.ConvTranspose2d("upscore2", bilinear_upsampling_weight(3, 4, np.float64), stride=2)
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

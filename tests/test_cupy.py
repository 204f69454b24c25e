"""CuPy vs NumPy: every op's forward and backward agree, for the book's ops and the engine's
(skipped without a usable GPU)."""
import numpy as np
import pytest

from minifcn.backend import gpu_available, to_host
from minifcn.init import bilinear_upsampling_weight

pytestmark = pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a GPU")


def _pair(rng, shape):
    import cupy

    a = rng.standard_normal(shape)
    return a, cupy.asarray(a)


def _agree(fn, *host_args, **kw):
    """Run ``fn`` on host arrays and on their device copies; compare every returned array."""
    import cupy

    dev_args = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in host_args]
    host_out, dev_out = fn(*host_args, **kw), fn(*dev_args, **kw)
    host_out = host_out if isinstance(host_out, tuple) else (host_out,)
    dev_out = dev_out if isinstance(dev_out, tuple) else (dev_out,)
    for h, d in zip(host_out, dev_out):
        if h is None:
            assert d is None
        elif isinstance(h, np.ndarray):
            assert type(d).__module__.startswith("cupy"), "result left the device"
            np.testing.assert_allclose(to_host(d), h, rtol=1e-10, atol=1e-10)
    return dev_out


def test_im2col_col2im(rng, ops):
    x = rng.standard_normal((2, 3, 9, 7))
    cols = _agree(ops.im2col, x, (3, 2), (2, 1), (1, 2))[0]
    _agree(ops.col2im, to_host(cols), x.shape, (3, 2), (2, 1), (1, 2))


def test_conv_and_transpose(rng, ops):
    x, w, b = rng.standard_normal((2, 3, 9, 7)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    dout = rng.standard_normal((2, 4, 5, 4))
    _agree(lambda *a: ops.conv2d_backward(a[3], ops.conv2d_forward(*a[:3], 2, 1)[1]), x, w, b, dout)
    wt = rng.standard_normal((3, 4, 4, 4))
    y = rng.standard_normal((2, 4, 20, 16))
    _agree(lambda *a: ops.conv_transpose2d_forward(*a[:3], 2, 0)[0], x, wt, b)
    _agree(lambda *a: ops.conv_transpose2d_backward(a[3], ops.conv_transpose2d_forward(*a[:3], 2, 0)[1]),
           x, wt, b, y)
    for k, s in [(16, 8), (64, 32)]:  # FCN-8s upscore8 and FCN-32s upscore
        weight = bilinear_upsampling_weight(3, k, np.float64)
        _agree(lambda a, w: ops.conv_transpose2d_forward(a, w, None, s)[0], rng.standard_normal((1, 3, 3, 4)), weight)


def test_pool_relu_dropout_crop_loss(rng, ops):
    x = rng.permutation(2 * 3 * 9 * 7).reshape(2, 3, 9, 7).astype(np.float64)
    dout = rng.standard_normal((2, 3, 5, 4))
    _agree(lambda a, d: ops.max_pool2d_backward(d, ops.max_pool2d_forward(a, 2, 2, 0, True)[1]), x, dout)
    _agree(lambda a: ops.relu_forward(a)[0], x - 100)
    _agree(lambda a: ops.crop_forward(a, (2, 1), (4, 5))[0], x)
    scores = rng.standard_normal((2, 4, 5, 6))
    labels = rng.integers(0, 4, (2, 5, 6))
    labels[0, 0] = 255
    _agree(lambda s, l: ops.softmax_cross_entropy_backward(1.0, ops.softmax_cross_entropy_forward(s, l)[1]),
           scores, labels)


def test_dropout_on_device_is_seeded():
    from minifcn import ops

    import cupy

    x = cupy.ones((2, 3, 8, 8))
    a, _ = ops.dropout_forward(x, 0.5, True, cupy.random.default_rng(0))
    b, _ = ops.dropout_forward(x, 0.5, True, cupy.random.default_rng(0))
    assert bool((a == b).all()) and set(to_host(a).ravel().tolist()) <= {0.0, 2.0}


@pytest.mark.parametrize("ops_name", ["book", "engine"])
def test_fcn8s_forward_backward_on_device(ops_name):
    import cupy

    from minifcn.models import FCN8s

    kwargs = dict(num_classes=3, width=1 / 32, dtype=np.float64, learn_upsampling=True, ops=ops_name)
    host = FCN8s(**kwargs).eval()
    device = FCN8s(**kwargs).eval().to("gpu")
    device.load_state_dict(host.state_dict())
    x = np.random.default_rng(0).standard_normal((1, 3, 29, 35))
    out_h, out_d = host(x), device(cupy.asarray(x))
    np.testing.assert_allclose(to_host(out_d), out_h, rtol=1e-9, atol=1e-9)
    dout = np.random.default_rng(1).standard_normal(out_h.shape)
    np.testing.assert_allclose(to_host(device.backward(cupy.asarray(dout))), host.backward(dout), rtol=1e-9, atol=1e-9)
    for (name, ph), (_, pd) in zip(host.named_parameters(), device.named_parameters()):
        np.testing.assert_allclose(to_host(pd.grad), ph.grad, rtol=1e-9, atol=1e-9, err_msg=name)

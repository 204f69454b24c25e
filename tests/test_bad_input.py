"""Bad input fails early with an error that names the layer and the shapes, on either op set
(the ``ops`` fixture: the book, then the engine)."""
import re

import numpy as np
import pytest

from minifcn import layers
from minifcn.models import MODELS, FCN8s


def test_wrong_ndim_names_layer_and_shape():
    conv = layers.Conv2d("conv3_1", np.zeros((4, 3, 3, 3)), np.zeros(4), padding=1)
    with pytest.raises(ValueError, match=r"conv3_1.*4-D.*\(3, 5, 5\)"):
        conv(np.zeros((3, 5, 5)))
    with pytest.raises(ValueError, match=r"pool1.*\(1, 1, 3, 5, 5\)"):
        layers.MaxPool2d("pool1", 2, ceil_mode=True)(np.zeros((1, 1, 3, 5, 5)))


def test_channel_mismatch_names_both_shapes(ops):
    with pytest.raises(ValueError, match=r"fc6: input \(1, 8, 9, 9\) has 8 channels but weight \(16, 4, 7, 7\) expects 4"):
        ops.conv2d_forward(np.zeros((1, 8, 9, 9)), np.zeros((16, 4, 7, 7)), name="fc6")
    with pytest.raises(ValueError, match=r"upscore2.*\(2, 3, 4, 4\)"):
        ops.conv_transpose2d_forward(np.zeros((1, 3, 5, 5)), np.zeros((2, 3, 4, 4)), stride=2, name="upscore2")


def test_kernel_larger_than_padded_input(ops):
    with pytest.raises(ValueError, match=r"fc6: kernel 7x7 is larger than the padded input 5x6"):
        ops.conv2d_forward(np.zeros((1, 2, 5, 6)), np.zeros((3, 2, 7, 7)), name="fc6")
    with pytest.raises(ValueError, match="larger than the padded input"):
        ops.max_pool2d_forward(np.zeros((1, 1, 1, 3)), 2, 2, ceil_mode=False)


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, bool])
def test_non_float_input_is_a_type_error(dtype, ops):
    x = np.zeros((1, 2, 5, 5), dtype=dtype)
    with pytest.raises(TypeError, match=r"conv1_1: input must be floating point, float32 or "):
        ops.conv2d_forward(x, np.zeros((3, 2, 3, 3)), name="conv1_1")
    with pytest.raises(TypeError, match=r"pool2: input must be floating point"):
        ops.max_pool2d_forward(x, 2, name="pool2")


def test_mixed_dtypes_are_refused(ops):
    with pytest.raises(TypeError, match=r"conv: dtypes differ \(input float32, weight float64"):
        ops.conv2d_forward(np.zeros((1, 2, 5, 5), np.float32), np.zeros((3, 2, 3, 3)), name="conv")


def test_bias_and_weight_shapes(ops):
    with pytest.raises(ValueError, match=r"score_fr: bias shape \(5,\) does not match \(3,\)"):
        ops.conv2d_forward(np.zeros((1, 2, 5, 5)), np.zeros((3, 2, 1, 1)), np.zeros(5), name="score_fr")
    with pytest.raises(ValueError, match=r"weight must be 4-D"):
        ops.conv2d_forward(np.zeros((1, 2, 5, 5)), np.zeros((3, 2, 3)))


def test_crop_out_of_bounds_names_window(ops):
    with pytest.raises(ValueError, match=r"score_pool4c: window 5x5 at offset \(5, 5\) does not fit in input \(1, 2, 8, 8\)"):
        ops.crop_forward(np.zeros((1, 2, 8, 8)), 5, (5, 5), name="score_pool4c")


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="relu1_1: backward called before forward"):
        layers.ReLU("relu1_1").backward(np.zeros((1, 1, 2, 2)))


# --- the upstream gradient must have the forward output's shape -----------------------------

def _forwards(ops):
    """(op name, forward output and cache, backward) for every op with a backward."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 7))
    bilinear = np.zeros((3, 3, 4, 4))
    bilinear[range(3), range(3)] = np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25])
    return [
        ("conv2d", ops.conv2d_forward(x, rng.standard_normal((4, 3, 3, 3)), np.zeros(4), 2, 1),
         ops.conv2d_backward),
        ("conv2d", ops.conv2d_forward(x, rng.standard_normal((2, 3, 3, 3)), None, 1, 1),
         ops.conv2d_backward),  # the stride-1 route
        ("conv_transpose2d",
         ops.conv_transpose2d_forward(x, rng.standard_normal((3, 2, 3, 3)), None, 2, 1, 1),
         ops.conv_transpose2d_backward),
        ("conv_transpose2d", ops.conv_transpose2d_forward(x, bilinear, None, 2),
         ops.conv_transpose2d_backward),  # the separable route
        ("max_pool2d", ops.max_pool2d_forward(x, 2, 2, 0, True), ops.max_pool2d_backward),
        ("relu", ops.relu_forward(x), ops.relu_backward),
        ("dropout", ops.dropout_forward(x, 0.5, True, np.random.default_rng(1)),
         ops.dropout_backward),
        ("crop", ops.crop_forward(x, (1, 2), (4, 3)), ops.crop_backward),
    ]


@pytest.mark.parametrize("case", range(8))
def test_a_wrong_shaped_gradient_is_refused_with_both_shapes(case, ops):
    name, (out, cache), backward = _forwards(ops)[case]
    n, c, h, w = out.shape
    for wrong in [(n, c, h, w - 1), (n, c, h + 1, w), (n + 1, c, h, w), (n, c + 1, h, w),
                  (n, c, h, w, 1), (n * c * h * w,)]:
        message = (rf"{name}: the upstream gradient has shape {re.escape(str(wrong))} but the "
                   rf"forward's output has shape {re.escape(str(out.shape))}")
        with pytest.raises(ValueError, match=message):
            backward(np.ones(wrong), cache)
    backward(np.ones(out.shape), cache)  # the right shape goes through


def test_a_layer_names_itself_in_the_gradient_error():
    conv = layers.Conv2d("conv3_1", np.zeros((4, 3, 3, 3)), np.zeros(4), padding=1)
    conv(np.zeros((1, 3, 5, 5)))
    with pytest.raises(ValueError, match=r"conv3_1: the upstream gradient has shape \(1, 4, 5, 4\) "
                                         r"but the forward's output has shape \(1, 4, 5, 5\)"):
        conv.backward(np.zeros((1, 4, 5, 4)))
    pool = layers.MaxPool2d("pool4", 2, 2, ceil_mode=True)
    pool(np.zeros((1, 3, 5, 5)))
    with pytest.raises(ValueError, match=r"pool4: .* \(1, 3, 2, 2\) but .* \(1, 3, 3, 3\)"):
        pool.backward(np.zeros((1, 3, 2, 2)))


def test_a_model_refuses_a_score_gradient_of_another_size():
    model = FCN8s(num_classes=3, width=1 / 64)
    scores = model(np.zeros((1, 3, 13, 17), np.float32))
    with pytest.raises(ValueError, match=r"score: the upstream gradient has shape \(1, 3, 13, 16\) "
                                         r"but the forward's output has shape \(1, 3, 13, 17\)"):
        model.backward(np.zeros((1, 3, 13, 16), np.float32))
    assert model.backward(np.zeros_like(scores)).shape == (1, 3, 13, 17)


def test_the_loss_takes_a_number_as_its_upstream_gradient(ops):
    scores = np.zeros((1, 2, 3, 3))
    _, cache = ops.softmax_cross_entropy_forward(scores, np.zeros((1, 3, 3), np.int64))
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: .* number, got shape \(3,\)"):
        ops.softmax_cross_entropy_backward(np.ones(3), cache)
    assert ops.softmax_cross_entropy_backward(np.float64(2.0), cache).shape == scores.shape


# --- an empty batch (N = 0) goes through every op and the whole model ----------------------

def test_every_op_takes_an_empty_batch(ops):
    x = np.zeros((0, 3, 6, 7))
    expected = {  # (output shape, gradient shapes), the shapes torch gives for N = 0
        "conv2d": ((0, 4, 3, 4), [(0, 3, 6, 7), (4, 3, 3, 3), (4,)]),
        "conv2d (stride 1)": ((0, 2, 6, 7), [(0, 3, 6, 7), (2, 3, 3, 3), None]),
        "conv_transpose2d": ((0, 2, 12, 14), [(0, 3, 6, 7), (3, 2, 3, 3), None]),
        "conv_transpose2d (bilinear)": ((0, 3, 14, 16), [(0, 3, 6, 7), (3, 3, 4, 4), None]),
        "max_pool2d": ((0, 3, 3, 4), [(0, 3, 6, 7)]),
        "relu": ((0, 3, 6, 7), [(0, 3, 6, 7)]),
        "dropout": ((0, 3, 6, 7), [(0, 3, 6, 7)]),
        "crop": ((0, 3, 4, 3), [(0, 3, 6, 7)]),
    }
    bilinear = np.zeros((3, 3, 4, 4))
    bilinear[range(3), range(3)] = np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25])
    runs = {
        "conv2d": (ops.conv2d_forward(x, np.ones((4, 3, 3, 3)), np.ones(4), 2, 1),
                   ops.conv2d_backward),
        "conv2d (stride 1)": (ops.conv2d_forward(x, np.ones((2, 3, 3, 3)), None, 1, 1),
                              ops.conv2d_backward),
        "conv_transpose2d": (ops.conv_transpose2d_forward(x, np.ones((3, 2, 3, 3)), None, 2, 1, 1),
                             ops.conv_transpose2d_backward),
        "conv_transpose2d (bilinear)": (ops.conv_transpose2d_forward(x, bilinear, None, 2),
                                        ops.conv_transpose2d_backward),
        "max_pool2d": (ops.max_pool2d_forward(x, 2, 2, 0, True), ops.max_pool2d_backward),
        "relu": (ops.relu_forward(x), ops.relu_backward),
        "dropout": (ops.dropout_forward(x, 0.5, True, np.random.default_rng(0)),
                    ops.dropout_backward),
        "crop": (ops.crop_forward(x, (1, 2), (4, 3)), ops.crop_backward),
    }
    for name, ((out, cache), backward) in runs.items():
        out_shape, grad_shapes = expected[name]
        assert out.shape == out_shape, name
        grads = backward(np.zeros(out_shape), cache)
        grads = grads if isinstance(grads, tuple) else (grads,)
        for grad, shape in zip(grads, grad_shapes):
            assert (grad is None) if shape is None else (grad.shape == shape), name
            if grad is not None:
                assert not grad.any(), name  # nothing to add up: zeros, like torch's
    scores, labels = np.zeros((0, 3, 4, 5)), np.zeros((0, 4, 5), np.int64)
    loss, cache = ops.softmax_cross_entropy_forward(scores, labels)
    assert loss == 0.0  # no valid pixel: the documented 0 (torch's mean gives nan)
    assert ops.softmax_cross_entropy_backward(1.0, cache).shape == (0, 3, 4, 5)


@pytest.mark.parametrize("op_set", ["book", "engine"])
@pytest.mark.parametrize("variant", ["fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce"])
def test_a_model_takes_an_empty_batch(variant, op_set):
    model = MODELS[variant](num_classes=3, width=1 / 64, ops=op_set).train()
    scores = model(np.zeros((0, 3, 13, 17), np.float32))
    assert scores.shape == (0, 3, 13, 17)
    assert model.backward(np.zeros_like(scores)).shape == (0, 3, 13, 17)
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad.shape == p.shape and not p.grad.any(), name


# --- unsupported dtypes: one clear message naming the op and float32/float64 ----------------

UNSUPPORTED = [np.float16, np.int32, np.uint8, np.complex64, bool]
if np.dtype(np.longdouble) != np.dtype(np.float64):
    UNSUPPORTED.append(np.longdouble)


@pytest.mark.parametrize("dtype", UNSUPPORTED, ids=lambda d: np.dtype(d).name)
def test_every_op_names_itself_and_the_supported_dtypes(dtype, ops):
    x = np.zeros((1, 3, 6, 7), dtype=dtype)
    expected = rf"must be floating point, float32 or float64; got {np.dtype(dtype).name}"
    calls = {
        "conv1_1": lambda: ops.conv2d_forward(x, np.zeros((2, 3, 3, 3), dtype), name="conv1_1"),
        "upscore2": lambda: ops.conv_transpose2d_forward(x, np.zeros((3, 3, 4, 4), dtype), None, 2,
                                                         name="upscore2"),
        "pool1": lambda: ops.max_pool2d_forward(x, 2, 2, 0, True, name="pool1"),
        "relu1_1": lambda: ops.relu_forward(x, name="relu1_1"),
        "drop6": lambda: ops.dropout_forward(x, 0.5, True, np.random.default_rng(0), name="drop6"),
        "score": lambda: ops.crop_forward(x, 0, (2, 2), name="score"),
        "loss": lambda: ops.softmax_cross_entropy_forward(x, np.zeros((1, 6, 7), np.int64),
                                                          name="loss"),
    }
    for name, call in calls.items():
        with pytest.raises(TypeError, match=rf"{name}: (input|weight) {expected}"):
            call()


def test_a_float16_gradient_is_refused(ops):
    out, cache = ops.relu_forward(np.ones((1, 2, 3, 3)))
    with pytest.raises(TypeError, match=r"relu: the upstream gradient must be floating point, "
                                        r"float32 or float64; got float16"):
        ops.relu_backward(np.ones(out.shape, np.float16), cache)


def test_a_float16_model_is_refused_when_built():
    with pytest.raises(TypeError, match=r"FCN8s: dtype must be floating point, float32 or float64; "
                                        r"got float16"):
        FCN8s(num_classes=3, width=1 / 64, dtype=np.float16)


def test_the_engine_relu_without_a_mask_has_no_backward():
    from minifcn import engine

    _, mask = engine.relu_forward(np.ones((1, 2, 3, 3)), "relu5_1", mask=False)
    with pytest.raises(ValueError, match=r"relu5_1: no mask to go back through"):
        engine.relu_backward(np.ones((1, 2, 3, 3)), mask, "relu5_1")

"""Bad input fails early with an error that names the layer and the shapes."""
import numpy as np
import pytest

from minifcn import layers, ops


def test_wrong_ndim_names_layer_and_shape():
    conv = layers.Conv2d("conv3_1", np.zeros((4, 3, 3, 3)), np.zeros(4), padding=1)
    with pytest.raises(ValueError, match=r"conv3_1.*4-D.*\(3, 5, 5\)"):
        conv(np.zeros((3, 5, 5)))
    with pytest.raises(ValueError, match=r"pool1.*\(1, 1, 3, 5, 5\)"):
        layers.MaxPool2d("pool1", 2, ceil_mode=True)(np.zeros((1, 1, 3, 5, 5)))


def test_channel_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"fc6: input \(1, 8, 9, 9\) has 8 channels but weight \(16, 4, 7, 7\) expects 4"):
        ops.conv2d_forward(np.zeros((1, 8, 9, 9)), np.zeros((16, 4, 7, 7)), name="fc6")
    with pytest.raises(ValueError, match=r"upscore2.*\(2, 3, 4, 4\)"):
        ops.conv_transpose2d_forward(np.zeros((1, 3, 5, 5)), np.zeros((2, 3, 4, 4)), stride=2, name="upscore2")


def test_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"fc6: kernel 7x7 is larger than the padded input 5x6"):
        ops.conv2d_forward(np.zeros((1, 2, 5, 6)), np.zeros((3, 2, 7, 7)), name="fc6")
    with pytest.raises(ValueError, match="larger than the padded input"):
        ops.max_pool2d_forward(np.zeros((1, 1, 1, 3)), 2, 2, ceil_mode=False)


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, bool])
def test_non_float_input_is_a_type_error(dtype):
    x = np.zeros((1, 2, 5, 5), dtype=dtype)
    with pytest.raises(TypeError, match=r"conv1_1: input must be floating point"):
        ops.conv2d_forward(x, np.zeros((3, 2, 3, 3)), name="conv1_1")
    with pytest.raises(TypeError, match=r"pool2: input must be floating point"):
        ops.max_pool2d_forward(x, 2, name="pool2")


def test_mixed_dtypes_are_refused():
    with pytest.raises(TypeError, match=r"conv: dtypes differ \(input float32, weight float64"):
        ops.conv2d_forward(np.zeros((1, 2, 5, 5), np.float32), np.zeros((3, 2, 3, 3)), name="conv")


def test_bias_and_weight_shapes():
    with pytest.raises(ValueError, match=r"score_fr: bias shape \(5,\) does not match \(3,\)"):
        ops.conv2d_forward(np.zeros((1, 2, 5, 5)), np.zeros((3, 2, 1, 1)), np.zeros(5), name="score_fr")
    with pytest.raises(ValueError, match=r"weight must be 4-D"):
        ops.conv2d_forward(np.zeros((1, 2, 5, 5)), np.zeros((3, 2, 3)))


def test_crop_out_of_bounds_names_window():
    with pytest.raises(ValueError, match=r"score_pool4c: window 5x5 at offset \(5, 5\) does not fit in input \(1, 2, 8, 8\)"):
        ops.crop_forward(np.zeros((1, 2, 8, 8)), 5, (5, 5), name="score_pool4c")


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="relu1_1: backward called before forward"):
        layers.ReLU("relu1_1").backward(np.zeros((1, 1, 2, 2)))

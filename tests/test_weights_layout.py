"""The state-dict contract: full-size shapes, validation messages, key renaming in memory.

Full-size arrays here are zero-stride broadcasts (no memory), so the real VGG16 mapping is
checked without ever holding 528 MB.
"""
import numpy as np
import pytest

from minifcn.weights.keras import keras_state_dict
from minifcn.weights.layout import (WeightFileError, expected_shapes, kind_from_keys, validate)
from minifcn.weights.naming import pytorch_state_dict
from weights_testutil import FULL_CONVS, TORCHVISION_CONV_INDEX, fcn_arrays, vgg_arrays


def zeros(shape):
    return np.broadcast_to(np.float32(0), shape)


def test_full_size_shapes_written_out():
    vgg = expected_shapes("vgg16")
    assert vgg["conv1_1.weight"] == (64, 3, 3, 3)
    assert vgg["conv3_1.weight"] == (256, 128, 3, 3)
    assert vgg["conv5_3.bias"] == (512,)
    assert vgg["fc6.weight"] == (4096, 512, 7, 7)
    assert vgg["fc7.weight"] == (4096, 4096, 1, 1)
    assert vgg["fc8.weight"] == (1000, 4096, 1, 1)
    assert len(vgg) == 2 * 16
    assert len(expected_shapes("vgg16-notop")) == 26
    fcn8 = expected_shapes("fcn8s", 21)
    assert "fc8.weight" not in fcn8
    assert fcn8["score_fr.weight"] == (21, 4096, 1, 1)
    assert fcn8["score_pool4.weight"] == (21, 512, 1, 1)
    assert fcn8["score_pool3.weight"] == (21, 256, 1, 1)
    assert fcn8["upscore2.weight"] == fcn8["upscore_pool4.weight"] == (21, 21, 4, 4)
    assert fcn8["upscore8.weight"] == (21, 21, 16, 16)
    assert "upscore2.bias" not in fcn8
    assert expected_shapes("fcn16s", 21)["upscore16.weight"] == (21, 21, 32, 32)
    assert expected_shapes("fcn32s", 21)["upscore.weight"] == (21, 21, 64, 64)
    assert expected_shapes("fcn8s-atonce", 21) == fcn8


def test_narrow_shapes():
    narrow = expected_shapes("vgg16", 10, width=1 / 16)
    assert narrow["conv1_1.weight"] == (4, 3, 3, 3)
    assert narrow["fc6.weight"] == (256, 32, 7, 7)
    assert narrow["fc8.weight"] == (10, 256, 1, 1)


def test_kind_from_keys():
    assert kind_from_keys(vgg_arrays()) == "vgg16"
    assert kind_from_keys(vgg_arrays(top=False)) == "vgg16-notop"
    for kind in ("fcn32s", "fcn16s", "fcn8s"):
        assert kind_from_keys(fcn_arrays(kind)) == kind


def test_validate_reports_width_and_classes():
    assert validate(vgg_arrays(classes=10), "vgg16") == {"width": 1 / 16, "num_classes": 10}
    assert validate(fcn_arrays("fcn8s", classes=5), "fcn8s")["num_classes"] == 5
    assert validate(vgg_arrays(top=False), "vgg16-notop")["num_classes"] is None


def test_validate_names_key_expected_and_found():
    arrays = vgg_arrays()
    arrays["conv3_2.weight"] = arrays["conv3_2.weight"][:, :8]
    del arrays["fc7.bias"]
    arrays["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(WeightFileError) as err:
        validate(arrays, "vgg16", src="my.pth")
    msg = str(err.value)
    assert "my.pth" in msg
    assert "conv3_2.weight: expected shape (16, 16, 3, 3), found (16, 8, 3, 3)" in msg
    assert "missing fc7.bias" in msg and "unexpected key extra.weight" in msg


def test_validate_can_insist_on_full_width():
    with pytest.raises(WeightFileError, match=r"expected shape \(64, 3, 3, 3\), found \(4, 3, 3, 3\)"):
        validate(vgg_arrays(), "vgg16", src="narrow.pth", width=1.0)


def test_full_size_torchvision_mapping_in_memory():
    sd = {}
    for (_, cin, cout), index in zip(FULL_CONVS, TORCHVISION_CONV_INDEX):
        sd[f"features.{index}.weight"] = zeros((cout, cin, 3, 3))
        sd[f"features.{index}.bias"] = zeros((cout,))
    for index, (fout, fin) in zip((0, 3, 6), ((4096, 25088), (4096, 4096), (1000, 4096))):
        sd[f"classifier.{index}.weight"] = zeros((fout, fin))
        sd[f"classifier.{index}.bias"] = zeros((fout,))
    arrays, style = pytorch_state_dict(sd, "vgg16-397923af.pth")
    assert style == "torchvision"
    assert arrays["fc6.weight"].shape == (4096, 512, 7, 7)
    assert arrays["conv4_1.weight"].shape == (512, 256, 3, 3)
    assert validate(arrays, "vgg16", "vgg16-397923af.pth", width=1.0) == {
        "width": 1.0, "num_classes": 1000}


def test_full_size_keras_mapping_in_memory():
    layers = {}
    for name, cin, cout in FULL_CONVS:
        block, conv = name[4], name[6]
        layers[f"block{block}_conv{conv}"] = [zeros((3, 3, cin, cout)), zeros((cout,))]
    layers["fc1"] = [zeros((25088, 4096)), zeros((4096,))]
    layers["fc2"] = [zeros((4096, 4096)), zeros((4096,))]
    layers["predictions"] = [zeros((4096, 1000)), zeros((1000,))]
    arrays = keras_state_dict(layers, "vgg16_weights_tf_dim_ordering_tf_kernels.h5")
    assert arrays["conv1_1.weight"].shape == (64, 3, 3, 3)
    assert arrays["fc6.weight"].shape == (4096, 512, 7, 7)
    validate(arrays, "vgg16", width=1.0)


def test_fc6_with_wrong_input_count_is_named():
    sd = {f"features.{i}.weight": zeros((4, 3, 3, 3)) for i in (0,)}
    sd["classifier.0.weight"] = zeros((256, 1000))
    with pytest.raises(WeightFileError, match="fc6.weight has shape \\(256, 1000\\)"):
        pytorch_state_dict(sd, "odd.pth")


def test_unknown_keys_and_batchnorm_are_refused():
    with pytest.raises(WeightFileError, match="not VGG16/FCN layers: layer4.weight"):
        pytorch_state_dict({"layer4.weight": zeros((2,))}, "resnet.pth")
    with pytest.raises(WeightFileError, match="vgg16_bn"):
        pytorch_state_dict({"features.1.running_mean": zeros((64,))}, "bn.pth")

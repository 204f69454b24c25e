"""Keras VGG16 .h5 files: the real file's layout, HWIO kernels, channels-last fc1, notop.

The numerical reference is computed from the Keras arrays directly (an explicit HWIO loop
convolution, fc1 applied to the channels-last flattened map), not from the converter.
"""
import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from minifcn.npzio import load_npz  # noqa: E402
from minifcn.preprocess import KERAS, Preprocessing  # noqa: E402
from minifcn.weights import WeightFileError, convert  # noqa: E402
from minifcn.weights.cli import add_convert_parser  # noqa: E402
from weights_testutil import FULL_CONVS, NARROW, assert_same_arrays  # noqa: E402


def keras_layers(top=True, classes=7, seed=0):
    """Narrow VGG16 weights in Keras' own layouts: HWIO kernels, (in, out) dense kernels."""
    rng = np.random.default_rng(seed)
    layers = {}
    for name, cin, cout in FULL_CONVS:
        cin = cin if name == "conv1_1" else cin // NARROW
        layer = f"block{name[4]}_conv{name[6]}"
        layers[layer] = [rng.standard_normal((3, 3, cin, cout // NARROW)).astype(np.float32),
                         rng.standard_normal(cout // NARROW).astype(np.float32)]
    if top:
        c, f = 512 // NARROW, 4096 // NARROW
        for layer, shape in (("fc1", (7 * 7 * c, f)), ("fc2", (f, f)), ("predictions", (f, classes))):
            layers[layer] = [rng.standard_normal(shape).astype(np.float32),
                             rng.standard_normal(shape[1]).astype(np.float32)]
    return layers


def write_keras_h5(path, layers, style="keras1"):
    """The layout of vgg16_weights_tf_dim_ordering_tf_kernels.h5 (keras1: `<layer>_W_1:0`) or
    of newer Keras (keras2: `<layer>/kernel:0`, which h5py stores as a nested group)."""
    order = []
    with h5py.File(path, "w") as f:
        for layer in ["input_1", *layers, "flatten"]:
            if layer.startswith("block2") and "block1_pool" not in order:
                order.append("block1_pool")
                f.create_group("block1_pool").attrs["weight_names"] = np.array([], dtype="S")
            order.append(layer)
            group = f.create_group(layer)
            weights = layers.get(layer, [])
            if style == "keras1":
                names = [f"{layer}_W_1:0", f"{layer}_b_1:0"][: len(weights)]
            else:
                names = [f"{layer}/kernel:0", f"{layer}/bias:0"][: len(weights)]
            group.attrs["weight_names"] = np.array([n.encode() for n in names], dtype="S")
            for name, value in zip(names, weights):
                group.create_dataset(name, data=value)
        f.attrs["layer_names"] = np.array([n.encode() for n in order], dtype="S")
        f.attrs["backend"] = b"tensorflow"
    return path


def conv_hwio_loop(x_hwc, kernel, bias):
    """'same' 3x3 convolution (cross-correlation) in Keras' layouts, written as loops."""
    h, w, _ = x_hwc.shape
    padded = np.pad(x_hwc, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, w, kernel.shape[3]))
    for i in range(3):
        for j in range(3):
            # every output pixel reads input pixel (y + i - 1, x + j - 1) through kernel[i, j]
            out += padded[i:i + h, j:j + w, :] @ kernel[i, j]
    return out + bias


@pytest.mark.parametrize("style", ["keras1", "keras2"])
def test_converted_weights_reproduce_keras(style, tmp_path):
    ops = pytest.importorskip("minifcn.ops", reason="minifcn.ops not available yet")
    layers = keras_layers()
    src = write_keras_h5(tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5", layers, style)
    meta = convert(src, tmp_path / "k.npz")
    arrays = load_npz(tmp_path / "k.npz")[0]
    assert meta["kind"] == "vgg16" and meta["num_classes"] == 7
    assert meta["source"]["format"] == "keras"
    assert Preprocessing.from_dict(meta["preprocessing"]) == KERAS
    rng = np.random.default_rng(5)

    # conv1_1 and conv4_2 on a small image, Keras layouts vs converted OIHW.
    for layer, name in (("block1_conv1", "conv1_1"), ("block4_conv2", "conv4_2")):
        kernel, bias = layers[layer]
        x = rng.standard_normal((6, 5, kernel.shape[2])).astype(np.float32)
        ref = conv_hwio_loop(x.astype(np.float64), kernel.astype(np.float64), bias)
        ours, _ = ops.conv2d_forward(x.transpose(2, 0, 1)[None], arrays[f"{name}.weight"],
                                     arrays[f"{name}.bias"], 1, 1)
        np.testing.assert_allclose(ours[0].transpose(1, 2, 0), ref, rtol=1e-4, atol=1e-4)

    # fc1 on Keras' Flatten of a (7, 7, C) channels-last map == fc6 as a 7x7 conv.
    pool5 = rng.standard_normal((7, 7, 32)).astype(np.float32)
    kernel, bias = layers["fc1"]
    ref = pool5.reshape(-1).astype(np.float64) @ kernel + bias
    ours, _ = ops.conv2d_forward(pool5.transpose(2, 0, 1)[None], arrays["fc6.weight"],
                                 arrays["fc6.bias"], 1, 0)
    np.testing.assert_allclose(ours[0, :, 0, 0], ref, rtol=1e-4, atol=1e-3)

    # fc2 and predictions: dense (in, out) == 1x1 conv (out, in, 1, 1).
    v = rng.standard_normal(256).astype(np.float32)
    for layer, name in (("fc2", "fc7"), ("predictions", "fc8")):
        kernel, bias = layers[layer]
        ours, _ = ops.conv2d_forward(v[None, :, None, None], arrays[f"{name}.weight"],
                                     arrays[f"{name}.bias"], 1, 0)
        np.testing.assert_allclose(ours[0, :, 0, 0], v @ kernel + bias, rtol=1e-4, atol=1e-4)


def test_layout_inverse(tmp_path):
    # Going back from the converted arrays to Keras' layouts gives the file's arrays.
    layers = keras_layers(classes=3, seed=9)
    convert(write_keras_h5(tmp_path / "w.h5", layers), tmp_path / "w.npz")
    arrays = load_npz(tmp_path / "w.npz")[0]
    back = {f"block{n[4]}_conv{n[6]}": [arrays[f"{n}.weight"].transpose(2, 3, 1, 0),
                                         arrays[f"{n}.bias"]] for n, _, _ in FULL_CONVS}
    back["fc1"] = [arrays["fc6.weight"].transpose(2, 3, 1, 0).reshape(-1, 256), arrays["fc6.bias"]]
    back["fc2"] = [arrays["fc7.weight"][:, :, 0, 0].T, arrays["fc7.bias"]]
    back["predictions"] = [arrays["fc8.weight"][:, :, 0, 0].T, arrays["fc8.bias"]]
    for layer, (kernel, bias) in layers.items():
        np.testing.assert_array_equal(back[layer][0], kernel, err_msg=layer)
        np.testing.assert_array_equal(back[layer][1], bias, err_msg=layer)


def test_notop_is_backbone_only(tmp_path, capsys):
    import argparse
    layers = keras_layers(top=False)
    src = write_keras_h5(tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", layers)
    parser = argparse.ArgumentParser()
    add_convert_parser(parser.add_subparsers())
    args = parser.parse_args(["convert", str(src), str(tmp_path / "notop.npz")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "vgg16-notop" in out and "backbone only" in out
    arrays, meta = load_npz(tmp_path / "notop.npz")
    assert meta["kind"] == "vgg16-notop" and meta["num_classes"] is None
    assert len(arrays) == 26 and "fc6.weight" not in arrays
    expected = {f"{n}.weight": layers[f"block{n[4]}_conv{n[6]}"][0].transpose(3, 2, 0, 1)
                for n, _, _ in FULL_CONVS}
    expected.update({f"{n}.bias": layers[f"block{n[4]}_conv{n[6]}"][1] for n, _, _ in FULL_CONVS})
    assert_same_arrays(arrays, expected)


def test_channels_first_kernels_are_refused(tmp_path):
    layers = keras_layers(top=False)
    layers["block1_conv1"][0] = layers["block1_conv1"][0].transpose(3, 2, 0, 1)  # OIHW
    src = write_keras_h5(tmp_path / "th.h5", layers)
    with pytest.raises(WeightFileError, match=r"th\.h5: block1_conv1 kernel has shape"):
        convert(src, tmp_path / "th.npz")
    assert not (tmp_path / "th.npz").exists()


def test_truncated_h5_is_named_and_leaves_nothing(tmp_path):
    src = write_keras_h5(tmp_path / "full.h5", keras_layers())
    data = src.read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightFileError, match=r"cut\.h5: not a readable Keras HDF5"):
        convert(tmp_path / "cut.h5", tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()

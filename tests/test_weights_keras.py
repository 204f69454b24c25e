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


# Hostile and malformed files. A Keras file is groups joined by hard links and datasets of
# numbers stored in the file; anything else is refused, naming the dataset or link, before
# h5py follows it or reads it.

def small_keras_file(path):
    """A notop file (conv layers only) to be altered by the tests below."""
    return write_keras_h5(path, keras_layers(top=False))


def replace_dataset(path, layer, name, make):
    """Delete ``layer/name`` and let ``make(group, name)`` put something in its place."""
    with h5py.File(path, "a") as f:
        group = f[layer]
        del group[name]
        make(group, name)


def test_external_storage_cannot_copy_a_local_file_into_the_weights(tmp_path, capsys):
    from minifcn.cli import main
    secret = b"TOP-SECRET-TOKEN"  # 16 bytes: exactly block1_conv1's 4 float32 biases
    (tmp_path / "secret.txt").write_bytes(secret)
    src = small_keras_file(tmp_path / "w.h5")
    replace_dataset(src, "block1_conv1", "block1_conv1_b_1:0", lambda g, n: g.create_dataset(
        n, shape=(4,), dtype="<f4", external=[(str(tmp_path / "secret.txt"), 0, 16)]))
    dst = tmp_path / "w.npz"
    assert main(["convert", str(src), str(dst)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "w.h5" in err and "block1_conv1_b_1:0" in err
    assert "external" in err
    assert not dst.exists()
    written = [p for p in tmp_path.iterdir() if p.name != "secret.txt"]
    assert all(secret not in p.read_bytes() for p in written)


def test_virtual_dataset_is_refused(tmp_path):
    src = small_keras_file(tmp_path / "w.h5")
    with h5py.File(tmp_path / "other.h5", "w") as other:  # what the virtual dataset maps
        other["x"] = np.ones((3, 3, 3, 4), np.float32)
    layout = h5py.VirtualLayout(shape=(3, 3, 3, 4), dtype="<f4")
    layout[...] = h5py.VirtualSource(str(tmp_path / "other.h5"), "x", shape=(3, 3, 3, 4))
    replace_dataset(src, "block1_conv1", "block1_conv1_W_1:0",
                    lambda g, n: g.create_virtual_dataset(n, layout))
    with pytest.raises(WeightFileError, match=r"w\.h5: dataset /block1_conv1/block1_conv1_W_1:0 "
                                              r"is a virtual dataset"):
        convert(src, tmp_path / "w.npz")


def move_to_other_file(path, other, name):
    """Copy ``name`` (a layer group or a dataset) into ``other`` and delete it from ``path``."""
    with h5py.File(path, "a") as f, h5py.File(other, "a") as o:
        f.copy(f[name], o, name=name)
        del f[name]


@pytest.mark.parametrize("kind", ["soft", "external"])
@pytest.mark.parametrize("target", ["block2_conv1", "block2_conv1/block2_conv1_W_1:0"],
                         ids=["layer-group", "dataset"])
def test_links_in_place_of_weights_are_refused(kind, target, tmp_path):
    # The linked-to data is a correct layer: followed, the file would convert.
    src = small_keras_file(tmp_path / "w.h5")
    if kind == "soft":
        with h5py.File(src, "a") as f:
            f.move(target, "hidden")
            f[target] = h5py.SoftLink("/hidden")
        expected = r"is a soft link to /hidden"
    else:
        other = tmp_path / "other.h5"
        move_to_other_file(src, other, target)
        with h5py.File(src, "a") as f:
            f[target] = h5py.ExternalLink(str(other), "/" + target)
        expected = r"is an external link to /.* in file .*other\.h5"
    with pytest.raises(WeightFileError, match=rf"w\.h5: /{target} {expected}"):
        convert(src, tmp_path / "w.npz")
    assert not (tmp_path / "w.npz").exists()


def make_typed(dtype, values):
    return lambda g, n: g.create_dataset(n, data=values, dtype=dtype)


NOT_NUMBERS = {  # (dtype for h5py, values, words expected in the message)
    "fixed-strings": ("S8", np.array([b"a", b"b", b"c", b"d"]), "holds strings"),
    "vlen-strings": (h5py.string_dtype(), ["a", "b", "c", "d"], "holds strings"),
    "compound": (np.dtype([("x", "<f4"), ("y", "<i4")]),
                 np.zeros(4, [("x", "<f4"), ("y", "<i4")]), "holds compound records"),
    "enum": (h5py.enum_dtype({"ON": 1, "OFF": 0}, basetype="i1"), np.ones(4, "i1"),
             "holds enumerated values"),
    "bool": (bool, np.ones(4, bool), "holds booleans"),
    "vlen-floats": (h5py.vlen_dtype(np.float32), None, "holds variable-length sequences"),
    "references": (h5py.ref_dtype, None, "holds object references"),
}


@pytest.mark.parametrize("case", NOT_NUMBERS)
def test_datasets_of_non_numbers_are_refused(case, tmp_path):
    dtype, values, words = NOT_NUMBERS[case]
    src = small_keras_file(tmp_path / "w.h5")

    def make(group, name):
        if case == "vlen-floats":
            dset = group.create_dataset(name, shape=(4,), dtype=dtype)
            for i in range(4):
                dset[i] = np.ones(i + 1, np.float32)
        elif case == "references":
            group.create_dataset(name, data=[group.ref] * 4, dtype=dtype)
        else:
            make_typed(dtype, values)(group, name)

    replace_dataset(src, "block1_conv1", "block1_conv1_b_1:0", make)
    with pytest.raises(WeightFileError, match=rf"w\.h5: dataset /block1_conv1/block1_conv1_b_1:0 "
                                              rf"{words}"):
        convert(src, tmp_path / "w.npz")


def test_complex_weights_get_a_dtype_message(tmp_path):
    src = small_keras_file(tmp_path / "w.h5")
    kernel = keras_layers(top=False)["block1_conv1"][0]
    replace_dataset(src, "block1_conv1", "block1_conv1_W_1:0",
                    make_typed(np.complex64, kernel + 1j * kernel))
    with pytest.raises(WeightFileError, match=r"w\.h5: dataset .*block1_conv1_W_1:0 has dtype "
                                              r"complex64; complex weights are not supported"):
        convert(src, tmp_path / "w.npz")


SIZE_CLAIMS = {  # a tiny file declaring 256 MiB that it does not hold
    "contiguous-unwritten": dict(),
    "chunked-unwritten": dict(chunks=(1 << 16,)),
    "compressed-one-chunk": dict(chunks=(1 << 16,), compression="gzip", write_first_chunk=True),
}


@pytest.mark.parametrize("case", SIZE_CLAIMS)
def test_declared_size_the_file_does_not_hold_is_refused_before_reading(case, tmp_path):
    from fuzz_util import read_or_refuse
    from minifcn.weights.keras import read_keras_h5
    options = dict(SIZE_CLAIMS[case])
    write_first = options.pop("write_first_chunk", False)

    def make(group, name):
        dset = group.create_dataset(name, shape=(1 << 26,), dtype="<f4", **options)
        if write_first:
            dset[: 1 << 16] = 1.0

    src = small_keras_file(tmp_path / "w.h5")
    replace_dataset(src, "block1_conv1", "block1_conv1_b_1:0", make)
    assert src.stat().st_size < 1 << 20
    assert read_or_refuse(read_keras_h5, src) is None  # refused, and no big allocation
    with pytest.raises(WeightFileError, match=r"w\.h5: dataset .*block1_conv1_b_1:0 has shape "
                                              r"\(67108864,\) \(268435456 bytes\)"):
        read_keras_h5(src)


@pytest.mark.parametrize("filters", [dict(compression="gzip", shuffle=True, fletcher32=True),
                                     dict(compression="lzf")], ids=["gzip", "lzf"])
def test_compressed_weights_still_convert(filters, tmp_path):
    # h5repack can compress a Keras file; the standard lossless filters are read.
    layers = keras_layers(classes=3)
    plain = write_keras_h5(tmp_path / "plain.h5", layers)
    packed = write_keras_h5(tmp_path / "packed.h5", {})
    with h5py.File(plain, "r") as f, h5py.File(packed, "w") as g:
        for key, value in f.attrs.items():
            g.attrs[key] = value
        for layer in f:
            group = g.create_group(layer)
            group.attrs["weight_names"] = f[layer].attrs["weight_names"]
            for name in f[layer]:
                group.create_dataset(name, data=f[layer][name][()], chunks=True, **filters)
    convert(plain, tmp_path / "plain.npz")
    convert(packed, tmp_path / "packed.npz")
    assert_same_arrays(load_npz(tmp_path / "packed.npz")[0], load_npz(tmp_path / "plain.npz")[0])


def test_lossy_filter_is_refused(tmp_path):
    # HDF5's scale-offset filter rounds floats: the weights would come out changed.
    src = small_keras_file(tmp_path / "w.h5")
    kernel = keras_layers(top=False)["block1_conv1"][0]
    replace_dataset(src, "block1_conv1", "block1_conv1_W_1:0", lambda g, n: g.create_dataset(
        n, data=kernel, chunks=kernel.shape, scaleoffset=2))
    with pytest.raises(WeightFileError, match=r"w\.h5: dataset .*block1_conv1_W_1:0 uses HDF5 "
                                              r"filter\(s\) \[6\]"):
        convert(src, tmp_path / "w.npz")


def test_a_layer_that_is_a_dataset_is_named(tmp_path):
    src = small_keras_file(tmp_path / "w.h5")
    with h5py.File(src, "a") as f:
        del f["block1_conv1"]
        f["block1_conv1"] = np.ones(4, np.float32)
    with pytest.raises(WeightFileError, match=r"w\.h5: layer block1_conv1 is not an HDF5 group"):
        convert(src, tmp_path / "w.npz")


def test_layer_name_like_a_conv_block_but_not_one_is_named(tmp_path):
    layers = keras_layers(top=False)
    layers["block1_conv1_conv2"] = layers.pop("block1_conv1")
    src = write_keras_h5(tmp_path / "odd.h5", layers)
    with pytest.raises(WeightFileError, match=r"odd\.h5: layers that VGG16 does not have: "
                                              r"block1_conv1_conv2"):
        convert(src, tmp_path / "odd.npz")

"""Caffe .caffemodel files, encoded independently of the reader with the protobuf package.

The test declares the needed subset of caffe.proto as a FileDescriptorProto and lets the
protobuf runtime serialize messages, in both the legacy V1 form (``layers``, enum types,
num/channels/height/width dims, unpacked floats as proto2 writes them by default) and the
current form (``layer``, string types, ``shape``, packed floats).
"""
import numpy as np
import pytest

pytest.importorskip("google.protobuf")
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # noqa: E402

from minifcn.npzio import load_npz  # noqa: E402
from minifcn.preprocess import CAFFE_FCN, CAFFE_VGG, Preprocessing  # noqa: E402
from minifcn.weights import WeightFileError, convert  # noqa: E402
from minifcn.weights import protobuf_wire as wire  # noqa: E402
from minifcn.weights.caffe import caffe_state_dict, read_caffemodel  # noqa: E402
from fuzz_util import read_or_refuse  # noqa: E402
from weights_testutil import assert_same_arrays, fcn_arrays, vgg_arrays  # noqa: E402

F = descriptor_pb2.FieldDescriptorProto
V1_TYPES = {"Convolution": 4, "InnerProduct": 14, "Deconvolution": 39, "ReLU": 18,
            "Pooling": 17, "Scale": 0}


def caffe_messages(packed):
    """NetParameter / BlobProto classes for a subset of caffe.proto (same field numbers)."""
    fd = descriptor_pb2.FileDescriptorProto(name=f"caffe_subset_{packed}.proto",
                                            package=f"caffe{int(packed)}", syntax="proto2")

    def message(name, *fields):
        m = fd.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = f".{fd.package}.{type_name}"
            if packed and label == F.LABEL_REPEATED and ftype in (F.TYPE_FLOAT, F.TYPE_DOUBLE,
                                                                  F.TYPE_INT64):
                f.options.packed = True
        return m

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message("BlobShape", ("dim", 1, F.TYPE_INT64, rep, None))
    message("BlobProto", ("num", 1, F.TYPE_INT32, opt, None), ("channels", 2, F.TYPE_INT32, opt, None),
            ("height", 3, F.TYPE_INT32, opt, None), ("width", 4, F.TYPE_INT32, opt, None),
            ("data", 5, F.TYPE_FLOAT, rep, None), ("diff", 6, F.TYPE_FLOAT, rep, None),
            ("shape", 7, F.TYPE_MESSAGE, opt, "BlobShape"),
            ("double_data", 8, F.TYPE_DOUBLE, rep, None))
    message("LayerParameter", ("name", 1, F.TYPE_STRING, opt, None),
            ("type", 2, F.TYPE_STRING, opt, None), ("bottom", 3, F.TYPE_STRING, rep, None),
            ("top", 4, F.TYPE_STRING, rep, None), ("blobs", 7, F.TYPE_MESSAGE, rep, "BlobProto"))
    v1 = message("V1LayerParameter", ("bottom", 2, F.TYPE_STRING, rep, None),
                 ("top", 3, F.TYPE_STRING, rep, None), ("name", 4, F.TYPE_STRING, opt, None),
                 ("type", 5, F.TYPE_ENUM, opt, "V1LayerParameter.LayerType"),
                 ("blobs", 6, F.TYPE_MESSAGE, rep, "BlobProto"))
    enum = v1.enum_type.add(name="LayerType")
    for name, number in {"NONE": 0, "CONVOLUTION": 4, "DECONVOLUTION": 39, "INNER_PRODUCT": 14,
                         "POOLING": 17, "RELU": 18}.items():
        enum.value.add(name=name, number=number)
    message("NetParameter", ("name", 1, F.TYPE_STRING, opt, None),
            ("layers", 2, F.TYPE_MESSAGE, rep, "V1LayerParameter"),
            ("layer", 100, F.TYPE_MESSAGE, rep, "LayerParameter"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{fd.package}.NetParameter"))


def fill_blob(blob, array, legacy, use_double=False):
    if legacy:  # V1 blobs: always 4-D, leading 1s (bias (1, 1, 1, n), fc (1, 1, out, in))
        dims = (1,) * (4 - array.ndim) + array.shape
        blob.num, blob.channels, blob.height, blob.width = dims
    else:
        blob.shape.dim.extend(array.shape)
    values = array.reshape(-1).tolist()
    (blob.double_data if use_double else blob.data).extend(values)


def write_caffemodel(path, layers, v1):
    """layers: list of (name, type, [arrays]); V1 uses unpacked floats, the new form packed
    (with conv1_2's bias in double_data)."""
    net = caffe_messages(packed=not v1)(name="test-net")
    for name, ltype, blobs in layers:
        layer = net.layers.add() if v1 else net.layer.add()
        layer.name = name
        layer.type = V1_TYPES[ltype] if v1 else ltype
        for j, array in enumerate(blobs):
            # one blob in double_data (field 8), as a file saved from a float64 net would be
            double = not v1 and name == "conv1_2" and j == 1
            fill_blob(layer.blobs.add(), array, legacy=v1, use_double=double)
    path.write_bytes(net.SerializeToString())
    return path


def vgg_caffe_layers(arrays):
    """VGG16 the way the VGG team's file holds it: inner-product fc layers, with ReLU/pool
    layers (no blobs) in between."""
    layers = []
    for key in [k for k in arrays if k.endswith(".weight")]:
        name = key[:-7]
        w, b = arrays[key], arrays[f"{name}.bias"]
        if name.startswith("fc"):
            layers.append((name, "InnerProduct", [w.reshape(w.shape[0], -1), b]))
        else:
            layers.append((name, "Convolution", [w, b]))
        layers.append((f"relu_{name}", "ReLU", []))
    return layers


@pytest.mark.parametrize("v1", [True, False], ids=["v1-layers", "layer"])
def test_blobs_round_trip(v1, tmp_path):
    arrays = vgg_arrays(classes=6)
    layers = vgg_caffe_layers(arrays)
    read = read_caffemodel(write_caffemodel(tmp_path / "net.caffemodel", layers, v1))
    with_blobs = [layer for layer in layers if layer[2]]
    assert [(n, t) for n, t, _ in read] == [(n, t) for n, t, _ in with_blobs]
    for (_, _, got), (_, _, want) in zip(read, with_blobs):
        for g, w in zip(got, want):
            expected_shape = (1,) * (4 - w.ndim) + w.shape if v1 else w.shape
            assert g.shape == expected_shape
            np.testing.assert_array_equal(g.reshape(w.shape), w)


@pytest.mark.parametrize("v1", [True, False], ids=["v1-layers", "layer"])
def test_vgg16_caffemodel_converts(v1, tmp_path):
    expected = vgg_arrays(classes=6)
    src = write_caffemodel(tmp_path / "VGG_ILSVRC_16_layers.caffemodel",
                           vgg_caffe_layers(expected), v1)
    meta = convert(src, tmp_path / "vgg.npz")
    assert meta["kind"] == "vgg16" and meta["num_classes"] == 6
    assert meta["source"]["format"] == "caffe"
    assert Preprocessing.from_dict(meta["preprocessing"]) == CAFFE_VGG
    assert_same_arrays(load_npz(tmp_path / "vgg.npz")[0], expected)


def fcn_caffe_layers(arrays, atonce=False):
    """A whole FCN as fcn.berkeleyvision.org releases it: fc6/fc7 convolutions, score and
    deconvolution layers, crops and sums without blobs."""
    layers = []
    for key in [k for k in arrays if k.endswith(".weight")]:
        name = key[:-7]
        if name.startswith("upscore"):
            layers.append((name, "Deconvolution", [arrays[key]]))
            continue
        if atonce and name in ("score_pool4", "score_pool3"):
            pool, factor = name[6:], {"score_pool4": 0.01, "score_pool3": 0.0001}[name]
            layers.append((f"scale_{pool}", "Scale",
                           [np.full(arrays[key].shape[1], factor, np.float32)]))
        layers.append((name, "Convolution", [arrays[key], arrays[f"{name}.bias"]]))
    layers.append(("score", "Crop", []))
    return layers


@pytest.mark.parametrize("kind", ["fcn32s", "fcn16s", "fcn8s"])
def test_whole_fcn_caffemodel_converts(kind, tmp_path):
    expected = fcn_arrays(kind, classes=5)
    src = write_caffemodel(tmp_path / f"{kind}-heavy-pascal.caffemodel",
                           fcn_caffe_layers(expected), v1=False)
    meta = convert(src, tmp_path / f"{kind}.npz")
    assert meta["kind"] == kind and meta["num_classes"] == 5
    assert Preprocessing.from_dict(meta["preprocessing"]) == CAFFE_FCN
    assert_same_arrays(load_npz(tmp_path / f"{kind}.npz")[0], expected)


def test_fcn8s_at_once_detection(tmp_path):
    expected = fcn_arrays("fcn8s", classes=5)
    scaled = write_caffemodel(tmp_path / "net-a.caffemodel", fcn_caffe_layers(expected, True), False)
    assert convert(scaled, tmp_path / "a.npz")["kind"] == "fcn8s-atonce"
    assert_same_arrays(load_npz(tmp_path / "a.npz")[0], expected)  # scales are not weights
    plain = write_caffemodel(tmp_path / "net-b.caffemodel", fcn_caffe_layers(expected), False)
    assert convert(plain, tmp_path / "b.npz")["kind"] == "fcn8s"
    assert convert(plain, tmp_path / "c.npz", variant="fcn8s-atonce")["kind"] == "fcn8s-atonce"
    named = tmp_path / "fcn8s-atonce-pascal.caffemodel"
    named.write_bytes(plain.read_bytes())
    assert convert(named, tmp_path / "d.npz")["kind"] == "fcn8s-atonce"
    with pytest.raises(WeightFileError, match="--variant fcn32s asked for, but the file holds a fcn8s"):
        convert(plain, tmp_path / "e.npz", variant="fcn32s")
    assert not (tmp_path / "e.npz").exists()


def test_wrong_at_once_scale_is_refused(tmp_path):
    layers = fcn_caffe_layers(fcn_arrays("fcn8s"), atonce=True)
    layers = [(n, t, [b * 3 for b in blobs]) if n == "scale_pool3" else (n, t, blobs)
              for n, t, blobs in layers]
    src = write_caffemodel(tmp_path / "odd.caffemodel", layers, False)
    with pytest.raises(WeightFileError, match="scale_pool3 holds 0.0003"):
        convert(src, tmp_path / "odd.npz")


def test_unknown_layers_with_weights_are_named(tmp_path):
    layers = vgg_caffe_layers(vgg_arrays()) + [("conv1_1_bgrd", "Convolution",
                                                [np.ones((2, 4, 3, 3), np.float32)])]
    src = write_caffemodel(tmp_path / "hha.caffemodel", layers, False)
    with pytest.raises(WeightFileError, match=r"hha\.caffemodel: .*conv1_1_bgrd \(Convolution\)"):
        convert(src, tmp_path / "hha.npz")


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_caffemodel_is_named_and_leaves_nothing(keep, tmp_path):
    src = write_caffemodel(tmp_path / "full.caffemodel", vgg_caffe_layers(vgg_arrays()), False)
    cut = tmp_path / "cut.caffemodel"
    data = src.read_bytes()
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(WeightFileError, match=r"cut\.caffemodel: "):
        convert(cut, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("kind", ["fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce"])
def test_converted_fcn_loads_into_the_model(kind, tmp_path):
    models = pytest.importorskip("minifcn.models", reason="minifcn.models not written yet")
    expected = fcn_arrays(kind.replace("-atonce", ""), classes=5)
    layers = fcn_caffe_layers(expected, atonce=kind == "fcn8s-atonce")
    convert(write_caffemodel(tmp_path / "net.caffemodel", layers, False), tmp_path / "net.npz")
    model = models.load_model(tmp_path / "net.npz")  # the converted metadata rebuilds it
    assert type(model) is models.MODELS[kind]
    assert model.num_classes == 5 and model.width == 1 / 16
    assert model.preprocessing == CAFFE_FCN
    state = model.state_dict()
    for key, value in expected.items():
        np.testing.assert_array_equal(np.asarray(state[key]), value, err_msg=key)


def test_converted_vgg16_initialises_an_fcn(tmp_path):
    models = pytest.importorskip("minifcn.models", reason="minifcn.models not written yet")
    vgg = vgg_arrays(classes=6)
    convert(write_caffemodel(tmp_path / "VGG_ILSVRC_16_layers.caffemodel", vgg_caffe_layers(vgg),
                             True), tmp_path / "vgg.npz")
    arrays, meta = load_npz(tmp_path / "vgg.npz")
    fcn = models.FCN32s(num_classes=21, width=meta["width"])
    copied = fcn.copy_params(arrays)
    assert len(copied) == 2 * 15  # conv1_1..conv5_3, fc6, fc7 (not fc8: FCNs have none)
    np.testing.assert_array_equal(np.asarray(fcn.state_dict()["fc6.weight"]), vgg["fc6.weight"])


# Crafted files: what a damaged or hostile caffemodel can say, written byte by byte so that
# the test can say things the protobuf package would never write (wrong wire types, varints
# past 64 bits, shapes that disagree with the data).

def varint(n):
    """Protobuf base-128 varint of a non-negative integer (no 64-bit limit: tests go past)."""
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def field(number, wire_type, payload):
    """One field: tag, then the payload (length-prefixed for wire type 2)."""
    if wire_type == 2:
        payload = varint(len(payload)) + payload
    return varint(number << 3 | wire_type) + payload


def blob(dims=None, data=None, double=None, legacy=None):
    """A BlobProto: shape (packed int64 dims, two's complement), packed data/double_data."""
    out = b""
    for number, value in zip((1, 2, 3, 4), legacy or ()):
        out += field(number, 0, varint(value % (1 << 64)))
    if data is not None:
        out += field(5, 2, np.asarray(data, "<f4").tobytes())
    if double is not None:
        out += field(8, 2, np.asarray(double, "<f8").tobytes())
    if dims is not None:
        out += field(7, 2, field(1, 2, b"".join(varint(d % (1 << 64)) for d in dims)))
    return out


def net(*blobs, name=b"conv1_1", ltype=b"Convolution"):
    """A NetParameter with one new-style layer holding ``blobs`` (BlobProto bytes)."""
    layer = field(1, 2, name) + field(2, 2, ltype) + b"".join(field(7, 2, b) for b in blobs)
    return field(1, 2, b"crafted") + field(100, 2, layer)


def write(tmp_path, data, name="crafted.caffemodel"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("dims", [
    (1 << 20, 1 << 20, 64, 64),       # far more values than the four present
    (4294967301, 2951479051106333492),  # product wraps to exactly 4 in 64-bit arithmetic
    (-1, -4), (-2, -2), (2, -1, -2),  # negative sizes whose product is 4
    ((1 << 63) - 1, (1 << 63) - 1, 0),  # int64 extremes
], ids=["huge", "wraps-to-4", "neg-neg", "neg-neg-2", "neg-mixed", "int64-max"])
def test_blob_shape_that_disagrees_with_its_data_is_refused(dims, tmp_path):
    path = write(tmp_path, net(blob(dims=dims, data=[1, 2, 3, 4])))
    assert read_or_refuse(read_caffemodel, path) is None
    with pytest.raises(WeightFileError, match=r"crafted\.caffemodel: layer conv1_1 blob 0 has "
                                              r"shape \("):
        read_caffemodel(path)


def test_legacy_dims_are_checked_like_shape_dims(tmp_path):
    path = write(tmp_path, net(blob(legacy=(-1, -1, 2, 2), data=[1, 2, 3, 4])))
    with pytest.raises(WeightFileError, match=r"blob 0 has shape \(-1, -1, 2, 2\); sizes cannot "
                                              r"be negative"):
        read_caffemodel(path)


def test_more_axes_than_caffe_allows_is_refused(tmp_path):
    path = write(tmp_path, net(blob(dims=[1] * 33, data=[1.0])))
    with pytest.raises(WeightFileError, match=r"layer conv1_1 blob 0 has a shape of more than 32"):
        read_caffemodel(path)


WRONG_WIRE_TYPES = {  # case: (blob bytes, type field, message or None if it loads)
    "data-as-varint": (field(5, 0, varint(7)), None, r"blob 0: data field 5 has wire type 0"),
    "float-as-fixed64": (field(5, 1, bytes(8)), None, r"blob 0: data field 5 has wire type 1"),
    # a shape sent as a number is not a shape: the 4 values then have no shape to fill
    "shape-as-varint": (field(7, 0, varint(4)) + field(5, 2, bytes(16)), None,
                        r"blob 0 has shape \(\) = 1 values but holds 4"),
    # a string field sent as a number is skipped, as protobuf skips what it cannot use
    "type-as-varint": (field(5, 2, bytes(4)), field(2, 0, varint(4)), None),
}


@pytest.mark.parametrize("case", WRONG_WIRE_TYPES)
def test_fields_with_the_wrong_wire_type(case, tmp_path):
    blob_bytes, type_field, message = WRONG_WIRE_TYPES[case]
    layer = field(1, 2, b"conv1_1") + (type_field or field(2, 2, b"Convolution"))
    path = write(tmp_path, field(100, 2, layer + field(7, 2, blob_bytes)))
    result = read_or_refuse(read_caffemodel, path)
    if message is None:
        [(name, ltype, [values])] = result
        assert (name, ltype, values.shape) == ("conv1_1", "?", ())
    else:
        assert result is None
        with pytest.raises(WeightFileError, match=r"crafted\.caffemodel: layer conv1_1 " + message):
            read_caffemodel(path)


def test_varint_past_64_bits_is_refused(tmp_path):
    with pytest.raises(wire.WireFormatError, match="overflows 64 bits"):
        wire.read_varint(varint((1 << 64) + 4), 0, 10)
    # as a dim: 2**64 + 4 must not be read as 4
    shape = field(7, 2, field(1, 0, varint((1 << 64) + 4)))
    path = write(tmp_path, net(field(5, 2, np.ones(4, "<f4").tobytes()) + shape))
    with pytest.raises(WeightFileError, match=r"crafted\.caffemodel: .*overflows 64 bits"):
        read_caffemodel(path)


def test_double_data_wins_over_data_as_in_caffe(tmp_path):
    # Caffe's Blob::FromProto reads double_data whenever it has values, data otherwise.
    path = write(tmp_path, net(blob(dims=[2], data=[9, 9, 9], double=[0.5, -2.0])))
    [(_, _, [values])] = read_caffemodel(path)
    np.testing.assert_array_equal(values, np.array([0.5, -2.0], np.float32))


def test_double_beyond_float32_is_refused_not_made_inf(tmp_path):
    path = write(tmp_path, net(blob(dims=[2], double=[1.0, 1e300])))
    with pytest.raises(WeightFileError, match=r"blob 0 holds 1e\+300, beyond float32's range"):
        read_caffemodel(path)


def test_layer_name_that_is_not_text_gives_a_one_line_error(tmp_path):
    path = write(tmp_path, net(blob(dims=[1], data=[1.0]), name=b"conv1_1\nrm -rf"))
    assert read_or_refuse(lambda p: caffe_state_dict(read_caffemodel(p), p.name), path) is None


def test_every_truncation_is_refused_naming_the_file(tmp_path):
    src = write_caffemodel(tmp_path / "full.caffemodel",
                           fcn_caffe_layers(fcn_arrays("fcn8s", divisor=64)), v1=False)
    data, cut = src.read_bytes(), tmp_path / "cut.caffemodel"
    for end in sorted(set(range(1, 120, 3)) | set(range(120, len(data), 1999))):
        cut.write_bytes(data[:end])
        read_or_refuse(read_caffemodel, cut)
        with pytest.raises(WeightFileError, match=r"cut\.caffemodel: "):
            convert(cut, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()


def test_scalar_conv5_3_blob_is_a_file_error(tmp_path):
    # fc6 is reshaped by conv5_3's output channels: a 0-d conv5_3 weight has none
    path = write(tmp_path, net(blob(dims=[], data=[1.0]), name=b"conv5_3"))
    with pytest.raises(WeightFileError, match=r"crafted\.caffemodel: "):
        convert(path, tmp_path / "out.npz")

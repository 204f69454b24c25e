"""Fuzzing the ``.caffemodel`` reader: truncations, bit flips, and crafted messages (varints,
lengths, wire types and blob dims), every case through :func:`fuzz_util.read_or_refuse`.

A case ends either in a WeightFileError naming the file, or in finite float32 arrays (the
weights are :func:`weights_testutil.fuzz_values`, which a few flipped bits cannot make
inf or NaN).
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("google.protobuf")  # to write the valid files the fuzzer starts from

from fuzz_util import assert_finite_arrays, bit_flips, flip_bits, read_or_refuse  # noqa: E402
from minifcn.weights.caffe import caffe_state_dict, read_caffemodel  # noqa: E402
from test_weights_caffe import varint, write_caffemodel  # noqa: E402
from weights_testutil import fuzz_values  # noqa: E402

FUZZ = dict(deadline=None, derandomize=True,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def small_layers(seed=0):
    """Tiny conv, inner-product and deconvolution layers (conv1_2's bias goes in double_data:
    see write_caffemodel), with blob-less layers between them."""
    rng = np.random.default_rng(seed)
    return [("conv1_1", "Convolution", [fuzz_values((2, 3, 3, 3), rng), fuzz_values(2, rng)]),
            ("relu1_1", "ReLU", []),
            ("conv1_2", "Convolution", [fuzz_values((2, 2, 3, 3), rng), fuzz_values(2, rng)]),
            ("conv5_3", "Convolution", [fuzz_values((2, 2, 3, 3), rng), fuzz_values(2, rng)]),
            ("fc6", "InnerProduct", [fuzz_values((3, 2 * 49), rng), fuzz_values(3, rng)]),
            ("fc7", "InnerProduct", [fuzz_values((3, 3), rng), fuzz_values(3, rng)]),
            ("upscore2", "Deconvolution", [fuzz_values((2, 2, 4, 4), rng)])]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The legacy V1 form (unpacked floats, num/channels/height/width) and the current one
    (packed floats, BlobShape, one blob in double_data)."""
    root = tmp_path_factory.mktemp("fuzz_caffe")
    for form in ("v1", "layer"):
        write_caffemodel(root / f"{form}.caffemodel", small_layers(), v1=form == "v1")
    return root  # (not the bytes: hypothesis prints the arguments of a failing case)


def read(path):
    return caffe_state_dict(read_caffemodel(path), path.name)[0]


def fuzz_case(root, name, data):
    path = root / name
    path.write_bytes(bytes(data))
    result = read_or_refuse(read, path)
    if result is not None:
        assert_finite_arrays(result)
        assert all(value.dtype == np.float32 for value in result.values())
    return result


@settings(max_examples=100, **FUZZ)
@given(form=st.sampled_from(["v1", "layer"]), keep=st.floats(0, 1, exclude_max=True))
def test_truncated(files, form, keep):
    data = (files / f"{form}.caffemodel").read_bytes()
    fuzz_case(files, "cut.caffemodel", data[: max(1, int(len(data) * keep))])


@settings(max_examples=500, **FUZZ)
@given(form=st.sampled_from(["v1", "layer"]), flips=bit_flips())
def test_bit_flips(files, form, flips):
    data = flip_bits((files / f"{form}.caffemodel").read_bytes(), flips)
    fuzz_case(files, "flipped.caffemodel", data)


# Crafted messages: an honest message is built as a tree of fields, then up to three of its
# fields are made to lie (a wrong wire type, a wrong length, a varint padded with redundant
# bytes or carrying bits past 64). Few lies per case let most cases get past the wire
# format into the blob and layer logic, where dims may disagree with the values.

class Field:
    """A field whose payload is an int (varint), bytes, or a list of fields (a message)."""

    def __init__(self, number, wire_type, payload):
        self.number, self.wire_type, self.payload = number, wire_type, payload
        self.tag_wire, self.length_delta, self.encoding = wire_type, 0, "canonical"

    def walk(self):
        yield self
        for child in self.payload if isinstance(self.payload, list) else ():
            yield from child.walk()

    def encode(self):
        if isinstance(self.payload, int):
            body = lying_varint(self.payload, self.encoding)
        else:
            body = (b"".join(f.encode() for f in self.payload)
                    if isinstance(self.payload, list) else self.payload)
            if self.wire_type == 2:
                length = max(0, len(body) + self.length_delta)
                body = lying_varint(length, self.encoding) + body
        return varint(self.number << 3 | self.tag_wire) + body


def lying_varint(value, encoding):
    """``value`` as a varint: canonical, padded to 10 or 11 bytes, or with bits past 64."""
    value %= 1 << 64
    if encoding == "overflow":  # the 10th byte carries bits above 63
        return varint(value | (1 << 66))
    groups = list(varint(value))
    if encoding in ("padded", "eleven-bytes"):
        groups += [0] * ((10 if encoding == "padded" else 11) - len(groups))
    return bytes([g | 0x80 for g in groups[:-1]] + [groups[-1]])


INT64 = st.one_of(st.integers(-4, 64), st.sampled_from(
    [-(1 << 63), (1 << 63) - 1, 1 << 32, (1 << 32) + 1, 4294967301, 2951479051106333492]))


@st.composite
def blobs(draw):
    """A BlobProto whose dims mostly match its values (shape or legacy), or do not."""
    count = draw(st.integers(0, 40))
    how = draw(st.sampled_from(["shape", "legacy", "none", "random"]))
    dims, legacy = None, None
    if how == "shape":
        dims = [1] * draw(st.integers(0, 3)) + [count]
    elif how == "legacy":
        legacy = [1, 1, 1, count][draw(st.integers(0, 3)):]
    elif how == "random":
        dims = draw(st.one_of(st.lists(INT64, max_size=5),
                              st.integers(31, 34).map(lambda n: [1] * n)))
        legacy = draw(st.lists(INT64, max_size=4))
    fields = [Field(number, 0, value) for number, value in zip((1, 2, 3, 4), legacy or [])]
    if dims is not None:  # BlobShape: dims packed, or one per field
        packed = b"".join(varint(d % (1 << 64)) for d in dims)
        fields.append(Field(7, 2, [Field(1, 2, packed)] if draw(st.booleans())
                            else [Field(1, 0, d) for d in dims]))
    number = draw(st.sampled_from([5, 8]))
    values = fuzz_values(count, np.random.default_rng(count)).astype(
        "<f4" if number == 5 else "<f8")
    if draw(st.booleans()):  # packed
        fields.append(Field(number, 2, values.tobytes()))
    else:  # one value per field, as proto2 writes repeated floats
        fields += [Field(number, 5 if number == 5 else 1, v.tobytes()) for v in values]
    return fields


NAMES = ["conv1_1", "conv5_3", "fc6", "fc7", "fc8", "score_fr", "upscore2", "upscore8",
         "scale_pool4", "relu1", "", "\u00e9\n", "x" * 200]


@st.composite
def layers(draw):
    legacy = draw(st.booleans())
    name = draw(st.sampled_from(NAMES)).encode()
    if legacy:  # V1LayerParameter: name 4, type 5 (an enum), blobs 6
        ltype = draw(st.sampled_from([4, 14, 39, 0, 1 << 40]))
        fields = [Field(4, 2, name), Field(5, 0, ltype)]
    else:  # LayerParameter: name 1, type 2 (a string), blobs 7
        ltype = draw(st.sampled_from(["Convolution", "InnerProduct", "Deconvolution", "Scale",
                                      "ReLU", ""]))
        fields = [Field(1, 2, name), Field(2, 2, ltype.encode())]
    fields += [Field(6 if legacy else 7, 2, blob) for blob in draw(st.lists(blobs(), max_size=3))]
    if draw(st.booleans()):  # a field the reader does not know, to be skipped
        fields.append(Field(draw(st.integers(8, 1 << 29)), 2, draw(st.binary(max_size=12))))
    return Field(2 if legacy else 100, 2, fields)


LIES = st.tuples(st.integers(0, 10**6), st.sampled_from(["wire", "length", "varint"]),
                 st.integers(0, 7), st.sampled_from([-1, 1, 4, 1 << 20, 1 << 62]),
                 st.sampled_from(["padded", "eleven-bytes", "overflow"]))


@st.composite
def nets(draw):
    net = Field(0, 2, [Field(1, 2, b"fuzz")] + draw(st.lists(layers(), min_size=1, max_size=4)))
    fields = list(net.walk())[1:]
    for index, kind, wire, delta, encoding in draw(st.lists(LIES, max_size=3)):
        target = fields[index % len(fields)]
        if kind == "wire":
            target.tag_wire = wire
        elif kind == "length":
            target.length_delta = delta
        else:
            target.encoding = encoding
    return b"".join(f.encode() for f in net.payload)


def read_blobs(path):
    """Every blob the file holds, keyed ``layer/index`` (what the state dict is made from)."""
    return {f"{name}/{i}": blob for name, _, blobs in read_caffemodel(path)
            for i, blob in enumerate(blobs)}


@settings(max_examples=300, **FUZZ)
@given(data=nets())
def test_crafted(files, data):
    path = files / "crafted.caffemodel"
    path.write_bytes(data)
    blobs_read = read_or_refuse(read_blobs, path)
    if blobs_read is not None:
        assert_finite_arrays(blobs_read)
        fuzz_case(files, "crafted.caffemodel", data)  # and on to the state dict

"""Fuzzing the ``.safetensors`` reader: truncations, bit flips and crafted headers (JSON
values, dtypes, shapes, offsets, header lengths), every case through
:func:`fuzz_util.read_or_refuse`, on the reader alone and on to the renamed state dict that
``convert`` makes of it.

A case ends either in a WeightFileError naming the file, or in finite arrays (the weights
are :func:`weights_testutil.fuzz_values`, which a few flipped bits cannot make inf or NaN).
"""
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

safetensors_numpy = pytest.importorskip("safetensors.numpy")  # the reference writer

from fuzz_util import assert_finite_arrays, bit_flips, flip_bits, read_or_refuse  # noqa: E402
from minifcn.weights.naming import pytorch_state_dict  # noqa: E402
from minifcn.weights.safetensors_io import DTYPES, read_safetensors  # noqa: E402
from weights_testutil import fuzz_values  # noqa: E402

FUZZ = dict(deadline=None, derandomize=True,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def small_tensors(seed=0):
    """A few torchvision-named tensors: float32, float16 (the values underflow to zeros,
    which stay finite too) and an int64 one."""
    rng = np.random.default_rng(seed)
    return {"features.0.weight": fuzz_values((2, 3, 3, 3), rng),
            "features.0.bias": fuzz_values(2, rng),
            "features.28.weight": fuzz_values((2, 2, 3, 3), rng).astype(np.float16),
            "features.28.bias": fuzz_values(2, rng),
            "classifier.0.weight": fuzz_values((3, 2 * 49), rng),
            "classifier.0.bias": np.arange(3, dtype=np.int64)}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_safetensors")
    safetensors_numpy.save_file(small_tensors(), str(root / "small.safetensors"))
    return root  # (not the bytes: hypothesis prints the arguments of a failing case)


def split(data):
    """``(header dict, data section)`` of a valid file."""
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + length]), data[8 + length:]


def fuzz_case(root, data):
    """Read ``data`` as a file: the tensors, then the state dict made of them."""
    path = root / "case.safetensors"
    path.write_bytes(bytes(data))
    tensors = read_or_refuse(read_safetensors, path)
    if tensors is None:
        return None
    assert_finite_arrays(real_parts(tensors))
    arrays = read_or_refuse(lambda p: pytorch_state_dict(read_safetensors(p), p.name)[0], path)
    if arrays is not None:
        assert_finite_arrays(real_parts(arrays))
    return tensors


def real_parts(arrays):
    """Complex (C64) tensors as their real and imaginary parts: the reader returns them as
    the file holds them, and convert refuses them as weights, naming the key."""
    out = {}
    for key, value in arrays.items():
        if value.dtype.kind == "c":
            out[f"{key}.real"], out[f"{key}.imag"] = value.real, value.imag
        else:
            out[key] = value
    return out


@settings(max_examples=100, **FUZZ)
@given(keep=st.floats(0, 1, exclude_max=True))
def test_truncated(files, keep):
    data = (files / "small.safetensors").read_bytes()
    # the tensors must cover the data section to its end, so any cut is refused
    assert fuzz_case(files, data[: int(len(data) * keep)]) is None


@settings(max_examples=400, **FUZZ)
@given(flips=bit_flips(), in_header=st.booleans())
def test_bit_flips(files, flips, in_header):
    data = (files / "small.safetensors").read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    # half the cases in the 8 + header bytes, where lies are made
    fuzz_case(files, flip_bits(data, flips, end=header_end if in_header else None))


# Crafted headers: the valid header with one entry's dtype, shape or offsets (or the whole
# entry, or a top-level value) replaced, and possibly a header length that lies.

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8)
SIZES = st.one_of(st.integers(-2, 400), st.sampled_from([1 << 31, 1 << 32, 1 << 62, 1 << 63,
                                                         (1 << 64) - 1, 1 << 64]))
VALUES = {
    "dtype": st.sampled_from([*DTYPES, "BOOL", "C64", "F8_E4M3", "f32", "", "F32 "]) | JSON,
    "shape": st.lists(SIZES, max_size=4) | JSON,
    "data_offsets": st.lists(SIZES, min_size=2, max_size=2) | st.lists(SIZES, max_size=3)
    | JSON,
}


@st.composite
def headers(draw, header):
    header = json.loads(json.dumps(header))  # a copy to alter
    name = draw(st.sampled_from(sorted(header)))
    what = draw(st.sampled_from(["dtype", "shape", "data_offsets", "entry", "extra-key",
                                 "drop-key", "extra-tensor", "metadata"]))
    if what in VALUES:
        header[name][what] = draw(VALUES[what])
    elif what == "entry":
        header[name] = draw(JSON)
    elif what == "extra-key":
        header[name][draw(st.text(max_size=4))] = draw(JSON)
    elif what == "drop-key":
        del header[name][draw(st.sampled_from(["dtype", "shape", "data_offsets"]))]
    elif what == "extra-tensor":
        header[draw(st.text(max_size=6))] = {key: draw(VALUES[key]) for key in VALUES}
    else:
        header["__metadata__"] = draw(JSON)
    return header


@settings(max_examples=300, **FUZZ)
@given(data=st.data(),
       length_lie=st.sampled_from([0] * 6 + [-1, 1, 7, 1 << 27, 1 << 63]),
       padding=st.sampled_from([b"", b"  ", b"\x00", b"\xff"]))
def test_crafted_header(files, data, length_lie, padding):
    header, section = split((files / "small.safetensors").read_bytes())
    raw = json.dumps(data.draw(headers(header))).encode() + padding
    length = max(0, len(raw) + length_lie) % (1 << 64)
    fuzz_case(files, length.to_bytes(8, "little") + raw + section)

"""Fuzzing model .npz files: whatever the bytes, load_model refuses the file the project's way
(a MinifcnError naming it, within the time and allocation bound of fuzz_util) or returns a
model of finite weights.

Cases start from a small valid FCN-8s file, stored and deflated, and damage it: truncation,
bit flips anywhere, bit flips in the .npy headers, zip size and offset fields set to crafted
values, .npy members replaced by crafted headers over crafted data (with valid CRCs, so the
reader's own checks are what stops them), and crafted metadata records.
"""
import io
import json
import struct
import zipfile

import numpy as np
import pytest
from fuzz_util import assert_finite_arrays, bit_flips, flip_bits, read_or_refuse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minifcn.models import FCN8s, load_model, save_model

SMALL = dict(num_classes=3, width=1 / 64)  # a 150 kB file of 40 arrays
STATS = {}  # test name -> [cases, refused, loaded]; printed at the end (pytest -s shows it)


def fuzz(cases):
    """Fixed, reproducible runs: the same ``cases`` examples on every machine, in CI time."""
    return settings(max_examples=cases, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz_npz")
    model = FCN8s(**SMALL, seed=3)
    stored = save_model(model, folder / "stored.npz").read_bytes()
    deflated = folder / "deflated.npz"
    with zipfile.ZipFile(io.BytesIO(stored)) as src, \
            zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    yield {"stored": stored, "deflated": deflated.read_bytes(), "case": folder / "case.npz",
           "model": model, "arrays": model.state_dict(),
           "meta": {"minifcn_weights": 1, **model.metadata()}}
    for test, (cases, refused, loaded) in STATS.items():
        print(f"fuzz npz, {test}: {cases} cases, {refused} refused, {loaded} loaded")


def check(files, data, test):
    """Write ``data`` as the case file, load it, and count how it ended."""
    path = files["case"]
    path.write_bytes(data)
    model = read_or_refuse(load_model, path)
    counts = STATS.setdefault(test, [0, 0, 0])
    counts[0] += 1
    counts[1 if model is None else 2] += 1
    if model is not None:
        assert_finite_arrays(model.state_dict(), f"{path.name}: ")
        own = files["model"].state_dict()
        assert {k: v.shape for k, v in model.state_dict().items()} == \
               {k: v.shape for k, v in own.items()}


base = st.sampled_from(["stored", "deflated"])


@fuzz(150)
@given(which=base, cut=st.floats(0, 1, exclude_max=True))
def test_truncated(files, which, cut):
    data = files[which]
    check(files, data[:int(cut * len(data))], "truncated")


@fuzz(150)
@given(which=base, flips=bit_flips(max_size=8))
def test_bit_flips_anywhere(files, which, flips):
    check(files, flip_bits(files[which], flips), "bit flips anywhere")


def npy_header_spans(data):
    """(start, end) of every .npy magic + header in a stored archive."""
    spans, start = [], data.find(b"\x93NUMPY")
    while start >= 0:
        length = struct.unpack("<H", data[start + 8:start + 10])[0]
        spans.append((start, start + 10 + length))
        start = data.find(b"\x93NUMPY", start + 1)
    return spans


@fuzz(100)
@given(member=st.integers(0, 100), flips=bit_flips())
def test_bit_flips_in_npy_headers(files, member, flips):
    spans = npy_header_spans(files["stored"])
    start, end = spans[member % len(spans)]
    check(files, flip_bits(files["stored"], flips, start, end), "bit flips in .npy headers")


def zip_fields(data):
    """Offsets and sizes of the zip's size, count and offset fields (local headers, central
    directory, end records, zip64 extras)."""
    fields = []
    for signature, layout in ((b"PK\x03\x04", [(18, 4), (22, 4), (26, 2), (28, 2)]),
                              (b"PK\x01\x02", [(20, 4), (24, 4), (28, 2), (30, 2), (42, 4)]),
                              (b"PK\x05\x06", [(8, 2), (10, 2), (12, 4), (16, 4)]),
                              (b"PK\x06\x06", [(24, 8), (32, 8), (40, 8), (48, 8)]),
                              (b"\x01\x00\x10\x00", [(4, 8), (12, 8)])):
        start = data.find(signature)
        while start >= 0:
            fields += [(start + offset, size) for offset, size in layout
                       if start + offset + size <= len(data)]
            start = data.find(signature, start + 1)
    return fields


@fuzz(100)
@given(which=base, pick=st.integers(0, 10 ** 6),
       value=st.one_of(st.integers(0, 2 ** 64 - 1), st.sampled_from([0, 1, 2 ** 31, 2 ** 32 - 1])))
def test_crafted_zip_size_fields(files, which, pick, value):
    data = bytearray(files[which])
    fields = zip_fields(data)
    offset, size = fields[pick % len(fields)]
    data[offset:offset + size] = (value % 2 ** (8 * size)).to_bytes(size, "little")
    check(files, bytes(data), "crafted zip size fields")


DESCRS = ["<f4", ">f4", "<f8", "<f2", "<c8", "|b1", "<i8", "<U3", "|S2", "|O", "|V8", "<M8[D]",
          [("a", "<f4"), ("b", "<i4")], [("x", "<f4", (2,))], "<U0", "<f16"]
dims = st.one_of(st.integers(0, 70), st.integers(-3, 2 ** 62), st.sampled_from([2 ** 31, 2 ** 40]))


def npy_member(descr, shape, fortran, payload):
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": fortran,
                                               "shape": shape})
    return out.getvalue() + payload


@fuzz(80)
@given(which=base, member=st.integers(0, 100), descr=st.sampled_from(DESCRS),
       shape=st.lists(dims, max_size=4).map(tuple), fortran=st.booleans(),
       payload=st.one_of(st.binary(max_size=300), st.sampled_from([b"\x00" * 4096])),
       exact=st.booleans())
def test_crafted_npy_members(files, which, member, descr, shape, fortran, payload, exact):
    """A member's header and data replaced, the zip around them valid (CRCs right)."""
    with zipfile.ZipFile(io.BytesIO(files[which])) as src:
        infos = src.infolist()
        target = infos[member % len(infos)]
        original = np.lib.format.read_array(src.open(target), allow_pickle=False)
        if exact and target.filename != "__meta__.npy":  # the right header over made-up data
            descr, shape = original.dtype.str, original.shape
            payload = (payload * (original.nbytes // max(1, len(payload)) + 1))[:original.nbytes]
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", target.compress_type) as dst:
            for info in infos:
                crafted = info is target
                data = npy_member(descr, shape, fortran, payload) if crafted else src.read(info)
                dst.writestr(info.filename, data)
    check(files, out.getvalue(), "crafted .npy members")


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=4),
    max_leaves=10)
FIELDS = ["kind", "num_classes", "width", "pad", "dropout", "learn_upsampling", "preprocessing"]
near = {"kind": st.sampled_from(["fcn8s", "fcn16s", "fcn32s", "fcn8s-atonce", "vgg16"]),
        "num_classes": st.sampled_from([1, 3, 4, 2 ** 40, -3]),
        "width": st.sampled_from([1 / 64, 1 / 32, 1e6, 1e-300, 0.0]),
        "pad": st.sampled_from([0, 68, 69, 81, 100, 512, 513, 10 ** 12]),
        "dropout": st.sampled_from([0.0, 0.5, 0.999, 1.0]),
        "learn_upsampling": st.booleans(),
        "preprocessing": st.fixed_dictionaries({
            "channel_order": st.sampled_from(["RGB", "BGR", "XYZ"]),
            "scale": st.floats(allow_nan=True), "mean": st.lists(st.floats(), max_size=4),
            "std": st.none() | st.lists(st.floats(), max_size=4)})}


@fuzz(80)
@given(changes=st.lists(st.sampled_from(FIELDS), max_size=4, unique=True).flatmap(
           lambda names: st.fixed_dictionaries({n: near[n] | json_values for n in names})),
       drop=st.lists(st.sampled_from(FIELDS), max_size=2))
def test_crafted_metadata(files, changes, drop):
    meta = {**files["meta"], **changes}
    for name in drop:
        meta.pop(name, None)
    out = io.BytesIO()
    np.savez(out, **files["arrays"], __meta__=np.array(json.dumps(meta)))
    check(files, out.getvalue(), "crafted metadata")


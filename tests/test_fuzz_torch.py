"""Crafted and fuzzed ``.pth`` files: the torch reader refuses what the file cannot back.

The files are written here opcode by opcode in torch's two real formats (a zip of
``archive/data.pkl`` and raw storages; the legacy stream of five pickles and counted
storages), so that every number a tensor's metadata holds can be set to anything: sizes,
strides, offsets, a storage's declared element count, the legacy count before its bytes.
``test_writer_matches_torch`` checks the writer against ``torch.load`` where torch is installed;
nothing else here needs torch.

Every storage is filled with a known pattern, so a test can tell where each value it got
came from: a value outside the pattern was read from outside the file.
"""
from __future__ import annotations

import io
import itertools
import pickle
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fuzz_util import assert_finite_arrays, read_or_refuse
from minifcn.weights import WeightFileError, load_torch_file

TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # torch/serialization.py: MAGIC_NUMBER
TORCH_PROTOCOL = 1001                 # torch/serialization.py: PROTOCOL_VERSION
STORAGE_CODES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
                 "LongStorage": "<i8", "IntStorage": "<i4", "ByteStorage": "u1"}


# --- a torch file writer that writes whatever numbers it is given -----------------------

@dataclass
class Storage:
    """A storage as the file declares it: ``numel`` in the pickle, ``count`` before the
    legacy bytes (both default to what ``values`` really holds)."""
    key: str
    values: np.ndarray
    kind: str = "FloatStorage"
    numel: int | None = None
    count: int | None = None

    @property
    def data(self):
        return np.asarray(self.values, STORAGE_CODES[self.kind]).tobytes()

    @property
    def declared(self):
        return len(self.values) if self.numel is None else self.numel


@dataclass
class Tensor:
    """A tensor's metadata as pickled: storage key, offset, size, stride (in elements)."""
    storage: str
    offset: int
    size: tuple
    stride: tuple
    view: tuple | None = None  # legacy storage view: (offset, numel) into the storage


def _int(n):
    """LONG1: any integer, in the fewest bytes that hold it with its sign (2^62, -2^40...)."""
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _str(text):
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _global(module, name):
    return b"c" + f"{module}\n{name}\n".encode()


def _tuple(items):
    return b"(" + b"".join(items) + b"t"


def state_dict_pickle(tensors: dict, storages: dict, legacy: bool) -> bytes:
    """Protocol-2 pickle of ``{name: tensor}`` as torch.save writes it (persistent-id storages)."""
    empty_ordered_dict = _global("collections", "OrderedDict") + b")R"
    out = [b"\x80\x02", empty_ordered_dict, b"("]
    for name, t in tensors.items():
        s = storages[t.storage]
        pid = [_str("storage"), _global("torch", s.kind), _str(s.key), _str("cpu"),
               _int(s.declared)]
        if legacy:  # sixth field: a view of the storage, or None
            view = t.view and _tuple([_str(s.key + "v"), _int(t.view[0]), _int(t.view[1])])
            pid.append(view or b"N")
        args = [_tuple(pid) + b"Q", _int(t.offset), _tuple(map(_int, t.size)),
                _tuple(map(_int, t.stride)), b"\x89", empty_ordered_dict]  # requires_grad, hooks
        out += [_str(name), _global("torch._utils", "_rebuild_tensor_v2"), _tuple(args), b"R"]
    return b"".join(out + [b"u."])


def zip_pth(pkl: bytes, storages: list) -> bytes:
    """The zip format: archive/data.pkl, byteorder, version, and data/<key> per storage."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a test may write a name twice
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("archive/data.pkl", pkl)
            zf.writestr("archive/byteorder", "little")
            for s in storages:
                zf.writestr(f"archive/data/{s.key}", s.data)
            zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def legacy_pth(pkl: bytes, storages: list) -> bytes:
    """The legacy format: magic, protocol, system info, the dict, the storage keys, then each
    storage as an 8-byte little-endian element count and its bytes."""
    info = {"protocol_version": TORCH_PROTOCOL, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4}}
    head = [pickle.dumps(x, protocol=2) for x in (TORCH_MAGIC, TORCH_PROTOCOL, info)]
    head += [pkl, pickle.dumps([s.key for s in storages], protocol=2)]
    counts = [s.declared if s.count is None else s.count for s in storages]
    # 8 bytes hold the low 64 bits of a count too large for them (a pickle's numel can be).
    body = [(n % 2**64).to_bytes(8, "little") + s.data for n, s in zip(counts, storages)]
    return b"".join(head + body)


def pth_bytes(tensors: dict, storages: list, fmt: str) -> bytes:
    pkl = state_dict_pickle(tensors, {s.key: s for s in storages}, legacy=fmt == "legacy")
    return (zip_pth if fmt == "zip" else legacy_pth)(pkl, storages)


def write_pth(path, tensors, storages, fmt):
    path.write_bytes(pth_bytes(tensors, storages, fmt))
    return path


def expected_values(values, t: Tensor):
    """The tensor read by the definition, one element at a time (the naive twin)."""
    base = t.offset + (t.view[0] if t.view else 0)
    out = np.empty(t.size, values.dtype)
    for index in itertools.product(*map(range, t.size)):
        at = base + sum(i * s for i, s in zip(index, t.stride))
        assert 0 <= at < len(values), f"element {index} is not in the storage"
        out[index] = values[at]
    return out


def pattern(n, start=1000.0):
    """Storage values that say where they came from: 1000, 1001, ... (exact in float32)."""
    return np.arange(start, start + n, dtype=np.float32)


FORMATS = ["zip", "legacy"]


def test_writer_matches_torch(tmp_path):
    """The writer's files are real torch files: torch reads the values the definition gives."""
    torch = pytest.importorskip("torch")
    storages = [Storage("0", pattern(24)), Storage("1", np.arange(5), "LongStorage")]
    tensors = {"w": Tensor("0", 2, (2, 3, 2), (9, 1, 3)), "b": Tensor("0", 5, (4,), (4,)),
               "n": Tensor("1", 1, (2, 2), (0, 1))}
    for fmt in FORMATS:
        path = write_pth(tmp_path / f"w_{fmt}.pth", tensors, storages, fmt)
        theirs = torch.load(path, weights_only=True)
        ours = load_torch_file(path)
        for key, t in tensors.items():
            values = storages[int(t.storage)].values
            np.testing.assert_array_equal(theirs[key].numpy(), expected_values(values, t))
            np.testing.assert_array_equal(ours[key], expected_values(values, t))


# --- crafted files: each number the file declares, set to what the file cannot back --------

BIAS = Storage("0", pattern(4))  # a 4-element bias: every test below reads it wrongly

OUTSIDE_THE_STORAGE = {
    # name: (offset, size, stride), what the refusal says; each reaches outside 0..3
    "negative stride": (0, (4,), (-1,), "reads elements -3 .. 0"),
    "stride -2^40": (0, (4,), (-2**40,), f"reads elements {-3 * 2**40} .. 0"),
    "stride 2^62 (wraps to 0 in int64)": (0, (5,), (2**62,), f"reads elements 0 .. {2**64}"),
    "strides 2^62 and -2^62 (cancel)": (0, (2, 2), (2**62, -2**62),
                                        f"reads elements {-2**62} .. {2**62}"),
    "stride 0 then past the end": (3, (2, 2), (0, 1), "reads elements 3 .. 4"),
    "offset past the end": (4, (1,), (1,), "reads elements 4 .. 4"),
    "negative offset": (-1, (4,), (1,), "storage offset is -1"),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", OUTSIDE_THE_STORAGE)
def test_tensor_outside_its_storage_is_refused(case, fmt, tmp_path):
    offset, size, stride, says = OUTSIDE_THE_STORAGE[case]
    path = write_pth(tmp_path / "crafted.pth", {"conv1.bias": Tensor("0", offset, size, stride)},
                     [BIAS], fmt)
    with pytest.raises(WeightFileError, match=r"^crafted\.pth: tensor conv1\.bias ") as refusal:
        load_torch_file(path)
    assert says in str(refusal.value)
    if "reads" in says:
        assert "outside its storage of 4 elements" in str(refusal.value)
    # The same file, read the fuzz tests' way: one refusal naming the file, nothing allocated.
    assert read_or_refuse(load_torch_file, path) is None


INSIDE_THE_STORAGE = {
    "reversed": (3, (4,), (-1,)),
    "broadcast": (1, (3, 2), (0, 2)),
    "size-1 dim with a wild stride": (0, (1, 4), (-2**62, 1)),
    "size-0 dim with a wild stride": (99, (0, 4), (2**62, -7)),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", INSIDE_THE_STORAGE)
def test_any_stride_inside_the_storage_reads_by_the_definition(case, fmt, tmp_path):
    t = Tensor("0", *INSIDE_THE_STORAGE[case])
    got = load_torch_file(write_pth(tmp_path / "ok.pth", {"b": t}, [BIAS], fmt))["b"]
    np.testing.assert_array_equal(got, expected_values(BIAS.values, t))
    assert got.shape == t.size and got.dtype == np.float32


def test_legacy_view_bounds_its_tensors(tmp_path):
    # A legacy storage view (offset 2, 2 elements) of a 6-element storage: the tensor may
    # read the view's two elements and nothing beyond, though the storage goes on.
    storage = Storage("0", pattern(6))
    inside = Tensor("0", 0, (2,), (1,), view=(2, 2))
    got = load_torch_file(write_pth(tmp_path / "view.pth", {"b": inside}, [storage], "legacy"))
    np.testing.assert_array_equal(got["b"], [1002, 1003])
    past_view = Tensor("0", 1, (2,), (1,), view=(2, 2))
    path = write_pth(tmp_path / "view.pth", {"b": past_view}, [storage], "legacy")
    with pytest.raises(WeightFileError, match=r"view\.pth: tensor b .*storage of 2 elements"):
        load_torch_file(path)
    for view in [(5, 2), (-1, 2), (0, 7)]:  # views that leave the storage itself
        bad = Tensor("0", 0, (1,), (1,), view=view)
        path = write_pth(tmp_path / "view.pth", {"b": bad}, [storage], "legacy")
        with pytest.raises(WeightFileError, match=r"view\.pth: storage '0' .*view"):
            load_torch_file(path)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("numel", [5, 2**40, 2**62, -1])
def test_storage_larger_than_the_file_holds_is_refused(numel, fmt, tmp_path):
    # The pickle says the storage has `numel` elements; the file holds 4.
    storage = Storage("0", pattern(4), numel=numel)
    path = write_pth(tmp_path / "big.pth", {"b": Tensor("0", 0, (4,), (1,))}, [storage], fmt)
    with pytest.raises(WeightFileError, match=r"big\.pth: storage '0'"):
        load_torch_file(path)
    assert read_or_refuse(load_torch_file, path) is None


@pytest.mark.parametrize("count", [5, 2**28, 2**40, 2**62, -1])
def test_legacy_count_larger_than_the_file_is_refused(count, tmp_path):
    # The 8-byte count before the storage's bytes says `count` elements; 16 bytes follow.
    storage = Storage("0", pattern(4), count=count)
    path = write_pth(tmp_path / "count.pth", {"b": Tensor("0", 0, (4,), (1,))}, [storage],
                     "legacy")
    with pytest.raises(WeightFileError, match=r"count\.pth: storage '0' .*elements"):
        load_torch_file(path)
    assert read_or_refuse(load_torch_file, path) is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_storage_written_twice_is_refused(fmt, tmp_path):
    # Two copies of storage '0' (a zip member of that name twice; the legacy key list
    # naming it twice): which one the tensor reads would be the reader's guess.
    pkl = state_dict_pickle({"b": Tensor("0", 0, (4,), (1,))}, {"0": BIAS}, fmt == "legacy")
    path = tmp_path / "twice.pth"
    path.write_bytes((zip_pth if fmt == "zip" else legacy_pth)(pkl, [BIAS, BIAS]))
    with pytest.raises(WeightFileError, match=r"^twice\.pth: .*0.* twice"):
        load_torch_file(path)


def deflated_zeros_zip(mib, declared=None):
    """A zip whose one member, archive/data/0, is ``mib`` MiB of zeros deflated (~1000:1),
    its headers declaring ``declared`` bytes (default: the truth).

    The deflate stream repeats one fully flushed block (1 MiB of zeros, 1 kB deflated), so
    nothing is compressed here: the zip is written with a stored placeholder of the same
    length, then its data and header fields (method, CRC, sizes) are put in place.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate, as zip members are
    zeros = bytes(1 << 20)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    stream = block * mib + compressor.flush()
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    name = b"archive/data/0"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(name.decode(), bytes(len(stream)))
    data = bytearray(buf.getvalue())
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    fields = struct.pack("<HxxxxIII", zipfile.ZIP_DEFLATED, crc, len(stream),
                         (mib << 20) if declared is None else declared)
    for at in (local + 8, central + 10):  # method, (time, date), CRC, both sizes
        data[at:at + 18] = fields[:2] + data[at + 2:at + 6] + fields[6:]
    body = local + 30 + len(name)
    data[body:body + len(stream)] = stream
    return bytes(data)


def test_zip_bomb_is_refused_before_inflating(tmp_path):
    # A 256 MiB storage of zeros deflates to ~250 kB: the pickle and the member's header
    # both say 256 MiB, which the file could only hold by inflating 1000-fold.
    numel = 1 << 26
    storage = Storage("0", pattern(1), numel=numel)
    pkl = state_dict_pickle({"b": Tensor("0", 0, (4,), (1,))}, {"0": storage}, legacy=False)
    path = tmp_path / "bomb.pth"
    path.write_bytes(deflated_zeros_zip(numel * 4 >> 20))
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/version", "3\n")
    assert path.stat().st_size < 1 << 20
    with pytest.raises(WeightFileError, match=r"bomb\.pth: .*256 MiB"):
        load_torch_file(path)
    assert read_or_refuse(load_torch_file, path) is None


def test_zip_member_that_lies_about_its_size_is_read_with_a_bound(tmp_path):
    # The header says 16 bytes (what a 4-float storage needs); the deflate stream holds
    # 256 MiB. The reader stops at 16 bytes, and the CRC then gives the lie away.
    path = tmp_path / "liar.pth"
    path.write_bytes(deflated_zeros_zip(256, declared=16))
    pkl = state_dict_pickle({"b": Tensor("0", 0, (4,), (1,))}, {"0": Storage("0", pattern(4))},
                            legacy=False)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("archive/data.pkl", pkl)
    with pytest.raises(WeightFileError, match=r"liar\.pth: .*CRC"):
        load_torch_file(path)
    assert read_or_refuse(load_torch_file, path) is None


REBUILD = _global("torch._utils", "_rebuild_tensor_v2")


def storage_pid(numel):
    return _tuple([_str("storage"), _global("torch", "FloatStorage"), _str("0"), _str("cpu"),
                   _int(numel)]) + b"Q"


def three_element_tensor(pid):
    return REBUILD + _tuple([pid, _int(0), _tuple([_int(3)]), _tuple([_int(1)])]) + b"R"


# Pickles that make CPython's unpickler allocate what the file does not hold, or fail with
# an exception of its own; each is the whole state-dict pickle of a file.
HOSTILE_PICKLES = {
    "BINBYTES8 declaring 1 GiB": b"\x80\x04\x8e" + struct.pack("<Q", 1 << 30) + b"abc.",
    "BYTEARRAY8 declaring 1 GiB": b"\x80\x05\x96" + struct.pack("<Q", 1 << 30) + b"abc.",
    "memo index 2^27 (a 2 GB memo)": b"\x80\x02Nr" + struct.pack("<I", 1 << 27) + b".",
    "memo index 2^32-1": b"\x80\x02Nr\xff\xff\xff\xff.",
    "invalid UTF-8": b"\x80\x02X\x02\x00\x00\x00\xff\xfe.",
    "a string cut short": b"\x80\x02X\x10\x00\x00\x00abc",
    "no STOP": b"\x80\x02}",
    "unknown opcode": b"\x80\x02\xff.",
    "protocol 9": b"\x80\x09N.",
    "lists nested 20000 deep": b"\x80\x02" + b"(" * 20000 + b"l" * 20000 + b".",
    "rebuild with two arguments": b"\x80\x02}(" + _str("b") + REBUILD
                                  + _tuple([storage_pid(4), _int(0)]) + b"Ru.",
    "a storage type called": b"\x80\x02" + _global("torch", "FloatStorage") + b")R.",
    "persistent id of three fields": b"\x80\x02" + _tuple([_str("storage")] * 3) + b"Q.",
    "a tensor under an int key": b"\x80\x02}(K\x07" + three_element_tensor(storage_pid(4))
                                 + b"u.",
    "one storage declared with two sizes": b"\x80\x02}(" + _str("a")
                                           + three_element_tensor(storage_pid(4)) + _str("b")
                                           + three_element_tensor(storage_pid(3)) + b"u.",
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", HOSTILE_PICKLES)
def test_hostile_pickle_is_refused_within_bounds(case, fmt, tmp_path):
    blob = (zip_pth if fmt == "zip" else legacy_pth)(HOSTILE_PICKLES[case], [BIAS])
    path = tmp_path / "hostile.pth"
    path.write_bytes(blob)
    assert read_or_refuse(load_torch_file, path) is None
    with pytest.raises(WeightFileError, match=r"^hostile\.pth: "):
        load_torch_file(path)


# --- fuzzing: real files damaged at random, and metadata drawn at random -------------------

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])

# A small state dict over four storages of three types; every value is distinct.
BASE_STORAGES = [Storage("0", pattern(40)), Storage("1", pattern(12, 2000.0)),
                 Storage("2", np.arange(3000, 3006), "LongStorage"),
                 Storage("3", np.arange(1, 6) / 8, "HalfStorage")]
BASE_TENSORS = {
    "features.0.weight": Tensor("0", 4, (2, 3, 2, 2), (12, 4, 2, 1)),
    "features.0.bias": Tensor("1", 2, (3,), (1,)),
    "transposed": Tensor("0", 0, (4, 10), (1, 4)),
    "counts": Tensor("2", 0, (2, 3), (3, 1)),
    "half": Tensor("3", 0, (5,), (1,)),
}





def assert_values_from_file(arrays, blob):
    """Every element's bytes occur somewhere in the file, in one byte order or the other (a
    flipped bit can make a file big-endian): nothing came from outside the file."""
    windows = {}
    for key, array in arrays.items():
        size = array.dtype.itemsize
        if size not in windows:
            windows[size] = {blob[i:i + size] for i in range(len(blob) - size + 1)}
        raw = np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()
        for i in range(0, len(raw), size):
            value = raw[i:i + size]
            assert value in windows[size] or value[::-1] in windows[size], (
                f"{key}: a value from outside the file")


def outcome(result, path):
    """A short label of what the reader did, for hypothesis's statistics."""
    if result is not None:
        return "loaded"
    try:
        load_torch_file(path)
    except WeightFileError as exc:
        return "refused: " + " ".join(str(exc).split(": ", 1)[1].split()[:3])
    return "loaded on a second try"  # never: read_or_refuse just saw it refused


@pytest.mark.parametrize("fmt", FORMATS)
@FUZZ
@given(data=st.data())
def test_fuzz_truncated(fmt, data, tmp_path):
    blob = pth_bytes(BASE_TENSORS, BASE_STORAGES, fmt)
    cut = data.draw(st.integers(0, len(blob)), label="cut")
    path = tmp_path / "cut.pth"
    path.write_bytes(blob[:cut])
    result = read_or_refuse(load_torch_file, path)
    event(outcome(result, path))
    if result is not None:
        assert cut == len(blob), "a truncated file loaded"
        assert_values_from_file(result, blob)
        assert_finite_arrays(result)


@pytest.mark.parametrize("fmt", FORMATS)
@FUZZ
@given(data=st.data())
def test_fuzz_bit_flips(fmt, data, tmp_path):
    blob = bytearray(pth_bytes(BASE_TENSORS, BASE_STORAGES, fmt))
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        at = data.draw(st.integers(0, len(blob) - 1), label="byte")
        blob[at] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    path = tmp_path / "flipped.pth"
    path.write_bytes(blob)
    result = read_or_refuse(load_torch_file, path)
    event(outcome(result, path))
    if result is not None:
        assert_values_from_file(result, bytes(blob))  # flipped data bytes are the file's too


WILD = st.sampled_from([2**40, -2**40, 2**62, -2**62, 2**63 - 1, -2**63, 2**63, 2**64, -2**64])


def mostly(usual, unusual):
    """``usual`` three times in four, ``unusual`` otherwise."""
    return st.one_of(usual, usual, usual, unusual)


@st.composite
def crafted_tensor(draw, legacy):
    """One storage of up to 12 elements and a tensor over it, each number honest or not."""
    values = pattern(draw(st.integers(0, 12), label="elements"))
    ndim = draw(st.integers(0, 3), label="ndim")
    size = tuple(draw(st.integers(0, 4)) for _ in range(ndim))
    stride = tuple(draw(mostly(st.integers(-6, 6), WILD)) for _ in range(ndim))
    offset = draw(mostly(st.integers(-1, 12), WILD), label="offset")
    numel = draw(mostly(st.none(), st.integers(-2, 16) | WILD), label="numel")
    count = view = None
    if legacy:
        count = draw(mostly(st.none(), st.integers(-2, 16) | WILD), label="count")
        view = draw(mostly(st.none(), st.tuples(st.integers(-1, 8), st.integers(-1, 8))),
                    label="view")
    storage = Storage("0", values, numel=numel, count=count)
    return storage, Tensor("0", offset, size, stride, view)


def reads_inside(values, t: Tensor):
    """Whether every element of ``t`` is one of ``values``, by enumeration (the oracle)."""
    int64 = range(-2**63, 2**63)
    if not (0 <= t.offset < 2**63 and all(s in int64 for s in t.stride)):
        return False
    return all(0 <= t.offset + sum(i * s for i, s in zip(index, t.stride)) < len(values)
               for index in itertools.product(*map(range, t.size)))


@pytest.mark.parametrize("fmt", FORMATS)
@FUZZ
@given(data=st.data())
def test_fuzz_crafted_metadata(fmt, data, tmp_path):
    storage, tensor = data.draw(crafted_tensor(fmt == "legacy"))
    honest = Storage("1", pattern(6, 2000.0))  # a second storage after the crafted one
    tensors = {"x": tensor, "y": Tensor("1", 0, (6,), (1,))}
    path = write_pth(tmp_path / "crafted.pth", tensors, [storage, honest], fmt)
    result = read_or_refuse(load_torch_file, path)
    event(outcome(result, path))
    truthful = storage.numel is None and storage.count is None and tensor.view is None
    if truthful:
        assert (result is not None) == reads_inside(storage.values, tensor), "refused wrongly"
    if storage.declared > len(storage.values):
        assert result is None, "a storage larger than the file holds was read"
    if result is not None:
        assert_finite_arrays(result)
        np.testing.assert_array_equal(result["x"], expected_values(storage.values, tensor))
        np.testing.assert_array_equal(result["y"], honest.values)

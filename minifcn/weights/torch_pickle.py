"""Read a PyTorch ``.pth`` state dict into NumPy arrays without importing torch.

A ``.pth`` file is a Python pickle of the state dict, read by the restricted unpickler of
:mod:`.torch_unpickle` (nothing in the file is executed), plus the tensors' storages as raw
bytes. Two container formats exist:

* zip (torch >= 1.6): ``<archive>/data.pkl`` holds the pickled dict; each storage is a raw
  file ``<archive>/data/<key>``.
* legacy (before 1.6; torchvision's ``vgg16-397923af.pth``): one stream of pickles -- a magic
  number, a protocol version, a dict of system info, the object, then the list of storage
  keys -- followed by each storage as an 8-byte little-endian element count and raw bytes.

Nothing the file says is believed before it is checked against the file itself, and all of
it before a storage is read: the pickle is at most ``MAX_PICKLE_BYTES``; every storage's
element count must match the bytes behind it (its zip member; its legacy count and the bytes
left in the file); every tensor must lie inside its storage; the storages and the arrays
together may take at most ``MAX_INFLATION`` times the file's size.
"""
from __future__ import annotations

import math
import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import one_line
from ..npzio import check_zip_member
from .layout import WeightFileError, bfloat16_to_float32
from .torch_unpickle import (RestrictedUnpickler, TensorRef, UnsafePickleError,  # noqa: F401
                             pickle_end, printable, shown, state_dict_tensors)

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
ZIP_MAGIC = b"PK\x03\x04"  # torch tells its two formats apart by the first bytes, as here
# VGG16's data.pkl is 2 kB; the objects a pickle builds take up to ~50 times its size.
MAX_PICKLE_BYTES = 16 << 20
# torch stores storages uncompressed (1x) and deflated weights barely shrink, but a member
# of zeros inflates 1000-fold. The storages of a 16 MB file may take 256 MB, no more, and
# so may its arrays (larger than the storages only through views that repeat elements).
MAX_INFLATION = 16
# What the libraries raise on a damaged file (UnicodeDecodeError is a ValueError, zlib.error
# a corrupt deflate stream); each becomes one WeightFileError naming the file.
CORRUPT_FILE_ERRORS = (
    pickle.UnpicklingError, EOFError, zipfile.BadZipFile, zlib.error, struct.error, ValueError,
    TypeError, AttributeError, IndexError, KeyError, OverflowError, RecursionError,
    MemoryError, NotImplementedError, OSError,
)


def _mib(nbytes):
    return f"{nbytes} bytes ({nbytes / 2**20:.3g} MiB)"


def _check_allocation(storage_bytes, tensors, file_size, src):
    """Refuse storages, or arrays, that would take more than ``MAX_INFLATION`` x the file.

    Storages can be larger than the file only as deflated zip members; arrays only through
    views that repeat elements (stride 0, or tensors sharing one storage).
    """
    array_bytes = sum(math.prod(t.size) * t.storage.type.array_itemsize for t in tensors.values())
    for what, nbytes in (("its storages", storage_bytes), ("its tensors", array_bytes)):
        if nbytes > MAX_INFLATION * file_size:
            raise WeightFileError(f"{src}: {what} would take {_mib(nbytes)}, more than "
                                  f"{MAX_INFLATION} times the file's {_mib(file_size)}")


def _as_array(ref: TensorRef, raw: bytes, byteorder: str) -> np.ndarray:
    """Materialise one checked tensor from its storage's raw bytes (a copy, native order)."""
    stype = ref.storage.type
    dtype = stype.dtype.newbyteorder(byteorder)
    if 0 in ref.size:
        out = np.zeros(ref.size, dtype)
    else:
        # The elements the tensor may use (a legacy view starts `offset` elements in).
        usable = np.frombuffer(raw, dtype, count=ref.storage.numel,
                               offset=ref.storage.offset * dtype.itemsize)
        # A dimension of size 1 never steps: its stride (anything, to torch) is set to 0.
        strides = tuple(s * dtype.itemsize if n > 1 else 0 for n, s in zip(ref.size, ref.stride))
        # Unlike as_strided, np.ndarray checks that the view stays inside its buffer.
        out = np.ndarray(ref.size, dtype, buffer=usable, offset=ref.offset * dtype.itemsize,
                         strides=strides)
    if stype.name == "BFloat16Storage":  # bfloat16 is the top half of a float32
        out = bfloat16_to_float32(out)
    return np.array(out, dtype=out.dtype.newbyteorder("="))


def _zip_members(zf: zipfile.ZipFile, src):
    """``(members by name, folder of data.pkl)``, refusing what torch never writes."""
    names = zf.namelist()
    pickles = [n for n in names if n.rsplit("/", 1)[-1] == "data.pkl" and n.count("/") <= 1]
    if not pickles:
        raise WeightFileError(f"{src}: a zip archive without data.pkl, so not a torch "
                              "checkpoint (a .npz weight file needs no conversion)")
    if len(pickles) > 1:
        raise WeightFileError(f"{src}: {len(pickles)} data.pkl files in one archive "
                              f"({printable(pickles[0])}, {printable(pickles[1])}); expected one")
    prefix = pickles[0][: -len("data.pkl")]
    members = {}
    for info in zf.infolist():
        where = f"{src}: archive member {printable(info.filename)}"
        if info.filename in members:
            raise WeightFileError(f"{where} appears twice")
        if not info.filename.startswith(prefix):
            raise WeightFileError(f"{where} lies outside the archive folder {printable(prefix)}")
        check_zip_member(info, where, WeightFileError)
        members[info.filename] = info
    return members, prefix


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, src) -> bytes:
    """A member's bytes: as many as its header declares (checked by the caller), no more.

    zipfile stops at the declared size whatever the compressed data would inflate to, and
    checks the CRC once the last declared byte is read.
    """
    with zf.open(info) as member:
        data = member.read(info.file_size)
    if len(data) != info.file_size:
        raise WeightFileError(f"{src}: archive member {printable(info.filename)} ends after "
                              f"{len(data)} of its {info.file_size} bytes")
    return data


def _load_zip(path: Path, src, file_size):
    with zipfile.ZipFile(path) as zf:
        members, prefix = _zip_members(zf, src)
        pkl = members[prefix + "data.pkl"]
        if pkl.file_size > MAX_PICKLE_BYTES:
            raise WeightFileError(f"{src}: data.pkl is {_mib(pkl.file_size)}; a state dict's "
                                  f"pickle takes far less (at most {_mib(MAX_PICKLE_BYTES)})")
        data = _read_member(zf, pkl, src)
        unpickler = RestrictedUnpickler(data[:pickle_end(data, 0, src)], src)
        tensors = state_dict_tensors(unpickler.load(), src)
        byteorder = "<"
        if prefix + "byteorder" in members:
            info = members[prefix + "byteorder"]
            order = _read_member(zf, info, src).strip() if info.file_size <= 16 else b"?"
            if order not in (b"little", b"big"):
                raise WeightFileError(f"{src}: byteorder says {printable(str(order))}; "
                                      "expected little or big")
            byteorder = "<" if order == b"little" else ">"
        needed = {}
        for key in {t.storage.key for t in tensors.values()}:
            info = members.get(f"{prefix}data/{key}")
            if info is None:
                raise WeightFileError(f"{src}: storage data/{printable(key)} is missing from "
                                      "the archive")
            stype, numel = unpickler.storages[key]
            if info.file_size != numel * stype.dtype.itemsize:
                raise WeightFileError(
                    f"{src}: storage '{printable(key)}' of {numel} x {stype.name} needs "
                    f"{numel * stype.dtype.itemsize} bytes; its archive member holds "
                    f"{info.file_size}")
            needed[key] = info
        _check_allocation(sum(i.file_size for i in needed.values()), tensors, file_size, src)
        raws = {key: _read_member(zf, info, src) for key, info in needed.items()}
    return {k: _as_array(t, raws[t.storage.key], byteorder) for k, t in tensors.items()}


def _legacy_storage_spans(f, start, keys, declared, file_size, src):
    """``{key: (file offset, bytes)}`` of the storages that follow the pickles, in order:
    each an 8-byte little-endian element count, then its bytes. Nothing is read but counts."""
    if type(keys) is not list or not all(type(k) is str for k in keys):
        raise WeightFileError(f"{src}: the storage key list is {shown(keys)}; expected strings")
    spans, pos = {}, start
    for key in keys:
        where = f"{src}: storage '{printable(key)}'"
        if key in spans:
            raise WeightFileError(f"{where} is listed twice")
        if key not in declared:
            raise WeightFileError(f"{where} is listed but never used")
        stype, numel = declared[key]
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8:
            raise WeightFileError(f"{src}: truncated before storage '{printable(key)}'")
        (found,) = struct.unpack("<q", header)
        nbytes, left = found * stype.dtype.itemsize, file_size - pos - 8
        if not 0 <= nbytes <= left:
            raise WeightFileError(f"{where} declares {found} elements ({nbytes} bytes); "
                                  f"{left} bytes are left in the file")
        if found != numel:
            raise WeightFileError(f"{where} holds {found} elements; the pickle declared {numel}")
        spans[key] = (pos + 8, nbytes)
        pos += 8 + nbytes
    return spans


def _load_legacy(path: Path, src, file_size):
    with open(path, "rb") as f:
        head = f.read(min(file_size, MAX_PICKLE_BYTES))
        pos = 0

        def next_pickle():
            nonlocal pos
            try:
                end = pickle_end(head, pos, src)
            except ValueError:  # the opcodes ran out: a truncated file, or a pickle too long
                if len(head) < file_size:
                    raise WeightFileError(f"{src}: its pickles run past the first "
                                          f"{_mib(MAX_PICKLE_BYTES)}; a state dict's take far "
                                          "less") from None
                raise
            unpickler = RestrictedUnpickler(head[pos:end], src)
            pos = end
            return unpickler.load(), unpickler

        magic, _ = next_pickle()
        if type(magic) is not int or magic != LEGACY_MAGIC:
            raise WeightFileError(f"{src}: a pickle, but not a torch file (no torch magic number)")
        version, _ = next_pickle()
        if version != LEGACY_PROTOCOL:
            raise WeightFileError(
                f"{src}: torch legacy protocol {shown(version)}, expected {LEGACY_PROTOCOL}")
        sys_info, _ = next_pickle()
        if not isinstance(sys_info, dict):
            raise WeightFileError(f"{src}: system info is {shown(sys_info)}; expected a dict")
        byteorder = "<" if sys_info.get("little_endian", True) else ">"
        obj, unpickler = next_pickle()
        tensors = state_dict_tensors(obj, src)
        keys, _ = next_pickle()
        spans = _legacy_storage_spans(f, pos, keys, unpickler.storages, file_size, src)
        missing = {t.storage.key for t in tensors.values()} - set(spans)
        if missing:
            raise WeightFileError(f"{src}: storages {sorted(map(printable, missing))[:5]} are "
                                  "missing")
        _check_allocation(0, tensors, file_size, src)  # the spans lie inside the file
        raws = {}
        for key in {t.storage.key for t in tensors.values()}:
            f.seek(spans[key][0])
            raws[key] = f.read(spans[key][1])
            if len(raws[key]) != spans[key][1]:
                raise WeightFileError(f"{src}: storage '{printable(key)}' is truncated")
    return {k: _as_array(t, raws[t.storage.key], byteorder) for k, t in tensors.items()}


def load_torch_file(path) -> dict:
    """Read a torch state dict (zip or legacy format) into ``{key: numpy array}``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict of str -> numpy.ndarray
        Keys exactly as in the file (e.g. ``features.0.weight``), arrays in the file's dtype
        (bfloat16 as float32).

    Raises
    ------
    UnsafePickleError
        If the pickle names any global outside the allow-list (nothing is executed).
    WeightFileError
        If the file is truncated, corrupt, not a state dict, or declares tensors or storages
        that the file cannot back; the message names the file.
    """
    path = Path(path)
    src = path.name
    try:
        with open(path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            is_zip = f.read(len(ZIP_MAGIC)) == ZIP_MAGIC
        if is_zip:
            return _load_zip(path, src, file_size)
        return _load_legacy(path, src, file_size)
    except WeightFileError:
        raise
    except CORRUPT_FILE_ERRORS as exc:
        raise WeightFileError(f"{src}: truncated or corrupt torch file "
                              f"({type(exc).__name__}: {one_line(exc, 200)})") from None

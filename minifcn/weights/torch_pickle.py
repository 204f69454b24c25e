"""Read a PyTorch ``.pth`` state dict into NumPy arrays without importing torch.

A ``.pth`` file is a Python pickle. Unpickling runs whatever callables the file names, so a
plain ``pickle.load`` on a downloaded file can execute arbitrary code. Here the unpickler's
``find_class`` allows only the handful of globals a state dict needs (``OrderedDict``, the
tensor rebuild functions, the storage types) and refuses anything else, naming the global.
The rebuild functions are replaced by our own, which only record *where* a tensor's numbers
are; the numbers themselves are read as raw little-endian bytes.

Two container formats exist:

* zip (torch >= 1.6): ``<archive>/data.pkl`` holds the pickled dict; each storage is a raw
  file ``<archive>/data/<key>``.
* legacy (before 1.6; torchvision's ``vgg16-397923af.pth``): one stream of pickles -- a magic
  number, a protocol version, a dict of system info, the object, then the list of storage
  keys -- followed by each storage as an 8-byte little-endian element count and raw bytes.

A tensor is a view of its storage: element ``i`` of a tensor with ``size`` and ``stride``
(in elements) at ``storage_offset`` is ``storage[storage_offset + sum(i_k * stride_k)]``.
"""
from __future__ import annotations

import collections
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .layout import WeightFileError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
# torch storage class -> NumPy element type (bfloat16 handled apart: NumPy has none).
STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "u2",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}


class UnsafePickleError(WeightFileError):
    """The pickle names a global outside the state-dict allow-list; nothing was run."""


@dataclass(frozen=True)
class StorageType:
    """Stand-in for ``torch.FloatStorage`` etc.: only the element type matters."""
    name: str

    @property
    def dtype(self):
        return np.dtype(STORAGE_DTYPES[self.name])


@dataclass(frozen=True)
class StorageRef:
    """Where a storage's bytes live: its key, type, element count, and a view offset."""
    key: str
    type: StorageType
    numel: int
    offset: int = 0  # only legacy storage *views* have one


@dataclass(frozen=True)
class TensorRef:
    """A tensor before its storage is read: storage, offset, size and stride in elements."""
    storage: StorageRef
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    # Stands for torch._utils._rebuild_tensor(_v2); extra args: requires_grad, hooks, metadata.
    return TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *unused):
    # An nn.Parameter is its data plus requires_grad and hooks, which inference never needs.
    return data


ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch", "Size"): tuple,  # a tensor's size, in files that pickle it as torch.Size
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle reader that builds state dicts and nothing else."""

    def __init__(self, file, src):
        super().__init__(file)
        self.src = src
        self.storages = {}  # key -> StorageRef, filled as tensors name them

    def find_class(self, module, name):
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        if (module, name) in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[(module, name)]
        raise UnsafePickleError(
            f"{self.src}: refused to unpickle global '{module}.{name}': only plain state dicts "
            "(OrderedDict of tensors) are read, and nothing in the file was executed. If this "
            "is a whole pickled model, load it in PyTorch and save model.state_dict() instead."
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise WeightFileError(f"{self.src}: unsupported persistent id {str(pid)[:80]!r}")
        _, stype, key, _location, numel, *view = pid
        if not isinstance(stype, StorageType):
            raise WeightFileError(f"{self.src}: storage {key!r} has unknown type {stype!r}")
        ref = StorageRef(str(key), stype, int(numel))
        self.storages.setdefault(ref.key, ref)
        if view and view[0] is not None:  # legacy view: (view_key, offset, view_size)
            _view_key, offset, view_size = view[0]
            return StorageRef(ref.key, stype, int(view_size), int(offset))
        return ref


def _state_dict_of(obj, src):
    """The dict of tensors inside ``obj`` (also inside a {'state_dict': ...} checkpoint)."""
    if not isinstance(obj, dict):
        raise WeightFileError(f"{src}: holds a {type(obj).__name__}, not a state dict")
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, TensorRef)}
    if not tensors:
        raise WeightFileError(f"{src}: no tensors found in the pickled dict")
    return tensors


def _as_array(ref: TensorRef, raw: bytes, byteorder: str, key: str, src) -> np.ndarray:
    """Materialise one tensor from its storage's raw bytes (a copy, native byte order)."""
    stype = ref.storage.type
    flat = np.frombuffer(raw, dtype=stype.dtype.newbyteorder(byteorder))
    if flat.size < ref.storage.offset + ref.storage.numel:
        raise WeightFileError(f"{src}: storage of {key} is truncated "
                              f"({flat.size} of {ref.storage.numel} elements)")
    start = ref.storage.offset + ref.offset
    last = start + sum((n - 1) * s for n, s in zip(ref.size, ref.stride) if n > 0)
    if any(n == 0 for n in ref.size):
        out = np.zeros(ref.size, dtype=flat.dtype)
    elif start < 0 or last >= flat.size:
        raise WeightFileError(f"{src}: tensor {key} reads past the end of its storage")
    else:
        strides = tuple(s * flat.itemsize for s in ref.stride)  # elements -> bytes
        out = np.lib.stride_tricks.as_strided(flat[start:], ref.size, strides, writeable=False)
    if stype.name == "BFloat16Storage":  # bfloat16 is the top half of a float32
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return np.array(out, dtype=out.dtype.newbyteorder("="))


def _load_zip(path: Path, src):
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
        if not pkl:
            raise WeightFileError(f"{src}: a zip archive without data.pkl, so not a torch "
                                  "checkpoint (a .npz weight file needs no conversion)")
        prefix = pkl[0][: -len("data.pkl")]
        byteorder = "<"
        if prefix + "byteorder" in names and zf.read(prefix + "byteorder").strip() == b"big":
            byteorder = ">"
        unpickler = RestrictedUnpickler(zf.open(pkl[0]), src)
        tensors = _state_dict_of(unpickler.load(), src)
        raws = {}
        for key in {t.storage.key for t in tensors.values()}:
            try:
                raws[key] = zf.read(f"{prefix}data/{key}")
            except KeyError:
                raise WeightFileError(
                    f"{src}: storage data/{key} is missing from the archive") from None
    return {k: _as_array(t, raws[t.storage.key], byteorder, k, src) for k, t in tensors.items()}


def _load_legacy(path: Path, src):
    with open(path, "rb") as f:
        def next_pickle():
            unpickler = RestrictedUnpickler(f, src)
            return unpickler.load(), unpickler

        magic, _ = next_pickle()
        if magic != LEGACY_MAGIC:
            raise WeightFileError(f"{src}: a pickle, but not a torch file (no torch magic number)")
        version, _ = next_pickle()
        if version != LEGACY_PROTOCOL:
            raise WeightFileError(
                f"{src}: torch legacy protocol {version}, expected {LEGACY_PROTOCOL}")
        sys_info, _ = next_pickle()
        byteorder = "<" if sys_info.get("little_endian", True) else ">"
        obj, unpickler = next_pickle()
        tensors = _state_dict_of(obj, src)
        keys, _ = next_pickle()
        raws = {}
        for key in keys:  # storages follow in this order: 8-byte element count, raw bytes
            ref = unpickler.storages.get(str(key))
            if ref is None:
                raise WeightFileError(f"{src}: storage {key!r} is listed but never used")
            header = f.read(8)
            if len(header) < 8:
                raise WeightFileError(f"{src}: truncated before storage {key!r}")
            (numel,) = struct.unpack("<q", header)
            raws[ref.key] = f.read(numel * ref.type.dtype.itemsize)
    missing = {t.storage.key for t in tensors.values()} - set(raws)
    if missing:
        raise WeightFileError(f"{src}: storages {sorted(missing)} are missing")
    return {k: _as_array(t, raws[t.storage.key], byteorder, k, src) for k, t in tensors.items()}


def load_torch_file(path) -> dict:
    """Read a torch state dict (zip or legacy format) into ``{key: numpy array}``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict of str -> numpy.ndarray
        Keys exactly as in the file (e.g. ``features.0.weight``), arrays in the file's dtype.

    Raises
    ------
    UnsafePickleError
        If the pickle names any global outside the allow-list (nothing is executed).
    WeightFileError
        If the file is truncated, corrupt, or not a state dict; the message names the file.
    """
    path = Path(path)
    src = path.name
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path, src)
        return _load_legacy(path, src)
    except WeightFileError:
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, struct.error,
            ValueError, TypeError, AttributeError, IndexError, KeyError, OSError) as exc:
        raise WeightFileError(f"{src}: truncated or corrupt torch file "
                              f"({type(exc).__name__}: {exc})") from None

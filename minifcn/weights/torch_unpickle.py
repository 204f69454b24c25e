"""What a ``.pth`` pickle may build, and the checks on what it says, for :mod:`.torch_pickle`.

Unpickling runs whatever callables the pickle names, so a plain ``pickle.load`` on a
downloaded file can execute arbitrary code. :class:`RestrictedUnpickler`'s ``find_class``
allows only the handful of globals a state dict needs (``OrderedDict``, the tensor rebuild
functions, the storage types) and refuses anything else, naming the global. The rebuild
functions are replaced by our own, which only record *where* a tensor's numbers are
(:class:`TensorRef`); storages become :class:`StorageRef` through the pickle's persistent ids.

A tensor is a view of its storage: element ``i`` of a tensor with ``size`` and ``stride``
(in elements) at ``storage_offset`` is ``storage[storage_offset + sum(i_k * stride_k)]``.
None of these numbers is trusted: :func:`checked_tensor` refuses a tensor unless its extent
(:func:`tensor_extent`) lies inside its storage, and :func:`pickle_end` walks a pickle's
opcodes before the unpickler is allowed to believe the lengths they declare.
"""
from __future__ import annotations

import collections
import io
import pickle
import pickletools
from typing import NamedTuple

import numpy as np

from .layout import WeightFileError

# torch storage class -> NumPy element type (bfloat16 handled apart: NumPy has none).
STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "u2",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}
INT64_END = 1 << 63  # torch writes sizes, strides, offsets and counts as int64


class UnsafePickleError(WeightFileError):
    """The pickle names a global outside the state-dict allow-list; nothing was run."""


# Named tuples, not dataclasses: pickle's BUILD opcode can rewrite the fields of any object
# with a __dict__ or a __setstate__ (frozen dataclasses included), but not of a tuple.
class StorageType(NamedTuple):
    """Stand-in for ``torch.FloatStorage`` etc.: only the element type matters."""
    name: str

    @property
    def dtype(self):
        return np.dtype(STORAGE_DTYPES[self.name])

    @property
    def array_itemsize(self):
        """Bytes per element of the arrays read from it (bfloat16 becomes float32)."""
        return 4 if self.name == "BFloat16Storage" else self.dtype.itemsize


class StorageRef(NamedTuple):
    """A storage's key and type, and which of its elements a tensor may use: ``numel`` of
    them from ``offset`` (a legacy storage *view*; otherwise all of them, from 0)."""
    key: str
    type: StorageType
    numel: int
    offset: int = 0


class TensorRef(NamedTuple):
    """A tensor before its storage is read: storage, offset, size and stride in elements."""
    storage: StorageRef
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    # Stands for torch._utils._rebuild_tensor(_v2); extra args: requires_grad, hooks, metadata.
    # Records the arguments as given: checked_tensor looks at them once unpickling is over.
    return TensorRef(storage, storage_offset, size, stride)


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


def printable(text: str, limit=80) -> str:
    """``text`` from the file, fit for a one-line message: escaped if need be, and cut."""
    if text.isprintable() and len(text) <= limit:
        return text
    return ascii(text[:limit])[1:-1] + ("..." if len(text) > limit else "")


def shown(value) -> str:
    """Any value from the file, shown briefly (a huge int or a deep tuple stays short)."""
    if type(value) is int:
        return str(value) if value.bit_length() <= 64 else f"a {value.bit_length()}-bit integer"
    if type(value) is tuple and all(type(v) is int for v in value[:8]):
        inner = ", ".join(shown(v) for v in value[:8])
        return f"({inner}{', ...' if len(value) > 8 else ',' if len(value) == 1 else ''})"
    return f"a {type(value).__name__}"


def count(value, what: str) -> int:
    """``value`` if it is an int64 that counts something (0 .. 2^63-1), else refuse it."""
    if type(value) is not int or not 0 <= value < INT64_END:
        raise WeightFileError(f"{what} is {shown(value)}; expected an integer 0 .. 2^63-1")
    return value


def pickle_end(data: bytes, start: int, src) -> int:
    """Where the pickle that starts at ``data[start]`` ends, once its opcodes are checked.

    CPython's unpickler allocates the length a BINBYTES8 opcode declares before reading the
    bytes, and grows its memo to whatever index a LONG_BINPUT names (2^27 costs 2 GB): a few
    crafted bytes could ask for gigabytes. ``pickletools.genops`` reads every opcode's
    argument for real and fails where the data ends, so each length is bounded by the pickle
    itself. A pickler numbers its memo entries 0, 1, 2, ...; an index beyond the number of
    entries stored so far is refused.
    """
    stream = io.BytesIO(data)
    stream.seek(start)
    stored = 0
    for opcode, arg, _ in pickletools.genops(stream):
        if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            if arg > stored:
                raise WeightFileError(f"{src}: the pickle stores memo entry {shown(arg)} after "
                                      f"only {stored}: not what a pickler writes")
        if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            stored += 1
    return stream.tell()


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle reader that builds state dicts and nothing else, from bytes in memory."""

    def __init__(self, data: bytes, src):
        super().__init__(io.BytesIO(data))
        self.src = src
        self.storages = {}  # key -> (StorageType, numel): every mention of a key must agree

    def find_class(self, module, name):
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        if (module, name) in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[(module, name)]
        raise UnsafePickleError(
            f"{self.src}: refused to unpickle global '{printable(f'{module}.{name}')}': only "
            "plain state dicts (OrderedDict of tensors) are read, and nothing in the file was "
            "executed. If this is a whole pickled model, load it in PyTorch and save "
            "model.state_dict() instead."
        )

    def persistent_load(self, pid):
        # ('storage', type, key, location, numel), and in legacy files a sixth: a view or None.
        if not (type(pid) is tuple and len(pid) in (5, 6) and pid[0] == "storage"):
            raise WeightFileError(f"{self.src}: unsupported persistent id ({shown(pid)}); "
                                  "expected ('storage', type, key, location, numel)")
        _, stype, key, _location, numel, *view = pid
        if type(key) is not str or not isinstance(stype, StorageType):
            raise WeightFileError(f"{self.src}: a storage with {shown(key)} for its key and "
                                  f"{shown(stype)} for its type")
        where = f"{self.src}: storage '{printable(key)}'"
        numel = count(numel, f"{where} element count")
        declared = self.storages.setdefault(key, (stype, numel))
        if declared != (stype, numel):
            raise WeightFileError(f"{where} is declared as {declared[1]} x {declared[0].name} "
                                  f"and again as {numel} x {stype.name}")
        if not view or view[0] is None:
            return StorageRef(key, stype, numel)
        if not (type(view[0]) is tuple and len(view[0]) == 3):
            raise WeightFileError(f"{where} has a view of {shown(view[0])}; expected "
                                  "(key, offset, size)")
        offset = count(view[0][1], f"{where} view offset")
        size = count(view[0][2], f"{where} view size")
        if offset + size > numel:
            raise WeightFileError(f"{where} has a view of elements {offset} .. "
                                  f"{offset + size - 1}, outside its {numel} elements")
        return StorageRef(key, stype, size, offset)


def tensor_extent(offset: int, size: tuple, stride: tuple):
    """The lowest and highest storage element a tensor reads, or ``None`` when it has none.

    ``offset + sum(i_k * stride_k)`` over ``0 <= i_k < size_k`` is lowest with ``i_k`` at
    ``size_k - 1`` where the stride is negative and at 0 elsewhere, and highest the other way
    round. Python's integers do not overflow: a stride of 2^62 cannot wrap round to look small
    as it would in int64, and a stride of -2^40 shows as the -2^40 it is.
    """
    if 0 in size:
        return None
    low = offset + sum((n - 1) * s for n, s in zip(size, stride) if s < 0)
    high = offset + sum((n - 1) * s for n, s in zip(size, stride) if s > 0)
    return low, high


def checked_tensor(ref: TensorRef, key: str, src) -> TensorRef:
    """``ref`` once its fields are int64s of the right kinds and its extent is in its storage."""
    where = f"{src}: tensor {printable(key)}"
    if not isinstance(ref.storage, StorageRef):
        raise WeightFileError(f"{where} has {shown(ref.storage)} for its storage")
    offset = count(ref.offset, f"{where} storage offset")
    size, stride = ref.size, ref.stride
    if not (type(size) is tuple and all(type(n) is int and 0 <= n < INT64_END for n in size)
            and type(stride) is tuple and len(stride) == len(size)
            and all(type(s) is int and -INT64_END <= s < INT64_END for s in stride)):
        raise WeightFileError(f"{where} has size {shown(size)} and stride {shown(stride)}; "
                              "expected int64 tuples of one length, sizes not negative")
    numel = ref.storage.numel
    extent = tensor_extent(offset, size, stride)
    if extent is not None and not (0 <= extent[0] and extent[1] < numel):
        raise WeightFileError(
            f"{where} (size {shown(size)}, stride {shown(stride)}, offset {offset}) reads "
            f"elements {extent[0]} .. {extent[1]}, outside its storage of {numel} elements")
    return TensorRef(ref.storage, offset, size, stride)


def state_dict_tensors(obj, src) -> dict:
    """The checked tensors of the state dict in ``obj`` (also in a {'state_dict': ...} one)."""
    if not isinstance(obj, dict):
        raise WeightFileError(f"{src}: holds {shown(obj)}, not a state dict")
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    tensors = {}
    for key, value in obj.items():
        if isinstance(value, TensorRef):
            if type(key) is not str:
                raise WeightFileError(f"{src}: a tensor under {shown(key)}, not a string key")
            tensors[key] = checked_tensor(value, key, src)
    if not tensors:
        raise WeightFileError(f"{src}: no tensors found in the pickled dict")
    return tensors

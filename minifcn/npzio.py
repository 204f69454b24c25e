"""Weight files: ``.npz`` archives of named arrays plus a JSON metadata record.

One format serves converted VGG16 weights, converted FCN weights, saved models and training
checkpoints. Each array is stored under its state-dict key (``conv1_1.weight``, ...); the
metadata is a JSON string stored as a 0-d unicode array under the key ``__meta__``, so the
file loads with ``np.load(..., allow_pickle=False)`` and nothing in it is ever unpickled.

Writes are atomic: the archive is written to a temporary file in the destination folder and
renamed over the destination only once it is complete, so a crash or a full disk never leaves
a half-written file under the final name.
"""
from __future__ import annotations

import errno
import json
import math
import os
import tempfile
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import FileFormatError, one_line

META_KEY = "__meta__"
# The members of an archive may together declare at most this many uncompressed bytes per
# byte of file, plus the slack. np.savez stores arrays as they are (1x); deflated float
# weights shrink by a few percent. Only long runs of zeros compress much better (a freshly
# zeroed optimizer state), and those sit beside the weights they belong to. Without a bound
# a 16 MB file of deflated zeros could ask for 16 GB.
MAX_INFLATION = 16
INFLATION_SLACK = 16 << 20
READ_CHUNK = 1 << 20  # arrays are read in pieces: no second copy of a 400 MB fc6 in memory


def atomic_write(path, write, suffix=".tmp"):
    """Call ``write(tmp_path)`` then rename ``tmp_path`` to ``path``; clean up on failure.

    Parameters
    ----------
    path : str or os.PathLike
        Final destination.
    write : callable
        Receives the temporary path (in the same folder, so the rename is atomic) and writes
        the whole file there.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; expected a file name", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, tmp = _temporary_prefix(path), None
    try:  # the temporary file is made inside the try: a Ctrl-C right after still removes it
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it open()'s mode
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(exc, OSError) and Path(exc.filename or "").name.startswith(prefix):
            # the user asked for ``path``: name it, not the hidden temporary file
            raise type(exc)(exc.errno, exc.strerror, str(path)) from None
        raise


def _temporary_prefix(path):
    return f".{Path(path).name}."


def stale_temporaries(path, suffix=".tmp"):
    """The temporary files that interrupted :func:`atomic_write` calls for ``path`` (with the
    same ``suffix``) left beside it."""
    path = Path(path)
    return sorted(path.parent.glob(f"{_temporary_prefix(path)}*{suffix}"))


def _umask():
    """The process's umask, from ``/proc/self/status`` where Linux offers it.

    Elsewhere the only way to read it is to set it and put it back, and a file another
    thread creates in between would get mode 0o666; the library writes from one thread.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_npz(path, arrays: dict, meta: dict | None = None, compress: bool = False) -> Path:
    """Write ``arrays`` (name -> array) and ``meta`` (JSON-able dict) to ``path`` atomically.

    CuPy arrays are copied to the host first. Returns the path written.
    """
    from .backend import to_host

    path = Path(path)
    if META_KEY in arrays:
        raise ValueError(f"array name {META_KEY!r} is reserved for metadata")
    payload = {k: to_host(v) for k, v in arrays.items()}
    payload[META_KEY] = np.array(json.dumps(meta or {}, sort_keys=True))
    saver = np.savez_compressed if compress else np.savez

    def write(tmp):
        with open(tmp, "wb") as f:  # a file object keeps numpy from appending ".npz"
            saver(f, **payload)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)
    return path


def load_npz(path):
    """Read a weight file written by :func:`save_npz`, trusting nothing it says about sizes.

    Before an array is read, its ``.npy`` header (shape and dtype) is checked against the
    bytes its zip member really holds, so a tiny file cannot make the reader allocate a
    huge array; the members' declared uncompressed sizes together are bounded by the file's
    own size (:data:`MAX_INFLATION`); object and structured arrays are refused (the first
    would need unpickling, the second is never a weight).

    Returns
    -------
    arrays : dict of str -> numpy.ndarray
    meta : dict
        The metadata record (empty when the file has none, e.g. a plain ``np.savez`` file).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FileFormatError
        Naming the file (and the member) when it is not a readable ``.npz`` archive, a
        header disagrees with its member, or an array has a refused dtype.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weight file not found: {path}")
    with open(path, "rb") as f:  # an unreadable path stays an OSError naming it
        try:
            with zipfile.ZipFile(f) as archive:
                members = _checked_members(archive, path, os.fstat(f.fileno()).st_size)
                arrays = {name: _read_member(archive, info, path) for name, info in members.items()}
        except FileFormatError:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError,
                ValueError, NotImplementedError, RuntimeError, tokenize.TokenError) as exc:
            # zipfile and numpy's header parser raise all of these for damaged bytes (the
            # parser tokenizes a header that is not a literal: an unclosed bracket ends there)
            raise FileFormatError(f"{path}: not a readable .npz archive ({one_line(exc, 200)})") from None
    return arrays, _meta(arrays, path)


def check_zip_member(info, where, error=FileFormatError):
    """Refuse an encrypted member, or one compressed other than stored or deflated: zipfile
    inflates bzip2 and lzma without a bound, and neither np.savez nor torch writes them."""
    if info.flag_bits & 0x1:
        raise error(f"{where} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise error(f"{where} uses zip compression method {info.compress_type}; expected "
                    "stored (0) or deflated (8)")


def _checked_members(archive, path, file_size):
    """``{array name: ZipInfo}`` once every member is one np.savez could have written."""
    members, total = {}, 0
    for info in archive.infolist():
        name = info.filename
        if name.endswith("data.pkl"):  # a torch >= 1.6 zip: weights not yet converted
            raise FileFormatError(f"{path}: is a PyTorch file, not a minifcn model; convert it "
                                  f"first: minifcn convert {path} MODEL.npz")
        if not name.endswith(".npy"):
            raise FileFormatError(f"{path}: member {name!r} is not a .npy array")
        if name[:-4] in members:
            raise FileFormatError(f"{path}: holds two members named {name!r}")
        check_zip_member(info, f"{path}: member {name!r}")
        members[name[:-4]] = info
        total += info.file_size
    limit = INFLATION_SLACK + MAX_INFLATION * file_size
    if total > limit:
        raise FileFormatError(f"{path}: its members declare {total} uncompressed bytes, more "
                              f"than {limit} for a file of {file_size} bytes")
    return members


def _read_member(archive, info, path):
    """One member's array, after its header has been checked against the member's size."""
    where = f"{path}: member {info.filename!r}"
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member)
        else:  # 3.0 exists only for structured dtypes with non-Latin-1 field names
            raise FileFormatError(f"{where}: .npy format version {version} is not supported")
        _check_dtype(dtype, where)
        if any(isinstance(n, bool) or n < 0 for n in shape):
            raise FileFormatError(f"{where}: header declares an impossible shape {shape}")
        count = math.prod(shape)  # Python ints: no overflow, however large the claim
        declared, held = count * dtype.itemsize, info.file_size - member.tell()
        if declared != held:
            raise FileFormatError(f"{where}: header declares shape {shape} of {dtype} "
                                  f"({declared} bytes), but the member holds {held} bytes")
        array = np.empty(count, dtype)
        data = array.view(np.uint8)  # the array's bytes, filled in place a chunk at a time
        for start in range(0, data.size, READ_CHUNK):
            chunk = data[start:start + READ_CHUNK]
            if member.readinto(chunk) != chunk.size:
                raise FileFormatError(f"{where}: ends before its {declared} bytes of data")
    if fortran_order:
        return array.reshape(shape[::-1]).transpose()
    return array.reshape(shape)


def _check_dtype(dtype, where):
    """Refuse the dtypes no weight file holds: objects (pickles) and records."""
    if dtype.hasobject:
        raise FileFormatError(f"{where}: holds Python objects (dtype {dtype}), which would "
                              "need unpickling; refused")
    if dtype.names is not None or dtype.subdtype is not None or dtype.kind not in "biufcUS":
        raise FileFormatError(f"{where}: dtype {dtype} is not an array of numbers or text")
    if dtype.itemsize == 0:  # any shape would fit in no bytes at all
        raise FileFormatError(f"{where}: dtype {dtype} has elements of 0 bytes")


def _meta(arrays, path):
    """The metadata record popped from ``arrays``: a JSON object, or ``{}`` when absent."""
    if META_KEY not in arrays:
        return {}
    record = arrays.pop(META_KEY)
    if record.shape != () or record.dtype.kind != "U":
        raise FileFormatError(f"{path}: metadata {META_KEY} is a {record.dtype} array of shape "
                              f"{record.shape}, not a JSON string")
    try:
        meta = json.loads(str(record))
    except (ValueError, RecursionError) as exc:  # RecursionError: a hostile nesting depth
        raise FileFormatError(f"{path}: metadata record is not valid JSON "
                              f"({one_line(exc, 200)})") from None
    if not isinstance(meta, dict):
        raise FileFormatError(f"{path}: metadata record is a JSON {type(meta).__name__}, "
                              "not an object")
    return meta



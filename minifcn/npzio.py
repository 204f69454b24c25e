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

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

META_KEY = "__meta__"


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it open()'s mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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
    """Read a weight file written by :func:`save_npz`.

    Returns
    -------
    arrays : dict of str -> numpy.ndarray
    meta : dict
        The metadata record (empty when the file has none, e.g. a plain ``np.savez`` file).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a readable ``.npz`` archive, or holds object arrays (which would
        need unpickling and are refused).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weight file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npz archive ({exc})") from None
    except ValueError as exc:  # raised by numpy for object arrays when allow_pickle=False
        raise ValueError(f"{path}: refused to load ({exc})") from None
    meta = {}
    if META_KEY in arrays:
        try:
            meta = json.loads(str(arrays.pop(META_KEY)))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: metadata record is not valid JSON ({exc})") from None
    return arrays, meta

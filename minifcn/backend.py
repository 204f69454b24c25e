"""NumPy or CuPy: the one module that decides.

Every op in :mod:`minifcn.ops` asks :func:`get_array_module` for the array module of its
inputs and builds every buffer with it, so the same code runs on the CPU (NumPy) and on an
NVIDIA GPU (CuPy). Nothing else in the package imports CuPy.

The device is chosen, in order of precedence, by an explicit argument (``--device`` on the
command line), the ``MINIFCN_DEVICE`` environment variable, and the default ``"cpu"``.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

from .errors import MinifcnError

DEVICES = ("cpu", "gpu")
ENV_VAR = "MINIFCN_DEVICE"


class DeviceError(MinifcnError, RuntimeError):
    """Raised when the requested device cannot be used (no CuPy, or no usable GPU)."""


def _import_cupy():
    """Return the ``cupy`` module, or ``None`` when it is not installed."""
    try:
        import cupy  # noqa: PLC0415 - the only CuPy import in the package
    except ImportError:
        return None
    return cupy


def cupy_or_none():
    """The ``cupy`` module when it is installed and a GPU answers, else ``None``."""
    cupy = _import_cupy()
    if cupy is None:
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # CUDA driver missing or broken: treat as "no GPU"
        return None
    return cupy


def gpu_available() -> bool:
    """True when CuPy is installed and at least one CUDA device answers."""
    return cupy_or_none() is not None


def get_array_module(*arrays):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``.

    Parameters
    ----------
    *arrays : array_like or None
        Arrays (or ``None``, which is ignored) whose backend decides.

    Returns
    -------
    module
        ``numpy`` or ``cupy``.
    """
    for a in arrays:
        if a is not None and type(a).__module__.split(".")[0] == "cupy":
            return _import_cupy()
    return np


def resolve_device(device: str | None = None) -> str:
    """Decide the device name from the argument, then ``MINIFCN_DEVICE``, then ``"cpu"``.

    Raises
    ------
    ValueError
        If the name is not ``"cpu"`` or ``"gpu"``.
    DeviceError
        If ``"gpu"`` is asked for but CuPy is missing or no GPU can be used; the message
        says which of the two.
    """
    name = device if device is not None else os.environ.get(ENV_VAR, "cpu")
    name = name.strip().lower()
    if name == "cuda":
        name = "gpu"
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}: expected one of {DEVICES}")
    if name == "gpu":
        cupy = _import_cupy()
        if cupy is None:
            raise DeviceError(
                "device 'gpu' asked for but CuPy is not installed: "
                "pip install 'minifcn[gpu]' (a CuPy wheel matching your CUDA)"
            )
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:
            raise DeviceError(
                f"device 'gpu' asked for: CuPy is installed but no usable GPU was found ({exc})"
            ) from None
        if count < 1:
            raise DeviceError("device 'gpu' asked for: CuPy is installed but sees no GPU")
    return name


def xp_for(device: str | None = None):
    """The array module (``numpy`` or ``cupy``) for a device name."""
    return _import_cupy() if resolve_device(device) == "gpu" else np


def to_device(x, device: str | None = None):
    """Move an array to ``device`` (``"cpu"`` or ``"gpu"``); a no-op when it is already there."""
    if resolve_device(device) == "gpu":
        return _import_cupy().asarray(x)
    return to_host(x)


def to_host(x):
    """Return a NumPy array, copying from the GPU when ``x`` is a CuPy array."""
    if get_array_module(x) is not np:
        return x.get()
    return np.asarray(x)


def device_of(x) -> str:
    """``"gpu"`` for a CuPy array, ``"cpu"`` otherwise."""
    return "cpu" if get_array_module(x) is np else "gpu"


@contextlib.contextmanager
def cpu_threads(n):
    """Run the block with ``n`` BLAS threads and ``n`` threads for minifcn's element-wise work.

    Small networks (the demo's: 4 to 256 channels on 96x96 images) make hundreds of small
    matrix products per step, and a second thread gains nothing on them: a training step of
    the demo took 90-94 ms with two threads and 92 ms with one on a 2-core machine (156 and
    126 ms before the allocator setting of :func:`keep_freed_memory`), and one thread leaves
    the other core to the rest of the machine. Full-size networks want every core; leave
    them alone.
    """
    from threadpoolctl import threadpool_limits

    previous = os.environ.get("MINIFCN_NUM_THREADS")
    os.environ["MINIFCN_NUM_THREADS"] = str(n)
    try:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        if previous is None:
            os.environ.pop("MINIFCN_NUM_THREADS", None)
        else:
            os.environ["MINIFCN_NUM_THREADS"] = previous


def keep_freed_memory():
    """Ask glibc's ``malloc`` to keep freed memory for reuse instead of handing it back.

    A training step allocates and frees hundreds of buffers of a few MB (bands of columns,
    activations, their gradients). By default glibc returns freed blocks to the kernel and
    maps fresh pages for the next allocation, which the kernel must fault in and zero: a
    step of the demo took 124 ms with the defaults and 92 ms with this, on one thread of a
    2-core Xeon (PyTorch gains as much; see docs/performance.md). The setting is the
    process's, so the ``minifcn`` command applies it, not ``import minifcn``.

    Sets ``M_MMAP_THRESHOLD`` to 32 MB (glibc's largest: bigger blocks are still mapped
    afresh) and ``M_TRIM_THRESHOLD`` to 2 GB. Returns True where applied, False elsewhere
    (no glibc: macOS, Windows, musl).
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's <malloc.h>
    mapped = mallopt(m_mmap_threshold, 32 * 2**20)
    return bool(mapped and mallopt(m_trim_threshold, 2**31 - 1))

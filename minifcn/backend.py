"""NumPy or CuPy: the one module that decides.

Every op in :mod:`minifcn.ops` and :mod:`minifcn.engine` asks :func:`get_array_module` for
the array module of its inputs and builds every buffer with it, so the same code runs on the
CPU (NumPy) and on an NVIDIA GPU (CuPy). Nothing else in the package imports CuPy. (The
engine's allocator and thread settings are in :mod:`minifcn.engine.memory`.)

The device is chosen, in order of precedence, by an explicit argument (``--device`` on the
command line), the ``MINIFCN_DEVICE`` environment variable, and the default ``"cpu"``.
"""
from __future__ import annotations

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

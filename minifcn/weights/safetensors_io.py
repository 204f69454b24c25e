"""Read ``.safetensors`` files (needs the ``safetensors`` package).

A safetensors file is an 8-byte little-endian header length, a JSON header mapping each
tensor name to its dtype, shape and byte range, then the raw data. Nothing is unpickled, so
unlike ``.pth`` files there is nothing to guard against; the names are then mapped like a
torch state dict's (torchvision or timm names, see :mod:`.naming`).
"""
from __future__ import annotations

from pathlib import Path

from .layout import WeightFileError


def read_safetensors(path) -> dict:
    """Every tensor of a safetensors file as ``{name: numpy array}``.

    Raises
    ------
    ImportError
        If the ``safetensors`` package is missing (with the pip command to fix it).
    WeightFileError
        If the file is truncated or malformed; the message names the file.
    """
    try:
        from safetensors.numpy import load_file  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise ImportError("reading .safetensors files needs safetensors: pip install "
                          "safetensors (or pip install 'minifcn[weights]')") from None
    path = Path(path)
    try:
        return load_file(str(path))
    except Exception as exc:  # the Rust reader raises its own SafetensorError type
        raise WeightFileError(f"{path.name}: not a readable safetensors file ({exc})") from None

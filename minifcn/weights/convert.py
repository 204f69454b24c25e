"""Convert a downloaded weight file (torch, Keras, Caffe, safetensors) to a minifcn ``.npz``.

The format is read from the file's first bytes, not its name:

==============  ==========================================================================
format          signature
==============  ==========================================================================
torch (zip)     ``PK\\x03\\x04`` (a zip archive holding ``<archive>/data.pkl``)
torch (legacy)  ``\\x80`` then a pickle protocol byte 2-5 (torch's magic number pickled)
keras           HDF5 signature ``\\x89HDF\\r\\n\\x1a\\n`` at byte 0 (or 512, 1024, 2048)
safetensors     8-byte little-endian header length, then a JSON header starting with ``{``
caffe           a protobuf ``NetParameter``: the first tag is one of its known fields
==============  ==========================================================================

Every output is checked against the shapes of the state-dict contract (:mod:`.layout`)
and its values (real, finite floats) before anything is written, and written atomically, so
a failed conversion leaves no output file behind; an output that is the source itself (by
name or through a link) is refused before anything is read.
"""
from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import MinifcnError, UsageError
from ..npzio import load_npz, save_npz
from ..preprocess import CAFFE_FCN, CAFFE_VGG, KERAS, TORCHVISION, get_preset
from . import protobuf_wire as wire
from .layout import FCN_KINDS, KINDS, WeightFileError, checked_values, kind_from_keys, validate

FORMATS = ("torch", "keras", "caffe", "safetensors")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
FORMAT_VERSION = 1
# NetParameter fields that can open a caffemodel: number -> allowed wire types.
_NET_FIELDS = {1: {2}, 2: {2}, 3: {2}, 4: {0, 2}, 5: {0}, 6: {2}, 7: {0}, 8: {2}, 100: {2}}


def detect_format(path) -> str | None:
    """``'torch'``, ``'keras'``, ``'caffe'`` or ``'safetensors'`` from the file's bytes.

    Returns ``None`` when no signature matches.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"PK\x03\x04"):
        return "torch"
    if any(head[o:o + 8] == HDF5_SIGNATURE for o in (0, 512, 1024, 2048)):
        return "keras"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{":
        header_len = int.from_bytes(head[:8], "little")
        if header_len <= size - 8:
            return "safetensors"
    try:
        number, wtype, _ = next(wire.iter_fields(head))
    except (wire.WireFormatError, StopIteration):
        return None
    return "caffe" if wtype in _NET_FIELDS.get(number, ()) else None


def sha256_of(path, chunk=1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (weight files are ~0.5 GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _read(path: Path, fmt: str):
    """``(arrays in minifcn names, default preprocessing for VGG, for FCN, at-once hint)``."""
    try:
        return _read_format(path, fmt)
    except ImportError as exc:  # h5py missing: the user's to install, not a bug
        raise MinifcnError(f"{path.name}: {exc}") from None


def _read_format(path: Path, fmt: str):
    src = path.name
    if fmt == "torch":
        from .naming import pytorch_state_dict
        from .torch_pickle import load_torch_file
        arrays, _style = pytorch_state_dict(load_torch_file(path), src)
        # torchvision/timm weights want torchvision's input; FCN weights in PyTorch naming
        # are conversions of the Caffe releases (pytorch-fcn) and keep Caffe's input.
        return arrays, TORCHVISION, CAFFE_FCN, False
    if fmt == "safetensors":
        from .naming import pytorch_state_dict
        from .safetensors_io import read_safetensors
        arrays, _style = pytorch_state_dict(read_safetensors(path), src)
        return arrays, TORCHVISION, CAFFE_FCN, False
    if fmt == "keras":
        from .keras import keras_state_dict, read_keras_h5
        return keras_state_dict(read_keras_h5(path), src), KERAS, KERAS, False
    from .caffe import caffe_state_dict, read_caffemodel
    arrays, atonce = caffe_state_dict(read_caffemodel(path), src)
    return arrays, CAFFE_VGG, CAFFE_FCN, atonce


def _resolve_kind(arrays, path: Path, variant, atonce_hint):
    """The kind the keys imply, refined by ``variant`` / the file name for FCN-8s at-once."""
    kind = kind_from_keys(arrays)
    squashed = path.name.lower().replace("-", "").replace("_", "")
    if kind == "fcn8s" and (atonce_hint or variant == "fcn8s-atonce" or "atonce" in squashed):
        kind = "fcn8s-atonce"
    if variant == "fcn8s" and kind == "fcn8s-atonce" and not atonce_hint:
        kind = "fcn8s"  # the name said at-once, the user says otherwise
    if variant is not None and variant != kind:
        raise WeightFileError(f"{path.name}: --variant {variant} asked for, but the file holds "
                              f"a {kind} network")
    return kind


class CheckedWeights(NamedTuple):
    """A weight file read whole and checked against the network it holds."""
    arrays: dict           # name -> float32 array, in the state-dict layout
    kind: str              # one of KINDS
    num_classes: int | None
    width: float
    format: str            # one of FORMATS
    preprocessing: object  # the input convention such weights need (a Preprocessing)


def read_checked(src, format="auto", variant=None, width=None, allow_nonfinite=False):
    """Read a weight file completely and check it: every array's name, shape and values.

    Parameters as :func:`convert`'s. This is all of :func:`convert` but the writing; a
    download without a published checksum is verified with it.

    Returns
    -------
    CheckedWeights
    """
    path = _source(src)
    if format not in ("auto",) + FORMATS:
        raise ValueError(f"unknown format {format!r}: expected 'auto' or one of {FORMATS}")
    if variant is not None and variant not in KINDS:
        raise ValueError(f"unknown variant {variant!r}: expected one of {KINDS}")
    detected = detect_format(path)
    if format == "auto" and detected is None:
        raise WeightFileError(f"{path.name}: unknown format: not a torch zip or pickle, an HDF5 "
                              "(Keras) file, safetensors, or a caffemodel")
    if format != "auto" and detected is not None and detected != format:
        raise WeightFileError(f"{path.name}: --format {format} given, but the file's bytes "
                              f"say it is a {detected} file")
    fmt = detected if format == "auto" else format
    arrays, vgg_spec, fcn_spec, atonce = _read(path, fmt)
    kind = _resolve_kind(arrays, path, variant, atonce)
    facts = validate(arrays, kind, path.name, width)
    arrays = checked_values(arrays, path.name, np.float32, allow_nonfinite)
    return CheckedWeights(arrays, kind, facts["num_classes"], facts["width"], fmt,
                          fcn_spec if kind in FCN_KINDS else vgg_spec)


def _source(src):
    path = Path(src)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; expected a weight file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path


def convert(src, dst, format="auto", variant=None, preprocessing=None, width=None,
            allow_nonfinite=False) -> dict:
    """Convert a weight file to a minifcn ``.npz`` (float32 arrays + metadata).

    Parameters
    ----------
    src : str or os.PathLike
        A torch ``.pth``, Keras ``.h5``, ``.caffemodel`` or ``.safetensors`` file.
    dst : str or os.PathLike
        The ``.npz`` to write (atomically; nothing is written on error).
    format : {'auto', 'torch', 'keras', 'caffe', 'safetensors'}
        ``'auto'`` reads it from the bytes; a named format must agree with them.
    variant : str or None
        Force a kind from :data:`~minifcn.weights.layout.KINDS`, e.g. ``'fcn8s-atonce'``,
        which has the same layers as ``'fcn8s'`` (the file name or the caffemodel's scale
        layers tell it otherwise).
    preprocessing : str, dict, Preprocessing or None
        Override the input convention recorded (e.g. ``'caffe-vgg'`` for pytorch-fcn's
        ``vgg16_from_caffe.pth``, Caffe weights in torchvision naming).
    width : float or None
        Insist on a channel width (1.0 = the real VGG16); ``None`` reads it off conv1_1.
    allow_nonfinite : bool
        Write NaN and inf weights too; by default they are refused, naming the key (a net
        with one computes NaN wherever it reaches). Other dtypes than real floats are
        refused either way: complex weights would lose their imaginary part.

    Returns
    -------
    dict
        The metadata written: ``kind``, ``num_classes``, ``width``, ``preprocessing``,
        ``source`` {file, format, sha256}.
    """
    path = _source(src)
    if os.path.exists(dst) and os.path.samefile(path, dst):  # also through a symlink or hard link
        raise UsageError(f"DST {dst} is the file SRC {path} itself (by name or through a "
                         "link); writing it would destroy the source: choose another DST")
    checked = read_checked(path, format, variant, width, allow_nonfinite)
    spec = get_preset(preprocessing) if preprocessing is not None else checked.preprocessing
    meta = {
        "minifcn_weights": FORMAT_VERSION,
        "kind": checked.kind,
        "num_classes": checked.num_classes,
        "width": checked.width,
        "preprocessing": spec.to_dict(),
        "source": {"file": path.name, "format": checked.format, "sha256": sha256_of(path)},
    }
    save_npz(dst, {k: np.ascontiguousarray(v) for k, v in checked.arrays.items()}, meta)
    return meta


def load_converted(path, allow_nonfinite=False):
    """Read a converted ``.npz`` back, checking it against the contract again.

    Parameters
    ----------
    path : str or os.PathLike
    allow_nonfinite : bool
        Accept NaN and inf weights (refused by default, naming the key).

    Returns
    -------
    state_dict : dict of str -> numpy.ndarray (float32)
    meta : dict
        As written by :func:`convert`; ``Preprocessing.from_dict(meta["preprocessing"])``
        gives the input convention.
    """
    arrays, meta = load_npz(path)
    name = Path(path).name
    if meta.get("minifcn_weights") != FORMAT_VERSION or meta.get("kind") not in KINDS:
        raise WeightFileError(f"{name}: not a converted minifcn weight file (no weights "
                              "metadata); run `minifcn convert` on the original file")
    width = meta.get("width")
    if width is not None and not (type(width) in (int, float) and 0 < width < math.inf):
        raise WeightFileError(f"{name}: metadata width={width!r:.60} is not a positive number")
    validate(arrays, meta["kind"], name, width)
    return checked_values(arrays, name, np.float32, allow_nonfinite), meta

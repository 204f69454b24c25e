"""Saving and loading whole models as ``.npz`` weight files with metadata.

The file holds the state dict (``conv1_1.weight``, ..., PyTorch layouts) and a metadata
record with what it takes to rebuild the network: variant, num_classes, width, conv1_1
padding, and the input preprocessing the weights expect. Writes are atomic
(:mod:`minifcn.npzio`); loading never unpickles.

A model file may come from anywhere, so loading checks it in the order that keeps a tiny
file from costing much: the archive's headers against its bytes (:func:`~minifcn.npzio.load_npz`),
each metadata field against its type and a sane range, the arrays against the shapes that
metadata implies, the values (real, finite floats); only then is a model built.
"""
from __future__ import annotations

import inspect
import math
from pathlib import Path

import numpy as np

from ..errors import FileFormatError
from ..npzio import load_npz, save_npz
from ..preprocess import Preprocessing
from .coords import least_pad
from .fcn import FCN, MODELS
from .spec import MAX_CLASSES, MAX_PAD, MAX_WIDTH
from .state_dict import checked_values, validate

FORMAT_VERSION = 1


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not 1


def _is_real(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


FIELDS = {  # metadata field -> (is a value acceptable, what is expected); NaN fails them all
    "num_classes": (lambda v: _is_int(v) and 1 <= v <= MAX_CLASSES,
                    f"an integer from 1 to {MAX_CLASSES}"),
    "width": (lambda v: _is_real(v) and 0 < v <= MAX_WIDTH,
              f"a number > 0 and <= {MAX_WIDTH:g} (1 is VGG16)"),
    "pad": (lambda v: _is_int(v) and 0 <= v <= MAX_PAD,
            f"an integer from 0 to {MAX_PAD} (100 in the reference)"),
    "dropout": (lambda v: _is_real(v) and 0 <= v < 1, "a probability >= 0 and < 1"),
    "learn_upsampling": (lambda v: isinstance(v, bool), "true or false"),
}
DEFAULTS = {name: inspect.signature(FCN).parameters[name].default for name in FIELDS}


def save_model(model, path, extra=None):
    """Write ``model``'s parameters and metadata to ``path`` (atomically). Returns the path."""
    meta = {"minifcn_weights": FORMAT_VERSION, **model.metadata(), **(extra or {})}
    if isinstance(meta.get("preprocessing"), Preprocessing):
        meta["preprocessing"] = meta["preprocessing"].to_dict()
    return save_npz(path, model.state_dict(), meta)


def model_config(meta, src="metadata", **overrides):
    """The kind and constructor arguments a metadata record asks for, each one checked.

    Parameters
    ----------
    meta : dict
        A model file's metadata record; fields it lacks take the constructor's defaults
        (:data:`DEFAULTS`).
    src : str or os.PathLike
        Named in error messages (the file).
    **overrides
        Replace metadata fields (``width=...``); checked the same way.

    Returns
    -------
    kind : str
        A key of :data:`~minifcn.models.fcn.MODELS`.
    config : dict
        Every field of :data:`FIELDS`: ``num_classes``, ``width``, ``pad``, ``dropout``,
        ``learn_upsampling``.

    Raises
    ------
    FileFormatError
        Naming ``src`` and the field, with the value found and the range expected.
    """
    kind = meta.get("kind")
    if not (isinstance(kind, str) and kind in MODELS):
        hint = " (VGG16 weights: build an FCN and use copy_params)" if "vgg" in str(kind) else ""
        raise FileFormatError(f"{src}: metadata names model kind {kind!r:.60}; expected one of "
                              f"{sorted(MODELS)}{hint}")
    unknown = set(overrides) - set(FIELDS)
    if unknown:
        raise TypeError(f"model_config() got unknown fields {sorted(unknown)}")
    config = {}
    for name, (acceptable, expected) in FIELDS.items():
        value = overrides.get(name, meta.get(name, DEFAULTS[name]))
        if not acceptable(value):
            origin = "argument" if name in overrides else "metadata"
            raise FileFormatError(f"{src}: {origin} {name}={value!r:.60} is not valid; "
                                  f"expected {expected}")
        config[name] = value
    if config["pad"] < least_pad(kind):  # the final crop would start before the image
        raise FileFormatError(f"{src}: pad={config['pad']} does not fit a {kind} network (its "
                              f"crops need conv1_1 pad >= {least_pad(kind)})")
    return kind, config


def load_model(path, device=None, dtype=np.float32, allow_nonfinite=False, ops="book",
               **overrides):
    """Rebuild and load the model saved at ``path``.

    Parameters
    ----------
    path : str or os.PathLike
    device : {'cpu', 'gpu'} or None
    dtype : numpy dtype
    allow_nonfinite : bool
        Load NaN and inf weights too (refused by default: one of them turns every output it
        reaches into NaN); for inspecting the weights of a run that diverged.
    ops : {"book", "engine"}
        The op set the model runs (:class:`minifcn.models.fcn.FCN`; the file records none):
        the command runs the engine, Python defaults to the book.
    **overrides
        Replace metadata fields (``width=...``).

    Raises
    ------
    FileFormatError
        If the file is not a model file, a metadata field is of the wrong type or out of
        range, its arrays do not fit the model it describes (every bad key listed), or a
        weight is not a finite real number; nothing is built or half-loaded.
    """
    path = Path(path)
    arrays, meta = load_npz(path)
    kind, config = model_config(meta, path, **overrides)
    found = validate(arrays, kind, path, config["width"])["num_classes"]
    if found != config["num_classes"]:
        raise FileFormatError(f"{path}: metadata num_classes is {config['num_classes']}, but "
                              f"score_fr.weight has {found} rows")
    preprocessing = checked_preprocessing(meta.get("preprocessing"), path)
    arrays = checked_values(arrays, path, dtype, allow_nonfinite)
    model = MODELS[kind](**config, dtype=dtype, ops=ops)
    model.load_state_dict(arrays, strict=True)
    model.preprocessing = preprocessing
    if device is not None:
        model.to(device)
    return model


def checked_preprocessing(record, path):
    """The input convention of a metadata record (None when absent), checked."""
    if not record:
        return None
    try:
        spec = Preprocessing.from_dict(record)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(f"{path}: metadata preprocessing is not an input convention "
                              f"({exc!r:.120})") from None
    numbers = (spec.scale, *spec.mean, *(spec.std or ()))
    if not all(math.isfinite(v) for v in numbers) or spec.scale <= 0 or min(spec.std or [1]) <= 0:
        raise FileFormatError(f"{path}: metadata preprocessing needs a positive scale and std "
                              f"and finite numbers; found {spec.describe()}")
    return spec

"""Saving and loading whole models as ``.npz`` weight files with metadata.

The file holds the state dict (``conv1_1.weight``, ..., PyTorch layouts) and a metadata
record with what it takes to rebuild the network: variant, num_classes, width, conv1_1
padding, and the input preprocessing the weights expect. Writes are atomic
(:mod:`minifcn.npzio`); loading never unpickles.
"""
from __future__ import annotations

import numpy as np

from ..npzio import load_npz, save_npz
from ..preprocess import Preprocessing
from .fcn import MODELS

FORMAT_VERSION = 1


def save_model(model, path, extra=None):
    """Write ``model``'s parameters and metadata to ``path`` (atomically). Returns the path."""
    meta = {"minifcn_weights": FORMAT_VERSION, **model.metadata(), **(extra or {})}
    if isinstance(meta.get("preprocessing"), Preprocessing):
        meta["preprocessing"] = meta["preprocessing"].to_dict()
    return save_npz(path, model.state_dict(), meta)


def build_model(meta, **overrides):
    """Construct the (untrained) model a metadata record describes."""
    kind = meta.get("kind")
    if kind not in MODELS:
        raise ValueError(f"metadata names model kind {kind!r}; expected one of {sorted(MODELS)}"
                         + (" (VGG16 weights: build an FCN and use copy_params)" if kind and "vgg" in kind else ""))
    kwargs = {k: meta[k] for k in ("num_classes", "width", "pad", "dropout", "learn_upsampling") if k in meta}
    kwargs.update(overrides)
    return MODELS[kind](**kwargs)


def load_model(path, device=None, dtype=np.float32, **overrides):
    """Rebuild and load the model saved at ``path``.

    Raises
    ------
    ValueError
        If the file is not a model file or its arrays do not fit the model it describes
        (every bad key listed); nothing is half-loaded.
    """
    arrays, meta = load_npz(path)
    try:
        model = build_model(meta, dtype=dtype, **overrides)
        model.load_state_dict(arrays, strict=True)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if meta.get("preprocessing"):
        model.preprocessing = Preprocessing.from_dict(meta["preprocessing"])
    if device is not None:
        model.to(device)
    return model

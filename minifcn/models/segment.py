"""Segment images with a model: preprocess, one forward under inference, argmax per pixel.

This is what :meth:`minifcn.models.fcn.FCN.predict` does; evaluation and ``minifcn predict``
(:mod:`minifcn.train`) call it too, so every path from pixels to labels is this one.
"""
from __future__ import annotations

import numpy as np

from ..backend import to_host
from ..preprocess import preprocess, scratch_preprocessing


def segment_batch(model, images):
    """Per-pixel class predictions for a batch of RGB images.

    Parameters
    ----------
    model : FCN
        Its ``preprocessing`` (from the weight file) decides how pixels become input; a
        model without one is taken as trained from scratch
        (:func:`~minifcn.preprocess.scratch_preprocessing`).
    images : uint8 array, shape (N, H, W, 3)

    Returns
    -------
    labels : int64 array, shape (N, H, W), on the host
    """
    spec = model.preprocessing or scratch_preprocessing()
    x = preprocess(images, spec, xp=model.xp).astype(model.dtype, copy=False)
    was_training = model.training
    try:
        with model.eval().inference():  # no backward follows: keep no caches
            scores = model(x)  # (N, n_class, H, W)
    finally:
        model.train(was_training)
    return to_host(scores.argmax(axis=1)).astype(np.int64)


def segment(model, image):
    """Predictions for one image: uint8 (H, W, 3), or grayscale (H, W), or RGBA (H, W, 4)."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)  # (H, W) -> (H, W, 3)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"segment: expected an (H, W), (H, W, 3) or (H, W, 4) image, got {image.shape}")
    return segment_batch(model, image[None, :, :, :3])[0]

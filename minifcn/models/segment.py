"""Segment images with a model: preprocess, one forward under inference, argmax per pixel.

This is what :meth:`minifcn.models.fcn.FCN.predict` does; evaluation and ``minifcn predict``
(:mod:`minifcn.train`) call it too, so every path from pixels to labels is this one.
:func:`coarse_segment_batch` stops at ``score_fr``, to show what the upsampling starts from.
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
    scores = _inference(model, images, model)  # (N, n_class, H, W)
    return to_host(scores.argmax(axis=1)).astype(np.int64)


def _inference(model, images, forward):
    """``forward(x)`` of the preprocessed ``images`` in eval mode, keeping no caches (no
    backward follows); the model's mode is restored afterwards."""
    spec = model.preprocessing or scratch_preprocessing()
    x = preprocess(images, spec, xp=model.xp).astype(model.dtype, copy=False)
    was_training = model.training
    try:
        with model.eval().inference():
            return forward(x)
    finally:
        model.train(was_training)


def segment(model, image):
    """Predictions for one image: uint8 (H, W, 3), or grayscale (H, W), or RGBA (H, W, 4)."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)  # (H, W) -> (H, W, 3)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"segment: expected an (H, W), (H, W, 3) or (H, W, 4) image, got {image.shape}")
    return segment_batch(model, image[None, :, :, :3])[0]


def coarse_segment_batch(model, images):
    """The class of every ``score_fr`` position: the coarse map that the variant's
    upsampling and skips start from, at its own resolution (about 1/32 of the padded input).

    Parameters
    ----------
    model : FCN
    images : uint8 array, shape (N, H, W, 3)

    Returns
    -------
    labels : int64 array, shape (N, h, w), on the host
        ``h, w``: the side of ``score_fr`` (2x2 for a 96x96 image at conv1_1 padding 81).
    """
    score_fr = _inference(model, images, lambda x: model.trunk_forward(x)[2])  # (N, n_class, h, w)
    return to_host(score_fr.argmax(axis=1)).astype(np.int64)

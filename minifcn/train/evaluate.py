"""Segment images with a model and score it with the paper's metrics."""
from __future__ import annotations

import numpy as np

from ..backend import to_host
from ..metrics import ConfusionMatrix
from ..preprocess import preprocess
from .config import scratch_preprocessing


def segment_batch(model, images):
    """Per-pixel class predictions for a batch of RGB images.

    Parameters
    ----------
    model : FCN
        Its ``preprocessing`` (from the weight file) decides how pixels become input.
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
            scores = model(x)
    finally:
        model.train(was_training)
    return to_host(scores.argmax(axis=1)).astype(np.int64)


def segment(model, image):
    """Predictions for one image: uint8 (H, W, 3), or grayscale (H, W), or RGBA (H, W, 4)."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"segment: expected an (H, W), (H, W, 3) or (H, W, 4) image, got {image.shape}")
    return segment_batch(model, image[None, :, :, :3])[0]


def evaluate(model, dataset, batch_size=8, progress=None):
    """Accumulate one confusion matrix over ``dataset`` and return the paper's metrics.

    Images of one size are batched ``batch_size`` at a time; others go one by one.
    """
    hist = ConfusionMatrix(model.num_classes)
    batch_images, batch_labels = [], []

    def flush():
        if batch_images:
            hist.update(np.stack(batch_labels), segment_batch(model, np.stack(batch_images)))
            batch_images.clear()
            batch_labels.clear()

    for i in range(len(dataset)):
        image, label = dataset[i]
        if batch_images and image.shape != batch_images[0].shape:
            flush()
        batch_images.append(image)
        batch_labels.append(label)
        if len(batch_images) == batch_size:
            flush()
        if progress is not None:
            progress.update(1)
    flush()
    return hist.scores()

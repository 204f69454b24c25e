"""Score a model with the paper's metrics over a dataset."""
from __future__ import annotations

import numpy as np

from ..metrics import ConfusionMatrix
from ..models.segment import segment_batch


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

"""Where training batches come from: fresh synthetic images, or a dataset on disk.

Either way batch ``i`` depends only on the seed and ``i``, so a resumed run sees exactly the
batches it would have seen without the interruption.
"""
from __future__ import annotations

import numpy as np

from ..data import synthetic
from ..data.loader import BatchLoader
from .config import SYNTHETIC_VAL_SEED


class SyntheticSource:
    """Fresh ``batch_size`` samples for every iteration: image ``n`` of batch ``i`` is drawn
    from ``default_rng([seed, i, n])``, so any share of a batch can be made on its own."""

    def __init__(self, config):
        self.size, self.batch_size, self.seed = config.image_size, config.batch_size, config.seed
        self.num_classes = len(synthetic.SYNTHETIC_CLASSES)
        self.class_names = list(synthetic.SYNTHETIC_CLASSES)
        self.validation = synthetic.SyntheticShapes(config.val_images, self.size, seed=SYNTHETIC_VAL_SEED)

    def batch(self, iteration, share=None):
        """Images ``start:stop`` of batch ``iteration`` (``share``; default all of them).

        Returns
        -------
        images : (stop - start, H, W, 3) uint8 array
        labels : (stop - start, H, W) int64 array
        """
        start, stop = share or (0, self.batch_size)
        count = stop - start
        images = np.empty((count, self.size, self.size, 3), dtype=np.uint8)
        labels = np.empty((count, self.size, self.size), dtype=np.int64)
        for k, n in enumerate(range(start, stop)):
            rng = np.random.default_rng([self.seed, iteration, n])
            images[k], labels[k] = synthetic.make_sample(rng, self.size, self.size)
        return images, labels


class DatasetSource:
    """Batches from a dataset reader (VOC, SBD, Oxford Pet, folder pairs)."""

    def __init__(self, config):
        train, val = open_dataset(config.data)
        crop = config.image_size or None
        batch = config.images_per_batch
        self.loader = BatchLoader(train, batch, crop, shuffle=True, flip=True, seed=config.seed,
                                  drop_last=crop is not None)
        self.num_classes, self.class_names = train.num_classes, list(train.class_names)
        self.validation = val
        if len(self.loader) == 0:
            raise ValueError(f"{config.data}: no complete batch of {batch} images")

    @property
    def batch_size(self):
        return self.loader.batch_size

    def batch(self, iteration, share=None):
        """Images ``start:stop`` of batch ``iteration`` (``share``; default all of them)."""
        epoch, position = divmod(iteration, len(self.loader))
        return self.loader.batch(epoch, position, share=share)


def open_dataset(spec):
    """``"voc:ROOT"`` etc. -> (train split, validation split) readers."""
    from ..data import FolderPairs, OxfordPet, SBDSegmentation, VOCSegmentation

    kind, _, root = spec.partition(":")
    if not root:
        raise ValueError(f"data {spec!r}: expected KIND:PATH (voc, sbd, pet, folders) or 'synthetic'")
    if kind == "voc":
        return VOCSegmentation(root, "train"), VOCSegmentation(root, "val")
    if kind == "sbd":
        return SBDSegmentation(root, "train"), SBDSegmentation(root, "val")
    if kind == "pet":
        return OxfordPet(root, "trainval"), OxfordPet(root, "test")
    if kind == "folders":
        parts = root.split(",")
        if len(parts) != 2:
            raise ValueError(f"data {spec!r}: expected folders:IMAGE_DIR,LABEL_DIR")
        data = FolderPairs(*parts)
        return data, data
    raise ValueError(f"data {spec!r}: unknown kind {kind!r}")


def make_source(config):
    return SyntheticSource(config) if config.data == "synthetic" else DatasetSource(config)

"""Batches from a dataset, one epoch at a time, reproducible from (seed, epoch).

Two ways to batch, matching the two ways FCN is trained:

* whole images (``crop_size=None``, ``batch_size=1``): each image at its own size, the
  reference's recipe; the network's pad-100/ceil-pool/crop design accepts any size.
* fixed-size batches (``crop_size=(h, w)``): every sample is randomly cropped (padded with void
  when smaller) and optionally flipped, then N samples are stacked; faster per pixel on GPUs.

The order of epoch ``e`` is a permutation drawn from ``default_rng([seed, e, 0])`` and the
crop and flip of the sample at position ``p`` from ``default_rng([seed, e, 1, p])``, so any
batch of any epoch can be rebuilt on its own: a run resumed at (epoch, batch) sees exactly the
batches it would have seen without the interruption.

Batches are raw: (N, H, W, 3) uint8 images and (N, H, W) int64 labels; turning images into
float NCHW network input is the job of :mod:`minifcn.preprocess`.
"""
from __future__ import annotations

import numpy as np

from minifcn.data.transforms import random_crop, random_flip

__all__ = ["BatchLoader"]


class BatchLoader:
    """Iterate over a dataset in batches.

    Parameters
    ----------
    dataset : sequence of (image, label)
        Anything with ``len`` and ``[i] -> ((H, W, 3) uint8, (H, W) int)``.
    batch_size : int
        N. Without ``crop_size``, N > 1 requires every image of a batch to have one size.
    crop_size : int or (int, int), optional
        Random crop (with void padding) to this (h, w); ``None`` keeps whole images.
    shuffle : bool
        Draw a new order every epoch; otherwise go through the dataset in order.
    flip : bool
        Random left-right flips (of image and label together).
    seed : int
        Seed of every random choice, together with the epoch index.
    drop_last : bool
        Skip a final incomplete batch (keeps every training batch the same size).
    fill_image : scalar or (3,) array
        Image value of padded pixels, for example the RGB mean.
    """

    def __init__(self, dataset, batch_size=1, crop_size=None, shuffle=True, flip=False,
                 seed=0, drop_last=False, fill_image=0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.crop_size = crop_size
        self.shuffle = shuffle
        self.flip = flip
        self.seed = int(seed)
        self.drop_last = drop_last
        self.fill_image = fill_image

    def __len__(self):
        """Number of batches in one epoch."""
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self, epoch):
        """(len(dataset),) int64 indices: the order in which epoch ``epoch`` visits samples."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        return np.random.default_rng([self.seed, epoch, 0]).permutation(n).astype(np.int64)

    def sample(self, epoch, position, index=None):
        """The sample at ``position`` of epoch ``epoch``, cropped and flipped as that epoch wants.

        Returns
        -------
        image : (h, w, 3) uint8 array
        label : (h, w) int64 array
        """
        if index is None:
            index = int(self.order(epoch)[position])
        image, label = self.dataset[index]
        rng = np.random.default_rng([self.seed, epoch, 1, position])
        if self.crop_size is not None:
            image, label = random_crop(image, label, self.crop_size, rng,
                                       fill_image=self.fill_image)
        if self.flip:
            image, label = random_flip(image, label, rng)
        return image, label.astype(np.int64)

    def batch(self, epoch, batch_index, order=None, share=None):
        """Batch ``batch_index`` of epoch ``epoch``, or its images ``start:stop`` (``share``).

        Returns
        -------
        images : (N, H, W, 3) uint8 array
        labels : (N, H, W) int64 array
        """
        if not 0 <= batch_index < len(self):
            raise IndexError(f"batch {batch_index} out of range for {len(self)} batches")
        if order is None:
            order = self.order(epoch)
        first = batch_index * self.batch_size
        positions = range(first, min(first + self.batch_size, len(order)))
        if share is not None:
            positions = positions[share[0]:share[1]]
        samples = [self.sample(epoch, p, int(order[p])) for p in positions]
        shapes = {label.shape for _, label in samples}
        if len(shapes) > 1:
            raise ValueError(
                f"images of one batch differ in size ({sorted(shapes)}); use batch_size=1 for "
                "whole images of varying size, or set crop_size for fixed-size batches")
        images = np.stack([image for image, _ in samples])  # (N, H, W, 3)
        labels = np.stack([label for _, label in samples])  # (N, H, W)
        return images, labels

    def epoch(self, epoch, start_batch=0):
        """Yield the batches of epoch ``epoch``, from ``start_batch`` on (to resume a run).

        Yields
        ------
        images : (N, H, W, 3) uint8 array
        labels : (N, H, W) int64 array
        """
        order = self.order(epoch)
        for b in range(start_batch, len(self)):
            yield self.batch(epoch, b, order)

    def __repr__(self):
        return (f"BatchLoader({len(self.dataset)} samples, batch_size={self.batch_size}, "
                f"crop_size={self.crop_size}, shuffle={self.shuffle}, flip={self.flip}, "
                f"seed={self.seed})")

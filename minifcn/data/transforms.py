"""Joint image/label transforms for training: crops that pad when needed, and flips.

They work on raw samples, an (H, W, 3) uint8 image with its (H, W) label, and always move
both together so that every label stays on its pixel. Padding fills the image with
``fill_image`` (zero, or the dataset mean so that after mean subtraction it reads as zero) and
the label with 255, so padded pixels count in neither the loss nor the metrics.
"""
from __future__ import annotations

import numpy as np

VOID_LABEL = 255

__all__ = ["random_crop", "center_crop", "random_flip", "crop_or_pad"]


def _as_hw(size):
    if np.isscalar(size):
        return int(size), int(size)
    return int(size[0]), int(size[1])


def crop_or_pad(image, label, size, top, left, fill_image=0, fill_label=VOID_LABEL):
    """Cut an ``size`` window out of the sample, padding where the sample is smaller.

    Parameters
    ----------
    image : (H, W, 3) uint8 array
    label : (H, W) int array
    size : int or (int, int)
        Output (h, w).
    top, left : int
        Per axis: when the sample is at least as large as the output, the offset of the window
        in the sample (``0 <= top <= H - h``); when it is smaller, the offset of the sample
        inside the padded output (``0 <= top <= h - H``).
    fill_image : scalar or (3,) array
        Value of padded image pixels (for example the RGB mean).
    fill_label : int
        Label of padded pixels; 255 (void) by default.

    Returns
    -------
    image : (h, w, 3) array, dtype of the input
    label : (h, w) array, dtype of the input
    """
    h, w = _as_hw(size)
    height, width = label.shape
    out_image = np.empty((h, w, image.shape[2]), dtype=image.dtype)
    fill = np.asarray(fill_image, dtype=np.float64)
    if np.issubdtype(image.dtype, np.integer):
        fill = np.rint(fill)  # a mean of 123.68 should pad with 124, not 123
    out_image[...] = fill.astype(image.dtype)
    out_label = np.full((h, w), fill_label, dtype=label.dtype)
    (sy, dy), (sx, dx) = _axis(height, h, top), _axis(width, w, left)
    out_image[dy, dx] = image[sy, sx]
    out_label[dy, dx] = label[sy, sx]
    return out_image, out_label


def _axis(length, out, offset):
    """Source and destination slices along one axis for :func:`crop_or_pad`."""
    if not 0 <= offset <= abs(length - out):
        raise ValueError(f"offset {offset} outside 0..{abs(length - out)}")
    if length >= out:  # crop: a window of the sample
        return slice(offset, offset + out), slice(0, out)
    return slice(0, length), slice(offset, offset + length)  # pad: sample inside the canvas


def random_crop(image, label, size, rng, fill_image=0, fill_label=VOID_LABEL):
    """A random ``size`` window of the sample; a smaller sample is padded at a random place.

    Parameters
    ----------
    image : (H, W, 3) uint8 array
    label : (H, W) int array
    size : int or (int, int)
        Output (h, w).
    rng : numpy.random.Generator
    fill_image, fill_label
        As in :func:`crop_or_pad`.

    Returns
    -------
    image : (h, w, 3) array
    label : (h, w) array
    """
    h, w = _as_hw(size)
    height, width = label.shape
    top = int(rng.integers(0, abs(height - h) + 1))
    left = int(rng.integers(0, abs(width - w) + 1))
    return crop_or_pad(image, label, (h, w), top, left, fill_image, fill_label)


def center_crop(image, label, size, fill_image=0, fill_label=VOID_LABEL):
    """The central ``size`` window, or a smaller sample padded evenly; see :func:`crop_or_pad`."""
    h, w = _as_hw(size)
    height, width = label.shape
    return crop_or_pad(image, label, (h, w), abs(height - h) // 2, abs(width - w) // 2,
                       fill_image, fill_label)


def random_flip(image, label, rng, p=0.5):
    """Mirror image and label left-right together with probability ``p``.

    Returns
    -------
    image : (H, W, 3) array
    label : (H, W) array
        Contiguous copies when flipped, the inputs themselves otherwise.
    """
    if rng.random() < p:
        return np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(label[:, ::-1])
    return image, label

"""The PASCAL VOC class names and colour map, and helpers to draw label maps.

VOC stores its labels as palette ("P" mode) PNGs: each pixel holds a class index and the file's
palette says which colour to show for it. The palette is built by spreading the bits of the
index over R, G and B, most significant first, so neighbouring classes get very different
colours: class 1 is dark red (128, 0, 0), 2 dark green, 3 olive, 4 dark blue, and the void
label 255 comes out as the light cream (224, 224, 192) of the object borders.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)

__all__ = ["VOC_CLASSES", "voc_colormap", "colorize", "overlay", "save_palette_png"]


def voc_colormap(n=256):
    """The VOC colour map.

    Parameters
    ----------
    n : int
        Number of entries (256 covers every uint8 label, void 255 included).

    Returns
    -------
    cmap : (n, 3) uint8 array
        ``cmap[k]`` is the RGB colour of label k.

    Notes
    -----
    Bits 0, 1, 2 of k go to R, G, B at bit position 7; bits 3, 4, 5 to bit position 6; bits
    6, 7 to position 5. Reading the index three bits at a time, each triple sets one more
    (lower) bit of each channel.
    """
    k = np.arange(n, dtype=np.int64)
    cmap = np.zeros((n, 3), dtype=np.int64)
    for level in range(8):  # 8 triples cover any index below 2**24
        shift = 7 - level
        for channel in range(3):
            bit = (k >> (3 * level + channel)) & 1
            cmap[:, channel] |= bit << shift
    return cmap.astype(np.uint8)


def colorize(label, cmap=None):
    """Turn a label map into an RGB picture with the VOC colours.

    Parameters
    ----------
    label : (H, W) int array
        Class indices (0..255).
    cmap : (K, 3) uint8 array, optional
        Colour per index; :func:`voc_colormap` by default.

    Returns
    -------
    (H, W, 3) uint8 array
    """
    if cmap is None:
        cmap = voc_colormap(256)
    label = np.asarray(label)
    # Anything outside the colour map would index out of bounds; show it as void.
    safe = np.where((label >= 0) & (label < len(cmap)), label, 255 % len(cmap))
    return cmap[safe.astype(np.int64)]


def overlay(image, label, alpha=0.5, cmap=None):
    """Blend label colours over an image; background (0) pixels keep the image.

    Parameters
    ----------
    image : (H, W, 3) uint8 array
        RGB image.
    label : (H, W) int array
        Class indices.
    alpha : float
        Weight of the label colour where a class other than background is shown.

    Returns
    -------
    (H, W, 3) uint8 array
    """
    image = np.asarray(image)
    label = np.asarray(label)
    if image.shape[:2] != label.shape:
        raise ValueError(f"image is {image.shape[:2]} but label is {label.shape}")
    colours = colorize(label, cmap).astype(np.float32)
    weight = np.where(label[..., None] == 0, 0.0, alpha).astype(np.float32)  # (H, W, 1)
    blended = (1.0 - weight) * image.astype(np.float32) + weight * colours
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def save_palette_png(path, label):
    """Write a label map as a VOC-style palette PNG.

    Parameters
    ----------
    path : str or path-like
        Destination file (``.png``).
    label : (H, W) int array
        Class indices in 0..255; stored as they are, so reading the file back with Pillow
        (``np.asarray(Image.open(path))``) returns the same indices.
    """
    label = np.asarray(label)
    if label.min(initial=0) < 0 or label.max(initial=0) > 255:
        raise ValueError("palette PNG labels must lie in 0..255")
    # frombytes with mode "P" stores the indices untouched (no colour quantisation).
    pixels = np.ascontiguousarray(label, dtype=np.uint8)
    img = Image.frombytes("P", (pixels.shape[1], pixels.shape[0]), pixels.tobytes())
    img.putpalette(voc_colormap(256).ravel().tolist())
    img.save(path)

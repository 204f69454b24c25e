"""What every on-disk dataset reader shares: file checks, image and label reading, the base class.

A reader is a list of (id, image path, label path) triples that are opened only when an item is
asked for. Every item is ``(image, label)``: an (H, W, 3) uint8 RGB image and an (H, W) uint8
label map of class indices with 255 for void. Problems are reported with the path involved,
so a wrong layout is found at construction time rather than in the middle of training.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

__all__ = ["IMAGE_EXTENSIONS", "require_dir", "read_split", "read_image", "read_label_png",
           "check_same_size", "SegmentationFiles"]


def require_dir(path, what="folder"):
    """Return ``path`` as a Path, or raise FileNotFoundError naming it."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def read_split(path):
    """Ids listed in a split file, one per line; only the first column counts.

    Blank lines and lines starting with ``#`` are skipped (the Oxford pet lists carry extra
    columns, VOC and SBD lists do not).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    ids = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            ids.append(line.split()[0])
    return ids


def read_image(path):
    """An image file as an (H, W, 3) uint8 RGB array (greyscale, RGBA and CMYK are converted)."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def read_label_png(path):
    """A label PNG as an (H, W) uint8 array of class indices.

    Palette ("P") PNGs such as VOC's are read as their indices, never as the colours they
    display. Greyscale PNGs are read as they are. An RGB label is accepted only when its three
    channels agree (some CamVid copies store indices that way); a coloured RGB label would need
    a colour-to-class table, so it is rejected.
    """
    with Image.open(path) as img:
        if img.mode in ("P", "L"):
            return np.asarray(img, dtype=np.uint8)
        if img.mode in ("I", "I;16"):
            return np.asarray(img).astype(np.uint8)
        rgb = np.asarray(img.convert("RGB"))
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all():
        return np.ascontiguousarray(rgb[..., 0])
    raise ValueError(f"label {path} is a colour ({img.mode}) image, not class indices; "
                     "save labels as palette or greyscale PNGs holding the class index")


def check_same_size(image, label, image_path, label_path):
    """Raise ValueError naming both files when the label's (H, W) differs from the image's."""
    if image.shape[:2] != label.shape[:2]:
        raise ValueError(
            f"label {label_path} is {label.shape[0]}x{label.shape[1]} (HxW) but image "
            f"{image_path} is {image.shape[0]}x{image.shape[1]}; expected the same size")


class SegmentationFiles:
    """Base reader: items are read from ``image_paths[i]`` and ``label_paths[i]`` on demand.

    Parameters
    ----------
    ids : sequence of str
        One name per item.
    image_paths, label_paths : sequence of path-like
        Files of each item; all must exist (checked here, once).
    num_classes : int
    class_names : sequence of str

    Subclasses that store labels in another format override :meth:`read_label`.
    """

    def __init__(self, ids, image_paths, label_paths, num_classes, class_names):
        self.ids = list(ids)
        self.image_paths = [Path(p) for p in image_paths]
        self.label_paths = [Path(p) for p in label_paths]
        self.num_classes = int(num_classes)
        self.class_names = tuple(class_names)
        for kind, paths in (("image", self.image_paths), ("label", self.label_paths)):
            missing = [p for p in paths if not os.path.isfile(p)]
            if missing:
                raise FileNotFoundError(
                    f"{len(missing)} of {len(paths)} {kind} files are missing, "
                    f"first: {missing[0]}")

    def __len__(self):
        return len(self.ids)

    def read_label(self, path):
        """(H, W) uint8 class indices of one label file."""
        return read_label_png(path)

    def __getitem__(self, index):
        """Item ``index``: ``(image (H, W, 3) uint8 RGB, label (H, W) uint8)``."""
        image_path, label_path = self.image_paths[index], self.label_paths[index]
        image = read_image(image_path)
        label = self.read_label(label_path)
        check_same_size(image, label, image_path, label_path)
        return image, label

    def __repr__(self):
        return f"{type(self).__name__}({len(self)} items, {self.num_classes} classes)"

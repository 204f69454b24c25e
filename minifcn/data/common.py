"""What every on-disk dataset reader shares: file checks, pairing image and label, the base class.

A reader is a list of (id, image path, label path) triples that are opened only when an item is
asked for. Every item is ``(image, label)``: an (H, W, 3) uint8 RGB image and an (H, W) uint8
label map of class indices with 255 for void. Problems are reported with the path involved,
so a wrong layout is found at construction time rather than in the middle of training.
"""
from __future__ import annotations

import os
from pathlib import Path

from minifcn.data.imagefile import ImageFileError, decode_image, orient
from minifcn.data.labelfile import check_label_values, decode_label

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

__all__ = ["IMAGE_EXTENSIONS", "require_dir", "read_split", "check_same_size",
           "SegmentationFiles"]


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


def check_same_size(image, label, image_path, label_path):
    """Refuse, naming both files, a label whose (H, W) differs from its image's.

    Both are compared as stored in their files, before any EXIF orientation is applied.
    """
    if image.shape[:2] != label.shape[:2]:
        raise ImageFileError(
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

    Subclasses that store labels in another format override :meth:`read_label`; those whose
    RGB labels are colours set :attr:`label_colours`.

    Notes
    -----
    A label's rows and columns are those of its image *as stored*: the image's EXIF
    orientation turns both (labels drawn with the pixel arrays of the files, as VOC's are,
    stay on their pixels). A label file with an orientation of its own other than its
    image's is refused, as is one whose size differs from its image's.
    """

    # How RGB labels are read: None takes only grey (R = G = B) as the index; a dict maps
    # each (r, g, b) colour to its class.
    label_colours = None

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
        """(H, W) uint8 class indices of one label file, as stored, and its EXIF orientation."""
        return decode_label(path, self.label_colours)

    def __getitem__(self, index):
        """Item ``index``: ``(image (H, W, 3) uint8 RGB, label (H, W) uint8)``, as displayed."""
        image_path, label_path = self.image_paths[index], self.label_paths[index]
        image, orientation = decode_image(image_path)
        label, label_orientation = self.read_label(label_path)
        if label_orientation not in (1, orientation):
            raise ImageFileError(
                f"label {label_path} has EXIF orientation {label_orientation} but image "
                f"{image_path} has {orientation}; the label would not stay on its pixels "
                "(remove the label's orientation tag)")
        check_same_size(image, label, image_path, label_path)
        check_label_values(label, self.num_classes, label_path)
        return orient(image, orientation), orient(label, orientation)

    def __repr__(self):
        return f"{type(self).__name__}({len(self)} items, {self.num_classes} classes)"

"""The Oxford-IIIT Pet dataset (Parkhi et al. 2012) as a two-class segmentation problem.

Layout read: ``images/<name>.jpg`` and ``annotations/trimaps/<name>.png``, optionally with the
split lists ``annotations/trainval.txt`` and ``annotations/test.txt`` (the name is the first
column of each line).

The trimaps hold 1 = pet, 2 = background, 3 = the uncertain border around the pet. They are
mapped to **0 = background, 1 = pet, 255 = border**: background becomes class 0 as in every
other set here, and the border becomes void, which the loss and the metrics ignore, exactly as
VOC treats the band around its objects. Treating the border as a third class instead would
ask the network to predict an annotation artefact.
"""
from __future__ import annotations

import numpy as np

from minifcn.data.common import SegmentationFiles, read_split, require_dir
from minifcn.data.imagefile import ImageFileError
from minifcn.data.labelfile import decode_label

PET_CLASSES = ("background", "pet")

__all__ = ["PET_CLASSES", "OxfordPet", "trimap_to_label"]

# Look-up table from trimap value to label; values other than 1, 2, 3 are rejected below.
_TRIMAP_LUT = np.full(256, 255, dtype=np.uint8)
_TRIMAP_LUT[1], _TRIMAP_LUT[2], _TRIMAP_LUT[3] = 1, 0, 255


def trimap_to_label(trimap, path="(array)"):
    """Map trimap values 1/2/3 to labels 1 (pet) / 0 (background) / 255 (void), (H, W) uint8."""
    trimap = np.asarray(trimap, dtype=np.uint8)
    if not np.isin(trimap, (1, 2, 3)).all():
        found = sorted(set(np.unique(trimap).tolist()) - {1, 2, 3})
        raise ImageFileError(f"trimap {path} holds the values {found}; expected only 1 (pet), "
                             "2 (background) and 3 (border)")
    return _TRIMAP_LUT[trimap]


class OxfordPet(SegmentationFiles):
    """Oxford-IIIT Pet, pet vs background.

    Parameters
    ----------
    root : path-like
        The folder holding ``images`` and ``annotations``.
    split : {'trainval', 'test'} or None
        ``None`` (the default) takes every ``images/*.jpg``; a name reads
        ``annotations/<split>.txt``, which must then exist.
    """

    def __init__(self, root, split=None):
        self.root = require_dir(root, "Oxford pet root")
        images = require_dir(self.root / "images", "Oxford pet images folder")
        trimaps = require_dir(self.root / "annotations" / "trimaps", "Oxford pet trimaps folder")
        self.split = split
        if split is None:
            names = sorted(p.stem for p in images.glob("*.jpg"))
        else:
            names = read_split(self.root / "annotations" / f"{split}.txt")
        super().__init__(
            names,
            [images / f"{n}.jpg" for n in names],
            [trimaps / f"{n}.png" for n in names],
            num_classes=len(PET_CLASSES), class_names=PET_CLASSES)

    def read_label(self, path):
        trimap, orientation = decode_label(path)
        return trimap_to_label(trimap, path), orientation

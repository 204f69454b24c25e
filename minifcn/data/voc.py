"""PASCAL VOC2012 segmentation and the Semantic Boundaries Dataset (SBD) that extends it.

Layouts read (as distributed):

* VOC2012: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette PNG: the pixel
  value is the class index, 255 marks the void border drawn around every object) and
  ``ImageSets/Segmentation/{train,val,trainval}.txt``.
* SBD (``benchmark_RELEASE/dataset``): ``img/<id>.jpg``, ``cls/<id>.mat`` holding a MATLAB
  struct ``GTcls`` whose field ``Segmentation`` is the (H, W) class map, and
  ``{train,val}.txt``. SBD has no void border.

The FCN reference trains on SBD train (8,498 images) and validates on ``seg11valid``, the 736
VOC2011 val images not in SBD train; pass that list as ``split_file`` to
:class:`VOCSegmentation`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from minifcn.data.common import SegmentationFiles, read_split
from minifcn.data.palette import VOC_CLASSES

__all__ = ["VOCSegmentation", "SBDSegmentation", "find_voc_root"]


def find_voc_root(root):
    """The folder that holds ``JPEGImages``: ``root`` itself, ``root/VOC2012`` or
    ``root/VOCdevkit/VOC2012``.

    Raises
    ------
    FileNotFoundError
        Listing every place looked at.
    """
    root = Path(root)
    candidates = [root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"]
    for candidate in candidates:
        if (candidate / "JPEGImages").is_dir():
            return candidate
    looked = ", ".join(str(c / "JPEGImages") for c in candidates)
    raise FileNotFoundError(f"no VOC2012 folder under {root}: looked for {looked}")


class VOCSegmentation(SegmentationFiles):
    """PASCAL VOC2012 segmentation: 21 classes, 255 = void.

    Parameters
    ----------
    root : path-like
        The ``VOC2012`` folder, or ``VOCdevkit``, or the folder holding ``VOCdevkit``.
    split : {'train', 'val', 'trainval'}
        Which list of ``ImageSets/Segmentation`` to read.
    split_file : path-like, optional
        Read the ids from this file instead (for example ``seg11valid.txt``).

    Notes
    -----
    Items are ``(image (H, W, 3) uint8 RGB, label (H, W) uint8)``.
    """

    def __init__(self, root, split="train", split_file=None):
        self.root = find_voc_root(root)
        if split_file is None:
            split_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        self.split = split
        ids = read_split(split_file)
        super().__init__(
            ids,
            [self.root / "JPEGImages" / f"{i}.jpg" for i in ids],
            [self.root / "SegmentationClass" / f"{i}.png" for i in ids],
            num_classes=len(VOC_CLASSES), class_names=VOC_CLASSES)


def load_sbd_mat(path):
    """The ``GTcls.Segmentation`` class map of an SBD ``cls/*.mat`` file, (H, W) uint8.

    Needs SciPy (``pip install 'minifcn[datasets]'``), imported only here.
    """
    try:
        from scipy.io import loadmat  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise ImportError("reading SBD .mat labels needs SciPy: "
                          "pip install scipy (or pip install 'minifcn[datasets]')") from None
    mat = loadmat(path, squeeze_me=True, struct_as_record=False)
    if "GTcls" not in mat or not hasattr(mat["GTcls"], "Segmentation"):
        raise ValueError(f"{path} has no GTcls.Segmentation (is it an SBD cls/*.mat file?)")
    return np.asarray(mat["GTcls"].Segmentation).astype(np.uint8)


class SBDSegmentation(SegmentationFiles):
    """The Semantic Boundaries Dataset (Hariharan et al. 2011): VOC's 21 classes, more images.

    Parameters
    ----------
    root : path-like
        ``benchmark_RELEASE/dataset`` (the folder with ``img`` and ``cls``), or
        ``benchmark_RELEASE``.
    split : {'train', 'val'}
        Which list (``train.txt`` or ``val.txt``) to read.
    split_file : path-like, optional
        Read the ids from this file instead.
    """

    def __init__(self, root, split="train", split_file=None):
        root = Path(root)
        if not (root / "img").is_dir() and (root / "dataset" / "img").is_dir():
            root = root / "dataset"
        if not (root / "img").is_dir():
            raise FileNotFoundError(f"no SBD folder at {root}: expected {root / 'img'}")
        self.root = root
        self.split = split
        ids = read_split(split_file if split_file is not None else root / f"{split}.txt")
        super().__init__(
            ids,
            [root / "img" / f"{i}.jpg" for i in ids],
            [root / "cls" / f"{i}.mat" for i in ids],
            num_classes=len(VOC_CLASSES), class_names=VOC_CLASSES)

    def read_label(self, path):
        return load_sbd_mat(path)

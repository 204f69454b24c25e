"""PASCAL VOC2012 segmentation and the Semantic Boundaries Dataset (SBD) that extends it.

Layouts read (as distributed):

* VOC2012: ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette PNG: the pixel
  value is the class index, 255 marks the void border drawn around every object) and
  ``ImageSets/Segmentation/{train,val,trainval}.txt``.
  Some copies store the labels as their colours (RGB) instead; those are read back through
  the VOC colour map, and any other colour is refused.
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
from minifcn.data.imagefile import ImageFileError
from minifcn.data.palette import VOC_CLASSES, voc_colormap
from minifcn.errors import one_line

__all__ = ["VOCSegmentation", "SBDSegmentation", "find_voc_root", "VOC_LABEL_COLOURS"]

# An RGB VOC label: each class colour, and the cream (224, 224, 192) of the void border.
VOC_LABEL_COLOURS = {tuple(voc_colormap(256)[k].tolist()): k for k in (*range(21), 255)}


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
    Items are ``(image (H, W, 3) uint8 RGB, label (H, W) uint8)``. Labels are palette PNGs
    (or greyscale: the value is the index), or RGB in the VOC colours.
    """

    label_colours = VOC_LABEL_COLOURS

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

    Needs SciPy (``pip install 'minifcn[datasets]'``), imported only here. A file SciPy cannot
    read, or a map that is not 2-D or holds a value that is not an integer in 0..255, is
    refused naming the file (never cast, which would wrap 300 onto class 44).
    """
    try:
        from scipy.io import loadmat  # noqa: PLC0415 - optional dependency
        from scipy.io.matlab import MatReadError  # noqa: PLC0415
    except ImportError:
        raise ImportError("reading SBD .mat labels needs SciPy: "
                          "pip install scipy (or pip install 'minifcn[datasets]')") from None
    with open(path, "rb") as fp:  # a missing file is the OS's error; what follows is the bytes'
        try:
            mat = loadmat(fp, squeeze_me=True, struct_as_record=False)
        except (MatReadError, ValueError, TypeError, OSError, NotImplementedError) as exc:
            raise ImageFileError(f"label {path} cannot be read as a MATLAB file: "
                                 f"{one_line(exc)}") from None
    if "GTcls" not in mat or not hasattr(mat["GTcls"], "Segmentation"):
        raise ImageFileError(f"label {path} has no GTcls.Segmentation "
                             "(is it an SBD cls/*.mat file?)")
    label = np.asarray(mat["GTcls"].Segmentation)
    if label.ndim != 2 or label.dtype.kind not in "uif" or label.size == 0:
        raise ImageFileError(f"label {path}: GTcls.Segmentation is {label.dtype} of shape "
                             f"{label.shape}; expected a 2-D map of class indices")
    bad = ~np.isin(label, np.arange(256))  # also catches NaN and fractions in float maps
    if bad.any():
        row, column = np.argwhere(bad)[0].tolist()
        raise ImageFileError(f"label {path} holds the value {label[row, column]} at row {row}, "
                             f"column {column}; class indices must be integers in 0..255")
    return label.astype(np.uint8)


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
        return load_sbd_mat(path), 1  # a .mat file has no EXIF orientation

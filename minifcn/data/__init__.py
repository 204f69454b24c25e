"""Datasets, transforms and batching.

Every dataset is a sequence of ``(image, label)`` pairs: an (H, W, 3) uint8 RGB image and an
(H, W) uint8 map of class indices, 255 marking void pixels that neither the loss nor the
metrics count. Each one also carries ``num_classes``, ``class_names`` and ``ids``.

Files are read by :func:`read_image` and :func:`decode_label` (modules ``imagefile`` and
``labelfile``): decoded completely, scaled by their real bit depth, turned by their EXIF
orientation (a label with its image), or refused with one line naming the file.

============================  ===============================================================
:class:`SyntheticShapes`      built-in shapes on clutter, generated on demand (the default)
:class:`VOCSegmentation`      PASCAL VOC2012 (21 classes)
:class:`SBDSegmentation`      Semantic Boundaries Dataset, VOC classes (needs SciPy)
:class:`OxfordPet`            Oxford-IIIT Pet trimaps as pet / background
:class:`FolderPairs`          image and label folders paired by name (CamVid-style)
============================  ===============================================================
"""
from minifcn.data.folders import FolderPairs
from minifcn.data.imagefile import ImageFileError, read_image
from minifcn.data.photo import sample_photo
from minifcn.data.labelfile import decode_label
from minifcn.data.loader import BatchLoader
from minifcn.data.palette import VOC_CLASSES, colorize, overlay, save_palette_png, voc_colormap
from minifcn.data.pet import PET_CLASSES, OxfordPet
from minifcn.data.synthetic import SYNTHETIC_CLASSES, SyntheticShapes, make_sample, sample_batch
from minifcn.data.transforms import center_crop, random_crop, random_flip
from minifcn.data.voc import SBDSegmentation, VOCSegmentation

__all__ = [
    "SyntheticShapes", "make_sample", "sample_batch", "SYNTHETIC_CLASSES",
    "VOCSegmentation", "SBDSegmentation", "OxfordPet", "PET_CLASSES", "FolderPairs",
    "VOC_CLASSES", "voc_colormap", "colorize", "overlay", "save_palette_png",
    "random_crop", "center_crop", "random_flip", "BatchLoader",
    "read_image", "decode_label", "ImageFileError", "sample_photo",
]

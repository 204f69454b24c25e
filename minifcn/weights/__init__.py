"""Pretrained weights: read the files users really have, convert them to minifcn ``.npz``.

* :func:`convert` -- torch ``.pth`` (zip or legacy, read without torch), Keras ``.h5``,
  Caffe ``.caffemodel`` and ``.safetensors`` files to a checked ``.npz`` with metadata
  (network kind, classes, width, the input preprocessing the weights need, the source).
* :func:`download` -- the known files (torchvision, Keras and Caffe VGG16; the released
  FCN caffemodels), resumable, within a deadline, checked against their checksum (or, where
  none is published, read whole as the network they should hold) before they get their
  name, then converted.
* :func:`load_converted` -- read a converted file back as ``(state_dict, meta)``.

The state-dict contract (key names and shapes) is in :mod:`minifcn.models.state_dict`,
beside the layer table it is read from; :mod:`minifcn.weights.layout` hands it on to the readers.
Every file is treated as hostile until checked: sizes, strides, offsets and links it declares
are checked against the file itself before anything is read or allocated, and anything else
ends in a :class:`WeightFileError` naming the file. h5py (the optional ``weights`` extra) is
imported only when a Keras file needs it; torch is never imported.
"""
from .convert import FORMATS, convert, detect_format, load_converted
from .download import (REGISTRY, ChecksumError, DeadlineError, DownloadError, RemoteFile,
                       WrongContentError, cache_dir, download, fetch)
from .layout import KINDS, WeightFileError, expected_shapes, validate
from .torch_pickle import UnsafePickleError, load_torch_file

__all__ = [
    "FORMATS", "KINDS", "REGISTRY", "ChecksumError", "DeadlineError", "DownloadError",
    "RemoteFile", "WrongContentError",
    "UnsafePickleError", "WeightFileError", "cache_dir", "convert", "detect_format",
    "download", "expected_shapes", "fetch", "load_converted", "load_torch_file", "validate",
]

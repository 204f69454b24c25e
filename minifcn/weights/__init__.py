"""Pretrained weights: read the files users really have, convert them to minifcn ``.npz``.

* :func:`convert` -- torch ``.pth`` (zip or legacy, read without torch), Keras ``.h5``,
  Caffe ``.caffemodel`` and ``.safetensors`` files to a checked ``.npz`` with metadata
  (network kind, classes, width, the input preprocessing the weights need, the source).
* :func:`download` -- the known files (torchvision, Keras and Caffe VGG16; the released
  FCN caffemodels), resumable, size- and checksum-checked, then converted.
* :func:`load_converted` -- read a converted file back as ``(state_dict, meta)``.

The state-dict contract (key names and shapes) is in :mod:`minifcn.weights.layout`.
Optional packages (h5py, safetensors) are imported only when a file needs them; torch is
never imported.
"""
from .convert import FORMATS, convert, detect_format, load_converted
from .download import REGISTRY, ChecksumError, DownloadError, RemoteFile, cache_dir, download, fetch
from .layout import KINDS, WeightFileError, expected_shapes, validate
from .torch_pickle import UnsafePickleError, load_torch_file

__all__ = [
    "FORMATS", "KINDS", "REGISTRY", "ChecksumError", "DownloadError", "RemoteFile",
    "UnsafePickleError", "WeightFileError", "cache_dir", "convert", "detect_format",
    "download", "expected_shapes", "fetch", "load_converted", "load_torch_file", "validate",
]

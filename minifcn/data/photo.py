"""The real photograph shipped with the package (``minifcn/assets/photo.jpg``, public domain;
``photo.md`` beside it says what it is and where it comes from)."""
from __future__ import annotations

from importlib import resources

from .imagefile import read_image

__all__ = ["sample_photo"]


def sample_photo():
    """The shipped photograph as an (300, 256, 3) uint8 RGB array (a person, VOC class 15)."""
    with resources.as_file(resources.files("minifcn") / "assets" / "photo.jpg") as path:
        return read_image(path)

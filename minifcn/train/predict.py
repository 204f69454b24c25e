"""``minifcn predict``: segment image files, write a colour mask and an overlay for each."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.imagefile import read_image
from ..data.palette import overlay, save_palette_png
from .evaluate import segment


# One image decoder for the package: 16-bit and float scaling, EXIF orientation, alpha over
# black, truncated files and decompression bombs refused with one line naming the file.
read_rgb = read_image


def predict_files(model, paths, out_dir):
    """Write ``<name>_mask.png`` (VOC palette, class indices) and ``<name>_overlay.png`` for
    each image into ``out_dir``. Returns ``[(image path, mask path, overlay path, classes)]``."""
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        image = read_rgb(path)
        labels = segment(model, image)
        stem = Path(path).stem
        mask_path, overlay_path = out_dir / f"{stem}_mask.png", out_dir / f"{stem}_overlay.png"
        save_palette_png(mask_path, labels.astype(np.uint8))
        Image.fromarray(overlay(image, labels)).save(overlay_path)
        written.append((Path(path), mask_path, overlay_path, sorted(np.unique(labels).tolist())))
    return written

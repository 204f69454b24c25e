"""``minifcn predict``: segment image files, write a colour mask and an overlay for each."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.palette import overlay, save_palette_png
from .evaluate import segment


def read_rgb(path):
    """Read any image Pillow opens as uint8 (H, W, 3) RGB (grayscale, palette, RGBA too)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode in ("RGBA", "LA", "P"):
                # composite transparency on black rather than keeping undefined colour values
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(background, im)
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {path}") from None
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not an image Pillow can read") from None


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

"""Label files read as class indices, refusing every file whose indices would come out wrong.

A label file holds one class index per pixel. Image formats were made for intensities, so
several of the ways a label can be stored would be read as *something*, just not as the
indices that were written. Each of these is refused with one line naming the file:

* 16- and 32-bit greyscale labels with a value of 256 or more (or below 0): an 8-bit label
  map cannot hold it, and casting would wrap it modulo 256 onto another class.
* 2- and 4-bit greyscale PNGs and TIFFs: Pillow widens their samples to 0..255 (a stored 1
  reads as 17, a stored 15 as 255, the void label); and white-is-zero TIFFs, which Pillow
  inverts. The stored index would be lost.
* Lossy formats (JPEG, WebP) and PNM: compression changes indices along every edge, and PNM's
  ``maxval`` is rescaled. Labels must be PNG, BMP, TIFF or GIF.
* Floating-point, two-channel and CMYK labels, and transparent pixels in an RGBA label.
* RGB labels are read through a colour table chosen per dataset (``colours``): VOC's class
  colours for VOC, and otherwise only grey (R = G = B, the value being the index, as some
  CamVid copies store them). A colour the table lacks is refused, naming it and a pixel that
  has it; 16-bit RGB is refused, Pillow keeping only its high byte.

A label value outside the dataset's classes (other than the void label 255) is refused by
:func:`check_label_values`, naming the file, the value and the class count.
"""
from __future__ import annotations

import numpy as np

from minifcn.data.imagefile import ImageFileError, open_decoded
from minifcn.data.transforms import VOID_LABEL

__all__ = ["LABEL_FORMATS", "decode_label", "check_label_values"]

LABEL_FORMATS = ("PNG", "BMP", "TIFF", "GIF")


def _code(rgb):
    """(..., 3) colours -> (...) int64, one number per colour: 0xRRGGBB."""
    rgb = np.asarray(rgb, dtype=np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _colours_to_indices(rgb, colours, path):
    """(H, W) uint8 class indices of an (H, W, 3) RGB label, through the table ``colours``."""
    if colours is None:  # grey only: (v, v, v) is index v
        table = {v * 0x010101: v for v in range(256)}
        rule = "grey (R = G = B), the only RGB labels this dataset reads as class indices"
    else:
        table = {int(_code(colour)): int(index) for colour, index in colours.items()}
        rule = f"one of the {len(table)} label colours of this dataset"
    codes = _code(rgb)                                       # (H, W)
    present, inverse = np.unique(codes.ravel(), return_inverse=True)
    indices = np.empty(len(present), dtype=np.uint8)
    for n, code in enumerate(present.tolist()):
        if code not in table:
            row, column = np.argwhere(codes == code)[0].tolist()
            colour = (code >> 16, (code >> 8) & 255, code & 255)
            raise ImageFileError(f"label {path} has colour {colour} at row {row}, column "
                                 f"{column}, which is not {rule}")
        indices[n] = table[code]
    return indices[inverse].reshape(codes.shape)


def decode_label(path, colours=None):
    """A label file's class indices in the file's stored order, and its EXIF orientation.

    Parameters
    ----------
    path : path-like
    colours : dict of (r, g, b) -> int, optional
        How the dataset reads an RGB label: each colour's class index. ``None`` reads only
        grey RGB (R = G = B) as the index.

    Returns
    -------
    label : (H, W) uint8 array
        Palette (P) labels give their indices, greyscale their values; see the module's notes
        for what else is read and what is refused.
    orientation : int
        The label file's own EXIF orientation, 1..8 (1 when it has none).

    Raises
    ------
    ImageFileError
        The file's indices cannot be read exactly (message names the file).
    """
    img, orientation, layout = open_decoded(path, "label")
    if img.format not in LABEL_FORMATS:
        raise ImageFileError(f"label {path} is a {img.format} file; labels must be stored "
                             f"losslessly as {', '.join(LABEL_FORMATS)}")
    mode, layout = img.mode, layout or ""
    # Pillow hands out samples as stored only for these layouts; it widens 2- and 4-bit
    # greyscale ("L;4": a stored 1 reads as 17) and inverts white-is-zero TIFFs ("L;I").
    as_stored = layout in ("", mode) or (mode == "P" and layout.startswith("P;"))
    if mode in ("P", "L", "1") and as_stored:
        return np.asarray(img, dtype=np.uint8), orientation  # "1" gives 0 and 1
    if mode == "I" or mode.startswith("I;16"):
        values = np.asarray(img)                              # (H, W) uint16 or int32
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > 255:
            bad = high if high > 255 else low
            row, column = np.argwhere(values == bad)[0].tolist()
            raise ImageFileError(
                f"label {path} ({mode}) holds the value {bad} at row {row}, column {column}; "
                f"class indices must lie in 0..255 (255 = void)")
        return values.astype(np.uint8), orientation
    if mode in ("RGB", "RGBA") and ";16" not in layout:
        rgba = np.asarray(img)                                # (H, W, 3 or 4)
        if mode == "RGBA" and (rgba[:, :, 3] != 255).any():
            raise ImageFileError(f"label {path} has transparent pixels; a label map has no "
                                 "transparency (save it as RGB, palette or greyscale)")
        return _colours_to_indices(rgba[:, :, :3], colours, path), orientation
    stored = f" stored as {layout}" if layout else ""
    raise ImageFileError(f"label {path} is a {mode} image{stored}, which does not hold class "
                         "indices exactly; save labels as 8-bit palette or greyscale PNGs")


def check_label_values(label, num_classes, path):
    """Refuse a label map with a value that is neither a class index nor void (255).

    Parameters
    ----------
    label : (H, W) int array
    num_classes : int
        Classes 0..num_classes-1 are valid.
    path : path-like
        The label's file, named in the message.

    Raises
    ------
    ImageFileError
        Naming the file, the first bad value, where it is, and the class count.
    """
    bad = (label >= num_classes) & (label != VOID_LABEL)
    if bad.any():
        row, column = np.argwhere(bad)[0].tolist()
        values = np.unique(label[bad]).tolist()
        raise ImageFileError(
            f"label {path} holds the value {label[row, column]} at row {row}, column {column} "
            f"(values outside the classes: {values[:8]}{' ...' if len(values) > 8 else ''}); "
            f"the dataset has {num_classes} classes, 0..{num_classes - 1}, and 255 = void")

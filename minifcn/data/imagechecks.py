"""What an image file declares, checked against what it holds, before Pillow decodes it.

Pillow refuses a PNG, BMP or raw TIFF strip whose data ends early ("image file is
truncated"). Two kinds of file get past that and would come out as a large image of filler,
decoded without a word, after allocating memory for every declared pixel:

* a TIFF whose strips or tiles do not cover the image it declares (Pillow leaves the pixels
  no tile covers black): :func:`tiles_cover`;
* a JPEG whose compressed data ends before its declared blocks do (libjpeg decodes what
  there is and fills the rest grey, with a warning Pillow does not pass on):
  :func:`jpeg_can_hold`, a lower bound on the bytes any Huffman-coded JPEG of that size needs.
"""
from __future__ import annotations

import numpy as np

__all__ = ["tiles_cover", "jpeg_can_hold"]

# Start-of-frame markers of arithmetic-coded JPEGs, which can spend less than a bit a block.
_ARITHMETIC_FRAMES = tuple(bytes([0xFF, marker]) for marker in (0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                                                                0xCF))


def tiles_cover(img):
    """Whether the tiles Pillow is about to decode cover every pixel of the image.

    Parameters
    ----------
    img : PIL.Image.Image
        Opened, not yet loaded (``img.tile`` lists (codec, (x0, y0, x1, y1), offset, args)).

    Notes
    -----
    A PNG, JPEG or BMP is one tile the size of the image; a TIFF has one per strip or tile.
    GIF is exempt: a frame may cover part of the screen, the rest being the background.
    The image is cut along every tile edge into cells that each tile covers wholly or not at
    all; every cell must lie in some tile.
    """
    width, height = img.size
    boxes = [tile[1] for tile in img.tile]
    if img.format == "GIF" or not boxes:
        return True
    clipped = [(min(max(x0, 0), width), min(max(y0, 0), height),
                min(max(x1, 0), width), min(max(y1, 0), height)) for x0, y0, x1, y1 in boxes]
    xs = sorted({0, width} | {b[i] for b in clipped for i in (0, 2)})
    ys = sorted({0, height} | {b[i] for b in clipped for i in (1, 3)})
    column, row = {x: i for i, x in enumerate(xs)}, {y: i for i, y in enumerate(ys)}
    covered = np.zeros((len(ys) - 1, len(xs) - 1), dtype=bool)  # (cell rows, cell columns)
    for x0, y0, x1, y1 in clipped:
        covered[row[y0]:row[y1], column[x0]:column[x1]] = True
    return bool(covered.all())


def jpeg_can_hold(img, data):
    """Whether a JPEG file has at least the bytes its declared size needs.

    Parameters
    ----------
    img : PIL.JpegImagePlugin.JpegImageFile
        Opened; ``img.layer`` lists (component id, horizontal, vertical sampling, table).
    data : bytes
        The whole file.

    Notes
    -----
    A scan walks the image in MCUs of ``8 * h_max`` by ``8 * v_max`` pixels, each holding
    at least one 8x8 block of every component, and Huffman coding spends at least one bit on
    the DC difference of every block. So a file needs at least one bit per MCU:
    ``ceil(W / (8 h_max)) * ceil(H / (8 v_max)) <= 8 * len(data)``. Real files spend two or
    more (a flat grey progressive JPEG: about 2). Arithmetic-coded JPEGs are not judged.
    """
    if any(marker in data for marker in _ARITHMETIC_FRAMES):
        return True
    h_max = max([1] + [layer[1] for layer in img.layer])  # a corrupt 0 must not divide
    v_max = max([1] + [layer[2] for layer in img.layer])
    mcus = -(-img.width // (8 * h_max)) * -(-img.height // (8 * v_max))  # ceil divisions
    return mcus <= 8 * len(data)

"""Image files read the one way the whole package reads them: fully decoded, scaled, oriented.

Every image of a dataset and every image given to ``minifcn predict`` comes through
:func:`read_image` (or :func:`decode_image` where a label must follow it), so one set of rules
holds everywhere:

* **Decoded completely, inside the check.** ``img.load()`` runs here, so a truncated or
  corrupt file is refused with one line naming it instead of being half read; so is a file
  that declares more pixels than it stores (:mod:`minifcn.data.imagechecks`).
* **Decompression bombs.** A file that declares more than ``PIL.Image.MAX_IMAGE_PIXELS``
  pixels (Pillow's bound, 89,478,485 by default: about 9459 x 9459, 268 MB as RGB) is
  refused before a pixel is decoded. Pillow itself only warns between one and two times that
  bound; here the warning is an error too. Raise ``Image.MAX_IMAGE_PIXELS`` to read larger
  images on purpose.
* **Only the formats photographs and datasets come in** (PNG, JPEG and its MPO variant, BMP,
  TIFF, GIF, WebP, PNM). Pillow's other plugins never see an untrusted file; EPS, for one, would run
  Ghostscript on it.
* **Values by their real bit depth, never clipped.** 16- and 32-bit greyscale (Pillow modes
  ``I;16``, ``I;16B``, ``I``) is divided by the largest value its bit depth holds (65535, or
  ``2**bits - 1`` as a TIFF declares it); Pillow already widens 2- and 4-bit greyscale and
  PNM's ``maxval`` to the full range, and reduces 16-bit RGB PNGs to their high byte.
  Floating-point images are read as intensities in 0..1. A value outside its range refuses
  the file, naming the range found.
* **Transparency is composited over black**: a transparent pixel becomes black and a
  half-transparent one half as bright, as it would look on a black page; no alpha reaches
  the network. Palette, greyscale, CMYK and YCbCr images are converted to RGB by Pillow.
* **EXIF orientation** (also PNG eXIf and XMP tags, as Pillow reads them) is applied, as
  ``PIL.ImageOps.exif_transpose`` would: the array is what a viewer shows. :func:`orient`
  does it on arrays, so that a label map can be turned exactly like its image.
"""
from __future__ import annotations

import contextlib
import io
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from minifcn.data.imagechecks import jpeg_can_hold, tiles_cover
from minifcn.errors import FileFormatError, one_line

__all__ = ["ImageFileError", "IMAGE_FORMATS", "open_decoded", "orient", "decode_image",
           "read_image"]

IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP", "PPM")  # JPEG includes MPO

# What Pillow raises for bytes it cannot decode. The fuzz tests met OSError ("image file is
# truncated", "broken data stream", UnidentifiedImageError), ValueError, SyntaxError ("broken
# PNG file") and TypeError (a TIFF strip offset stored as a fraction). EOFError and
# struct.error are what its header parsers raise on short data; Image.open turns them into
# UnidentifiedImageError, but load() and getexif() do not.
_DECODE_ERRORS = (OSError, ValueError, TypeError, SyntaxError, EOFError, struct.error)

# EXIF orientation -> (swap rows and columns, then flip rows, then flip columns), from the
# eight cases of the TIFF/EXIF specification (tag 274): 6 is "turn 90 degrees clockwise".
_ORIENTATIONS = {1: (False, False, False), 2: (False, False, True), 3: (False, True, True),
                 4: (False, True, False), 5: (True, False, False), 6: (True, False, True),
                 7: (True, True, True), 8: (True, True, False)}


class ImageFileError(FileFormatError):
    """An image or label file cannot be read as one; the message names the file."""


@contextlib.contextmanager
def _refusing(path, what):
    """Turn Pillow's exceptions about the bytes of ``path`` into one :class:`ImageFileError`."""
    with warnings.catch_warnings():
        # Pillow's other warnings ("Corrupt EXIF data") would print a second line beside the
        # one-line error; a corrupt EXIF block reads as orientation 1, as viewers show it
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except ImageFileError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageFileError(
                f"{what} {path} is refused as a possible decompression bomb: {one_line(exc)} "
                f"(the bound is PIL.Image.MAX_IMAGE_PIXELS)") from None
        except UnidentifiedImageError:
            raise ImageFileError(f"{what} {path} is not an image in one of the formats read "
                                 f"({', '.join(IMAGE_FORMATS)})") from None
        except _DECODE_ERRORS as exc:
            raise ImageFileError(
                f"{what} {path} is truncated or corrupt: {one_line(exc)}") from None


def _orientation(img):
    """The EXIF orientation 1..8 of an open image; 1 when absent or not one of the eight."""
    value = img.getexif().get(ExifTags.Base.Orientation, 1)
    # A viewer (and exif_transpose) shows an image with a meaningless tag as it is stored.
    return value if isinstance(value, int) and value in _ORIENTATIONS else 1


def _check_declared_size(img, data, path, what):
    """Refuse a file that declares more pixels than it holds (see :mod:`.imagechecks`)."""
    size = f"{img.width}x{img.height}"
    if not tiles_cover(img):
        raise ImageFileError(f"{what} {path} is corrupt: its strips or tiles do not cover "
                             f"the {size} pixels it declares")
    if img.format in ("JPEG", "MPO"):
        if not jpeg_can_hold(img, data):
            raise ImageFileError(f"{what} {path} is truncated: {len(data)} bytes cannot hold "
                                 f"the {size} JPEG it declares")


def open_decoded(path, what="image"):
    """Open ``path`` with Pillow and decode all of its pixels (the first frame).

    Parameters
    ----------
    path : path-like
    what : str
        How messages name the file (``'image'``, ``'label'``).

    Returns
    -------
    img : PIL.Image.Image
        Loaded; nothing more is read from the file.
    orientation : int
        Its EXIF orientation, 1..8.
    layout : str or None
        Pillow's raw mode of the stored samples (``'L;4'``, ``'RGB;16B'`` ...), for callers
        that must know what Pillow widened or narrowed; ``None`` when Pillow does not say.

    Raises
    ------
    ImageFileError
        Not an image, truncated, corrupt, or more pixels than ``Image.MAX_IMAGE_PIXELS``.
    OSError
        The file cannot be opened (missing, a folder, no permission), named by the OS.
    """
    path = Path(path)
    data = path.read_bytes()  # an OSError naming the file when it cannot be read
    # Pillow reads from memory: where a plugin skips a chunk by reading as many bytes as the
    # file says it holds, it gets what there is, instead of a buffer of the claimed size.
    with _refusing(path, what):
        img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        _check_declared_size(img, data, path, what)
        args = img.tile[0][3] if img.tile else None  # read before load() empties the list
        layout = args[0] if isinstance(args, tuple) and args else args
        img.load()
        orientation = _orientation(img)
    if img.width < 1 or img.height < 1:
        raise ImageFileError(f"{what} {path} has no pixels ({img.width}x{img.height})")
    return img, orientation, layout if isinstance(layout, str) else None


def orient(pixels, orientation):
    """Turn an array from a file's stored order into the order its EXIF orientation shows.

    Parameters
    ----------
    pixels : (H, W) or (H, W, C) array
        Rows and columns as stored in the file.
    orientation : int
        EXIF orientation 1..8: 1 as stored, 2 mirrored left-right, 3 turned 180 degrees,
        4 mirrored top-bottom, 5 transposed, 6 turned 90 degrees clockwise, 7 transversed,
        8 turned 90 degrees anticlockwise.

    Returns
    -------
    (H, W[, C]) array for 1-4, (W, H[, C]) for 5-8; contiguous.
    """
    swap, flip_rows, flip_columns = _ORIENTATIONS[orientation]
    if swap:
        pixels = pixels.swapaxes(0, 1)  # (H, W, ...) -> (W, H, ...)
    if flip_rows:
        pixels = pixels[::-1]
    if flip_columns:
        pixels = pixels[:, ::-1]
    return np.ascontiguousarray(pixels)


def _largest_value(img):
    """The largest value a sample of an integer greyscale image ("I;16", "I") can hold."""
    bits, signed = 16, False  # I;16 modes; Pillow widens PNM's maxval to 16 bits too
    tags = getattr(img, "tag_v2", None)  # a TIFF declares its sample size
    if tags is not None:
        declared, sample_format = tags.get(258), tags.get(339)  # BitsPerSample, SampleFormat
        declared = declared[0] if isinstance(declared, tuple) and declared else declared
        if isinstance(declared, int) and 1 <= declared <= 32:
            bits = declared
        sample_format = (sample_format[0] if isinstance(sample_format, tuple) and sample_format
                         else sample_format)
        signed = sample_format == 2
    return 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1


def _intensities(img, path):
    """(H, W) uint8 of a deep greyscale image: integer or float samples scaled to 0-255."""
    values = np.asarray(img)  # (H, W) uint16, int32 or float32
    largest = 1.0 if img.mode == "F" else _largest_value(img)
    kind = "floating-point" if img.mode == "F" else f"{img.mode} integer"
    low, high = values.min(), values.max()
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > largest:
        raise ImageFileError(
            f"image {path} holds {kind} pixel values from {low:g} to {high:g}, outside "
            f"0..{largest:g}; expected intensities in that range (convert it to 8-bit, or "
            f"scale float images to 0..1)")
    scaled = values.astype(np.float32) * np.float32(255.0 / largest)
    return np.rint(scaled).astype(np.uint8)


def decode_image(path):
    """An image file's pixels as RGB in the file's stored order, and its EXIF orientation.

    Returns
    -------
    image : (H, W, 3) uint8 array
        RGB, 0-255 by the file's bit depth, transparency composited over black.
    orientation : int
        EXIF orientation 1..8, to give to :func:`orient`.
    """
    img, orientation, _ = open_decoded(path, "image")
    if img.mode == "P" and img.palette is None:  # a PNG without its PLTE chunk
        raise ImageFileError(f"image {path} is corrupt: a palette image without a palette")
    if img.mode in ("F", "I") or img.mode.startswith("I;16"):
        grey = _intensities(img, path)  # (H, W)
        return np.repeat(grey[:, :, None], 3, axis=2), orientation  # (H, W) -> (H, W, 3)
    if img.has_transparency_data:
        with _refusing(path, "image"):
            rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)  # (H, W, 4)
        over_black = rgba[:, :, :3] * (rgba[:, :, 3:] / 255.0)        # (H, W, 3)
        return np.rint(over_black).astype(np.uint8), orientation
    with _refusing(path, "image"):
        return np.asarray(img.convert("RGB"), dtype=np.uint8), orientation


def read_image(path):
    """An image file as an (H, W, 3) uint8 RGB array, turned as its EXIF orientation says.

    See the module's notes for bit depths, transparency and what is refused.

    Raises
    ------
    ImageFileError
        Not a readable image (truncated, corrupt, a bomb, values outside their range).
    OSError
        The file cannot be opened.
    """
    image, orientation = decode_image(path)
    return orient(image, orientation)

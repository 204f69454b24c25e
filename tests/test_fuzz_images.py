"""Fuzzing the image and label readers with damaged and lying files.

Small valid PNG (RGB, 16-bit grey, palette), JPEG (with an EXIF orientation), BMP and TIFF
(float, 16-bit) files are cut short, have bits flipped (for PNG also with every chunk's CRC
recomputed, so the damage reaches the decoder instead of the checksum), or have the width and
height in their headers replaced. :func:`read_image` and :func:`decode_label` must either
refuse each file with one of the project's errors naming it, or return finite arrays of the
promised shape, within :func:`fuzz_util.read_or_refuse`'s time and allocation bounds.

Pillow allocates memory for every pixel a header declares, up to the documented bound
``Image.MAX_IMAGE_PIXELS`` (beyond it the file is refused as a decompression bomb). While a
fuzzed file is read the bound is lowered to 2**20 pixels, so that the lying sizes reach past
it often and what any case may allocate stays within ``fuzz_util``'s allocation bound.

Run with ``--hypothesis-show-statistics`` to see how each case ended.
"""
import contextlib
import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from fuzz_util import assert_finite_arrays, read_or_refuse
from images_testutil import PNG_SIGNATURE, png_bytes
from minifcn.data import ImageFileError, decode_label, read_image
from minifcn.data.palette import voc_colormap

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _encoded(pixels, fmt, mode=None, **options):
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, fmt, **options)
    return buffer.getvalue()


def _seeds():
    """name -> bytes of a small valid file of each kind the readers meet."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[274] = 6
    palette = Image.frombytes("P", (11, 9), rng.integers(0, 21, 99, dtype=np.uint8).tobytes())
    palette.putpalette(voc_colormap(256).ravel().tolist())
    buffer = io.BytesIO()
    palette.save(buffer, "PNG")
    return {
        "png": _encoded(rgb, "PNG"),
        "png16": png_bytes(rng.integers(0, 65536, (8, 7), dtype=np.uint16)),
        "png-palette": buffer.getvalue(),
        "jpeg": _encoded(rgb, "JPEG", quality=90, exif=exif.tobytes()),
        "bmp": _encoded(rgb[:7, :9], "BMP"),
        "tiff-float": _encoded(rng.random((5, 6), dtype=np.float32), "TIFF"),
        "tiff16": _encoded(rng.integers(0, 65536, (5, 6), dtype=np.uint16), "TIFF"),
    }


SEEDS = _seeds()
NAMES = st.sampled_from(sorted(SEEDS))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_images")


@contextlib.contextmanager
def _pixel_bound(pixels):
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _check(path, data):
    """Both readers on one fuzzed file: refused the project's way, or finite arrays."""
    path.write_bytes(data)
    with _pixel_bound(2**20):
        image = read_or_refuse(read_image, path)
        label = read_or_refuse(lambda p: decode_label(p)[0], path)
    if image is not None:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert_finite_arrays(image, f"{path.name}: ")
    if label is not None:
        assert label.dtype == np.uint8 and label.ndim == 2
    event(f"image {'read' if image is not None else 'refused'}, "
          f"label {'read' if label is not None else 'refused'}")


@FUZZ
@given(name=NAMES, keep=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_files(folder, name, keep):
    data = SEEDS[name]
    _check(folder / f"cut-{name}", data[:int(len(data) * keep)])


def _flip(data, flips):
    data = bytearray(data)
    for where, bit in flips:
        data[where % len(data)] ^= 1 << bit
    return bytes(data)


FLIPS = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 7)), min_size=1, max_size=8)


@FUZZ
@given(name=NAMES, flips=FLIPS)
def test_bit_flips(folder, name, flips):
    _check(folder / f"flipped-{name}", _flip(SEEDS[name], flips))


def _with_png_crcs(data):
    """``data`` with the CRC of every chunk whose length still fits the file recomputed."""
    out, at = bytearray(data), len(PNG_SIGNATURE)
    while at + 12 <= len(out):
        (length,) = struct.unpack_from(">I", out, at)
        end = at + 8 + length
        if end + 4 > len(out):
            break
        struct.pack_into(">I", out, end, zlib.crc32(bytes(out[at + 4:end])))
        at = end + 4
    return bytes(out)


@FUZZ
@given(name=st.sampled_from(["png", "png16", "png-palette"]), flips=FLIPS)
def test_bit_flips_past_the_png_checksums(folder, name, flips):
    data = SEEDS[name]
    flips = [(len(PNG_SIGNATURE) + where % (len(data) - len(PNG_SIGNATURE)), bit)
             for where, bit in flips]  # leave the signature, damage the chunks
    _check(folder / f"crc-{name}", _with_png_crcs(_flip(data, flips)))


def _set_size(name, data, width, height):
    """``data`` with the header's width and height replaced (and its checksum kept valid)."""
    out = bytearray(data)
    if name.startswith("png"):  # IHDR data starts at 16: width, height as big-endian uint32
        struct.pack_into(">II", out, 16, width % 2**32, height % 2**32)
        return _with_png_crcs(bytes(out))
    if name == "bmp":  # BITMAPINFOHEADER: int32 width at 18, height at 22 (negative: top-down)
        struct.pack_into("<ii", out, 18, width % 2**31, height % 2**32 - 2**31)
        return bytes(out)
    if name == "jpeg":  # the SOF0 segment: FF C0, length, precision, height, width (uint16)
        at = data.index(b"\xff\xc0")
        struct.pack_into(">HH", out, at + 5, height % 2**16, width % 2**16)
        return bytes(out)
    # TIFF (little-endian): first IFD's entries ImageWidth (256) and ImageLength (257)
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind = struct.unpack_from("<HH", data, entry)
        if tag in (256, 257):
            value = width if tag == 256 else height
            if kind == 3:  # SHORT
                struct.pack_into("<H", out, entry + 8, value % 2**16)
            else:          # LONG
                struct.pack_into("<I", out, entry + 8, value % 2**32)
    return bytes(out)


# Sizes from 0 through the decompression-bomb bound (89,478,485 pixels) and far past it.
SIDES = st.one_of(st.integers(0, 64), st.integers(0, 20_000), st.integers(0, 2**32 - 1))


@FUZZ
@given(name=NAMES, width=SIDES, height=SIDES)
def test_crafted_header_sizes(folder, name, width, height):
    _check(folder / f"sized-{name}", _set_size(name, SEEDS[name], width, height))


# What the fuzzer found, kept as fixed cases (each failed before the fix named).


def test_tiff_strips_that_do_not_cover_its_height(folder):
    # Found by a bit flip in ImageLength: 5 rows stored, 1,048,581 declared. Pillow decoded
    # the strip and left the rest black (a 6 x 1048581 image from 254 bytes) until
    # imagechecks.tiles_cover.
    path = folder / "tall.tif"
    path.write_bytes(_set_size("tiff-float", SEEDS["tiff-float"], 6, 1_048_581))
    with pytest.raises(ImageFileError, match="do not cover the 6x1048581 pixels"):
        read_image(path)


def test_jpeg_declaring_more_blocks_than_its_bytes_can_code(folder):
    # Found by a crafted SOF: a 700-byte JPEG declaring 3341 x 3341 was decoded as a grey
    # image of that size (64 MiB allocated) until imagechecks.jpeg_can_hold.
    path = folder / "large.jpg"
    path.write_bytes(_set_size("jpeg", SEEDS["jpeg"], 3341, 3341))
    with pytest.raises(ImageFileError, match="cannot hold the 3341x3341 JPEG"):
        read_image(path)


def test_png_chunk_length_that_lies_allocates_nothing_of_it(folder):
    # Found by a bit flip in IDAT's length (+ 2**27 bytes): Pillow skips the rest of a chunk
    # with fp.read(length), which allocated 128 MiB for a 438-byte file until the readers
    # handed Pillow the file's bytes in memory.
    data = bytearray(SEEDS["png"])
    at = data.index(b"IDAT") - 4
    data[at] |= 0x08
    path = folder / "long-chunk.png"
    path.write_bytes(_with_png_crcs(bytes(data)))
    read_or_refuse(read_image, path)  # within fuzz_util's allocation bound


def test_palette_png_without_its_palette(folder):
    # Found by a bit flip in the PLTE chunk's type: Pillow opened a palette image with no
    # palette, and its has_transparency_data failed an internal assert (a raw traceback).
    data = SEEDS["png-palette"]
    at = data.index(b"PLTE") - 4
    (length,) = struct.unpack_from(">I", data, at)
    path = folder / "no-palette.png"
    path.write_bytes(data[:at] + data[at + 12 + length:])  # the chunk left out
    with pytest.raises(ImageFileError, match="palette image without a palette"):
        read_image(path)
    np.testing.assert_array_equal(decode_label(path)[0].shape, (9, 11))  # indices still there


def test_tiff_strip_offset_of_the_wrong_type(folder):
    # Found by a bit flip in a TIFF tag's type: StripOffsets as a RATIONAL made Pillow's
    # load() raise TypeError, which came out as a raw traceback.
    data = bytearray(SEEDS["tiff16"])
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        if struct.unpack_from("<H", data, entry)[0] == 273:  # StripOffsets
            struct.pack_into("<H", data, entry + 2, 5)       # LONG -> RATIONAL
    path = folder / "rational-offset.tif"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageFileError, match="rational-offset.tif is truncated or corrupt"):
        read_image(path)

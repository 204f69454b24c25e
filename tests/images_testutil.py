"""Image files written byte by byte, where Pillow cannot write them (16-bit RGB, lying headers).

The PNG layout (ISO/IEC 15948): an 8-byte signature, then chunks of (length, type, data,
CRC-32 of type and data); IHDR holds width, height, bit depth, colour type, compression,
filter and interlace; IDAT the zlib stream of the rows, each row led by its filter byte.
"""
import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (grey, grey+alpha, RGB, RGBA)


def png_chunk(kind, data):
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(pixels, size=None):
    """A PNG file of ``pixels``, (H, W) or (H, W, C) uint8 or uint16 (8 or 16 bits a sample).

    ``size`` = (width, height) writes those in the header instead of the array's, leaving the
    pixel data as it is: a file that lies about its size.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width, channels = pixels.shape
    bit_depth = 8 * pixels.dtype.itemsize
    width, height = size if size is not None else (width, height)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, COLOUR_TYPES[channels], 0, 0, 0)
    samples = pixels.astype(f">u{pixels.dtype.itemsize}")  # PNG samples are big-endian
    rows = b"".join(b"\x00" + row.tobytes() for row in samples)  # filter type 0 (none)
    return (PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))

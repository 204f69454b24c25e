"""Just enough of the protobuf wire format to read a ``.caffemodel``, with no protoc.

A protobuf message is a flat sequence of fields. Each field starts with a *tag*, a varint
holding ``field_number << 3 | wire_type``; the wire type says how long the value is:

=========  ==================  =============================================
wire type  name                value
=========  ==================  =============================================
0          varint              7 bits per byte, low group first, high bit = "more"
1          fixed64             8 bytes little-endian (double, fixed64)
2          length-delimited    a varint length, then that many bytes (string, bytes,
                               a nested message, or a *packed* repeated number field)
5          fixed32             4 bytes little-endian (float, fixed32)
=========  ==================  =============================================

Wire types 3 and 4 (groups) are obsolete and are refused. Nothing says which fields a
message holds or in what order: readers keep the fields they know and skip the rest by wire
type, which is all that :func:`iter_fields` does. Nested messages are read by calling it
again on the ``(start, end)`` span of a length-delimited field.

The bytes may come from anywhere, so every step is bounded by the bytes present: a read
never leaves the span of the message it belongs to (a length that runs past it is an
error), each loop consumes at least one byte per turn, a varint has at most 10 bytes and
must fit in 64 bits, and nothing here recurses: a reader knows how deep its messages nest
and calls :func:`iter_fields` once per level (four for a caffemodel).
"""
from __future__ import annotations

import numpy as np

from ..errors import FileFormatError

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


class WireFormatError(FileFormatError):
    """The bytes are not a well-formed protobuf message (truncated or not protobuf)."""


def read_varint(buf, pos: int, end: int):
    """Decode the varint starting at ``buf[pos]``; return ``(value, next position)``."""
    value, shift = 0, 0
    while True:
        if pos >= end:
            raise WireFormatError(f"varint runs past the end of the message at byte {pos}")
        byte = buf[pos]
        pos += 1
        if shift == 63 and byte > 1:  # the 10th byte holds bit 63 and nothing else
            raise WireFormatError(f"varint overflows 64 bits at byte {pos}")
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def iter_fields(buf, start: int = 0, end: int | None = None):
    """Yield every field of the message in ``buf[start:end]``.

    Yields
    ------
    (field_number, wire_type, value)
        ``value`` is an int for varints, and the ``(start, end)`` byte span of the payload
        for the other wire types (so large float arrays are never copied while scanning).
    """
    end = len(buf) if end is None else end
    if not 0 <= start <= end <= len(buf):
        raise WireFormatError(f"message span {start}..{end} is outside the {len(buf)} bytes")
    pos = start
    while pos < end:
        tag, pos = read_varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise WireFormatError(f"field number 0 at byte {pos}: not a protobuf message")
        if wire == VARINT:
            value, pos = read_varint(buf, pos, end)
            yield number, wire, value
            continue
        if wire == LENGTH_DELIMITED:
            length, pos = read_varint(buf, pos, end)
        elif wire == FIXED64:
            length = 8
        elif wire == FIXED32:
            length = 4
        else:
            raise WireFormatError(f"unsupported wire type {wire} (field {number}) at byte {pos}")
        if pos + length > end:
            raise WireFormatError(
                f"field {number} needs {length} bytes at byte {pos} but the message ends at {end}"
            )
        yield number, wire, (pos, pos + length)
        pos += length


def packed_varints(buf, span, max_count: int) -> list:
    """Decode a packed repeated varint field (e.g. ``int64 dim``) from its byte span.

    More than ``max_count`` values is an error, raised before they are all decoded.
    """
    pos, end = span
    values = []
    while pos < end:
        if len(values) == max_count:
            raise WireFormatError(f"a packed field of more than {max_count} values at byte {pos}")
        value, pos = read_varint(buf, pos, end)
        values.append(value)
    return values


def fixed_array(buf, span, dtype) -> np.ndarray:
    """View a packed ``float`` (``'<f4'``) or ``double`` (``'<f8'``) field as an array."""
    start, end = span
    dtype = np.dtype(dtype)
    if (end - start) % dtype.itemsize:
        raise WireFormatError(f"packed {dtype} field of {end - start} bytes is not whole elements")
    return np.frombuffer(buf, dtype=dtype, count=(end - start) // dtype.itemsize, offset=start)


def gather_fixed(buf, starts, dtype) -> np.ndarray:
    """Values of an *unpacked* repeated float/double field: one field per value.

    ``starts`` holds the byte offset of each value (spans :func:`iter_fields` checked);
    they are gathered byte by byte in ``itemsize`` vectorised steps rather than one small
    array per value.
    """
    dtype = np.dtype(dtype)
    offsets = np.asarray(starts, dtype=np.int64)
    raw = np.frombuffer(buf, dtype=np.uint8)
    picked = np.empty((len(offsets), dtype.itemsize), dtype=np.uint8)  # (n, itemsize) bytes
    for k in range(dtype.itemsize):
        picked[:, k] = raw[offsets + k]
    return picked.reshape(-1).view(dtype)


def as_text(buf, span) -> str:
    """Decode a ``string`` field."""
    start, end = span
    return bytes(buf[start:end]).decode("utf-8", errors="replace")


def to_signed64(value: int) -> int:
    """Reinterpret a varint as ``int64`` (negative numbers are sent as 10-byte varints)."""
    return value - (1 << 64) if value >= 1 << 63 else value

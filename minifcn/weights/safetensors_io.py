"""Read ``.safetensors`` files, checking every number in the header against the file.

The format is small enough to read by hand::

    8 bytes      N, the header length (unsigned little-endian)
    N bytes      a JSON object: name -> {"dtype": "F32", "shape": [64, 3, 3, 3],
                                         "data_offsets": [begin, end]}
                 (and an optional "__metadata__" of strings, ignored here)
    the rest     the data section; a tensor's bytes are data[begin:end], little-endian,
                 row-major (C order)

Nothing is unpickled, but the header is still data from the internet: a header length past
the end of the file, offsets outside the data section, overlapping or leaving holes, a shape
whose size does not match its byte range, or an unknown dtype would make a careless reader
allocate what the file does not hold or read bytes that are not the tensor's. All of it is
checked before a single tensor is read. The names are then mapped like a torch state dict's
(torchvision or timm names, see :mod:`.naming`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .layout import WeightFileError, bfloat16_to_float32

# safetensors' own reader refuses headers above 100 MB; VGG16's is about 3 kB.
MAX_HEADER = 100 << 20
# The format's dtypes as NumPy reads their bytes. Complex and integer tensors are read as
# they are: which dtypes make weights is the converter's to say (naming the key).
DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "C64": "<c8",
          "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
          "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1"}
# A BOOL byte other than 0 or 1 is no boolean NumPy can hold, and no weight either.
NOT_NUMBERS = {"BOOL": "booleans"}


def read_safetensors(path) -> dict:
    """Every tensor of a safetensors file as ``{name: numpy array}``.

    ``BF16`` tensors come back as float32 (exactly: bfloat16 is float32's upper half),
    the other dtypes as the file holds them (``C64`` as complex64, integers as integers).

    Raises
    ------
    WeightFileError
        If the file is truncated or malformed, or its header does not agree with its size;
        the message names the file and, where there is one, the tensor.
    """
    path = Path(path)
    src, size = path.name, path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise WeightFileError(f"{src}: {size} bytes, too short for a safetensors file")
        header_len = int.from_bytes(head, "little")
        if header_len > min(MAX_HEADER, size - 8):
            raise WeightFileError(f"{src}: header length {header_len} bytes; the file has "
                                  f"{size - 8} after the length (and at most {MAX_HEADER} "
                                  "are accepted)")
        entries = _parse_header(f.read(header_len), src)
        data_start, data_len = 8 + header_len, size - 8 - header_len
        specs = _check_entries(entries, data_len, src)
        arrays = {}
        for name, (dtype, shape, begin, end) in specs.items():
            buf = bytearray(end - begin)  # writable, and no bigger than the checked range
            f.seek(data_start + begin)
            if f.readinto(buf) != len(buf):
                raise WeightFileError(f"{src}: tensor {name!r:.80}: the file ended while "
                                      "reading it")
            arrays[name] = _to_array(buf, dtype, shape)
    return arrays


def _parse_header(raw, src):
    """The JSON header as a dict; a key given twice is refused (which one would be meant?)."""
    def no_duplicates(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise WeightFileError(f"{src}: the header names {key!r:.80} twice")
            seen.add(key)
        return dict(pairs)

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise WeightFileError(f"{src}: the header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise WeightFileError(f"{src}: the header is a JSON {type(header).__name__}; "
                              "expected an object")
    header.pop("__metadata__", None)
    return header


def _check_entries(header, data_len, src):
    """``{name: (dtype, shape, begin, end)}`` once every entry agrees with the file."""
    specs = {}
    for name, entry in header.items():
        where = f"{src}: tensor {name!r:.80}"
        if not name.isprintable():  # names go into messages, which are one line
            raise WeightFileError(f"{where}: the name is not printable text")
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
            raise WeightFileError(f"{where}: expected dtype, shape and data_offsets, found "
                                  f"{entry!r:.80}")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        dtype = dtype if isinstance(dtype, str) else repr(dtype)  # JSON can hold anything
        if dtype in NOT_NUMBERS:
            raise WeightFileError(f"{where} holds {NOT_NUMBERS[dtype]} (dtype {dtype}); "
                                  "expected float or integer weights")
        if dtype not in DTYPES:
            raise WeightFileError(f"{where} has dtype {dtype!r:.20}; expected one of "
                                  f"{', '.join(DTYPES)}")
        if not _int_list(shape) or any(d > data_len for d in shape):
            raise WeightFileError(f"{where} has shape {shape!r:.80}; expected a list of "
                                  "sizes, none larger than the data section")
        if not _int_list(offsets) or len(offsets) != 2 or not 0 <= offsets[0] <= offsets[1]:
            raise WeightFileError(f"{where} has data_offsets {offsets!r:.80}; expected "
                                  "[begin, end] with 0 <= begin <= end")
        begin, end = offsets
        if end > data_len:
            raise WeightFileError(f"{where} ends at byte {end} of a {data_len}-byte data "
                                  "section")
        nbytes = int(np.prod(shape, dtype=object)) * np.dtype(DTYPES[dtype]).itemsize
        if end - begin != nbytes:
            raise WeightFileError(f"{where} has shape {tuple(shape)} of {dtype} = {nbytes} "
                                  f"bytes, but data_offsets give {end - begin}")
        specs[name] = (dtype, tuple(shape), begin, end)
    # As the format requires, the tensors tile the data section: no overlap (two tensors
    # sharing bytes) and no hole (bytes that belong to no tensor could hide anything).
    covered, previous = 0, None
    for begin, end, name in sorted((b, e, n) for n, (_, _, b, e) in specs.items()):
        if begin < covered:
            raise WeightFileError(f"{src}: tensors {previous!r:.80} and {name!r:.80} overlap "
                                  "in the file")
        if begin > covered:
            raise WeightFileError(f"{src}: bytes {covered}..{begin} of the data section "
                                  "belong to no tensor")
        covered, previous = end, name
    if covered != data_len:
        raise WeightFileError(f"{src}: bytes {covered}..{data_len} of the data section "
                              "belong to no tensor")
    return specs


def _int_list(value):
    """A JSON list of non-negative integers (``true`` is not a number here)."""
    return isinstance(value, list) and all(
        type(v) is int and v >= 0 for v in value)


def _to_array(buf, dtype, shape):
    """The tensor's bytes as an array of its shape; bfloat16 widened to float32."""
    array = np.frombuffer(buf, dtype=DTYPES[dtype]).reshape(shape)
    if dtype == "BF16":
        return bfloat16_to_float32(array)
    return array

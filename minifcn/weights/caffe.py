"""Read a Caffe ``.caffemodel`` (VGG16 or a whole FCN) into a minifcn state dict.

A caffemodel is one serialized ``NetParameter`` message (see :mod:`.protobuf_wire` for the
encoding). The fields used, with their numbers from ``caffe.proto``:

* ``NetParameter``: ``layers = 2`` (legacy ``V1LayerParameter``, the VGG team's file) and
  ``layer = 100`` (``LayerParameter``, the FCN releases).
* ``LayerParameter``: ``name = 1``, ``type = 2`` (a string such as ``"Convolution"``),
  ``blobs = 7``.
* ``V1LayerParameter``: ``name = 4``, ``type = 5`` (an enum: CONVOLUTION = 4,
  INNER_PRODUCT = 14, DECONVOLUTION = 39), ``blobs = 6``.
* ``BlobProto``: legacy dims ``num = 1, channels = 2, height = 3, width = 4``, ``data = 5``
  (float32), ``shape = 7`` (a ``BlobShape`` whose ``dim = 1`` is repeated int64),
  ``double_data = 8``.

Caffe's blobs already use minifcn's layouts: convolution ``(out, in, kh, kw)``,
deconvolution ``(in, out, kh, kw)``. Inner-product weights are ``(out, in)`` with the input
flattened channels-first, so fc6 reshapes straight to ``(4096, 512, 7, 7)``.
"""
from __future__ import annotations

import math
import mmap
from pathlib import Path

import numpy as np

from . import protobuf_wire as wire
from .layout import (ATONCE_SCALES, CONV_NAMES, FC6_KERNEL, SKIP_SCORERS, UPSCORE_LAYERS,
                     WeightFileError, kind_from_keys, pool5_channels)

NET_LAYERS_V1, NET_LAYER = 2, 100
V1_TYPES = {4: "Convolution", 14: "InnerProduct", 39: "Deconvolution"}
SCORE_LAYERS = frozenset({"score_fr"}.union(*SKIP_SCORERS.values()))  # 1x1 convs
UPSCORE_NAMES = frozenset().union(*UPSCORE_LAYERS.values())  # transposed convs
# BlobProto's value fields: number -> (packed wire type, one-value wire type, dtype).
DATA_FIELDS = {5: (wire.LENGTH_DELIMITED, wire.FIXED32, "<f4"),
               8: (wire.LENGTH_DELIMITED, wire.FIXED64, "<f8")}
MAX_AXES = 32  # Caffe's kMaxBlobAxes


def _read_blob(buf, span, where):
    """One ``BlobProto`` -> float32 array in its own shape (``shape`` or legacy 4-D dims).

    The shape is checked against the values actually present before anything is
    allocated: a blob cannot claim more (or fewer) values than its bytes hold.
    """
    legacy, dims, values = {}, None, {5: [], 8: []}
    for number, wtype, value in wire.iter_fields(buf, *span):
        if number in (1, 2, 3, 4) and wtype == wire.VARINT:
            legacy[number] = wire.to_signed64(value)
        elif number in DATA_FIELDS:
            packed, single, _ = DATA_FIELDS[number]
            if wtype not in (packed, single):
                raise WeightFileError(f"{where}: data field {number} has wire type {wtype}")
            values[number].append(value)
        elif number == 7 and wtype == wire.LENGTH_DELIMITED:
            # a repeated message field sent twice is merged: its dims are concatenated
            dims = (dims or []) + _blob_shape(buf, value, len(dims or []), where)
    if dims is None:  # legacy blobs are always 4-D (num, channels, height, width)
        dims = [legacy.get(i, 1) for i in (1, 2, 3, 4)] if legacy else []
    # Caffe's Blob::FromProto reads double_data when there is any, data otherwise.
    number = 8 if values[8] else 5
    spans, dtype = values[number], np.dtype(DATA_FIELDS[number][2])
    count = 0
    for start, end in spans:
        if (end - start) % dtype.itemsize:
            raise WeightFileError(f"{where}: a data field of {end - start} bytes is not "
                                  f"whole {dtype.itemsize}-byte values")
        count += (end - start) // dtype.itemsize
    if count == 0:
        raise WeightFileError(f"{where} holds no data")
    if any(d < 0 for d in dims):
        raise WeightFileError(f"{where} has shape {tuple(dims)}; sizes cannot be negative")
    if math.prod(dims) != count:  # exact: Python integers do not overflow
        raise WeightFileError(f"{where} has shape {tuple(dims)} = {math.prod(dims)} values "
                              f"but holds {count}")
    return _gather(buf, spans, dtype, where).reshape(dims)


def _blob_shape(buf, span, axes_before, where):
    """The ``dim`` list of a ``BlobShape`` message (int64s, packed or not)."""
    dims = []
    for number, wtype, value in wire.iter_fields(buf, *span):
        if number == 1 and wtype == wire.LENGTH_DELIMITED:
            dims += wire.packed_varints(buf, value, MAX_AXES + 1)
        elif number == 1 and wtype == wire.VARINT:
            dims.append(value)
        if axes_before + len(dims) > MAX_AXES:
            raise WeightFileError(f"{where} has a shape of more than {MAX_AXES} axes "
                                  "(Caffe's limit)")
    return [wire.to_signed64(d) for d in dims]


def _gather(buf, spans, dtype, where):
    """One float32 copy of a blob's values, out of the memory-mapped file.

    ``spans`` are packed fields (many values) or unpacked ones (one value per field, as
    proto2 writes repeated floats by default); runs of single values are gathered at once.
    """
    pieces, singles = [], []
    for start, end in spans:
        if end - start == dtype.itemsize:
            singles.append(start)
            continue
        if singles:
            pieces.append(wire.gather_fixed(buf, singles, dtype))
            singles = []
        pieces.append(wire.fixed_array(buf, (start, end), dtype))
    if singles:
        pieces.append(wire.gather_fixed(buf, singles, dtype))
    # views of the map must not outlive it: concatenate and astype both copy
    data = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
    if data.dtype == np.float64:  # a double beyond float32's range would become inf
        finite = np.abs(data[np.isfinite(data)])
        if finite.size and finite.max() > np.finfo(np.float32).max:
            raise WeightFileError(f"{where} holds {finite.max():g}, beyond float32's range")
    return data.astype(np.float32)


def _read_layer(buf, span, legacy_v1, src):
    """``(name, type, [blob arrays])`` of one layer message."""
    name_field, type_field, blobs_field = (4, 5, 6) if legacy_v1 else (1, 2, 7)
    type_wire = wire.VARINT if legacy_v1 else wire.LENGTH_DELIMITED
    name, ltype, blob_spans = "?", "?", []
    for number, wtype, value in wire.iter_fields(buf, *span):
        if number == name_field and wtype == wire.LENGTH_DELIMITED:
            name = wire.as_text(buf, value)
        elif number == type_field and wtype == type_wire:
            if legacy_v1:  # an enum number; only the types carrying weights matter here
                ltype = V1_TYPES.get(value, f"V1 type {value}")
            else:
                ltype = wire.as_text(buf, value)
        elif number == blobs_field and wtype == wire.LENGTH_DELIMITED:
            blob_spans.append(value)
    for text in (name, ltype):  # both go into messages and must read as one line
        if not text.isprintable():
            raise WeightFileError(f"{src}: layer name or type {text!r:.80} is not printable "
                                  "text")
    blobs = [_read_blob(buf, s, f"{src}: layer {name} blob {i}") for i, s in enumerate(blob_spans)]
    return name, ltype, blobs


def read_caffemodel(path) -> list:
    """Every layer of a caffemodel that carries weights.

    Returns
    -------
    list of (name, type, blobs)
        ``type`` is Caffe's layer type name; ``blobs`` a list of float32 arrays in Caffe's
        shapes. Layers without blobs (ReLU, pooling, crop, loss ...) are left out.

    Raises
    ------
    WeightFileError
        If the file is empty, truncated or not a NetParameter; the message names the file.
    """
    path = Path(path)
    src = path.name
    with open(path, "rb") as f:
        if path.stat().st_size == 0:
            raise WeightFileError(f"{src}: empty file")
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            layers = []
            for number, wtype, value in wire.iter_fields(buf):
                if number in (NET_LAYERS_V1, NET_LAYER) and wtype == wire.LENGTH_DELIMITED:
                    layer = _read_layer(buf, value, number == NET_LAYERS_V1, src)
                    if layer[2]:
                        layers.append(layer)
        except wire.WireFormatError as exc:
            raise WeightFileError(f"{src}: truncated or not a caffemodel ({exc})") from None
        finally:
            try:
                buf.close()
            except BufferError:  # a view still alive; the map closes when it is collected
                pass
    if not layers:
        raise WeightFileError(f"{src}: no layers with weights found (not a caffemodel?)")
    return layers


def _fc_weight(blob, ltype, name, in_channels, kernel, src):
    """Inner-product blob (legacy (1, 1, out, in) or (out, in)) -> conv weight (out, in, k, k).

    ``in_channels`` is the input map's channel count (``None`` for a 1x1 kernel: all inputs).
    """
    if ltype != "InnerProduct":
        return blob  # already a convolution (an FCN's fc6/fc7)
    if blob.ndim < 2 or int(np.prod(blob.shape[:-2])) != 1:
        raise WeightFileError(f"{src}: {name} inner-product weight has shape {blob.shape}; "
                              "expected (out, in) or legacy (1, 1, out, in)")
    out_features, in_features = blob.shape[-2], blob.shape[-1]
    in_channels = in_features if in_channels is None else in_channels
    if in_features != in_channels * kernel * kernel:
        raise WeightFileError(
            f"{src}: {name} weight has {in_features} inputs; expected "
            f"{in_channels * kernel * kernel} = {in_channels} x {kernel} x {kernel}"
        )
    return blob.reshape(out_features, in_channels, kernel, kernel)  # channels-first flatten


def caffe_state_dict(layers, src="caffemodel"):
    """Map caffemodel layers to minifcn keys.

    Returns
    -------
    arrays : dict of str -> ndarray
    atonce : bool
        True when the file has FCN-8s at-once's ``scale_pool4``/``scale_pool3`` layers.
    """
    by_name = {}
    for name, ltype, blobs in layers:
        if name in by_name:
            raise WeightFileError(f"{src}: layer {name} appears twice")
        by_name[name] = (ltype, blobs)
    arrays, unknown, atonce = {}, [], False
    # fc6 flattens pool5, whose channel count is conv5_3's output count.
    conv5_3 = by_name["conv5_3"][1][0] if "conv5_3" in by_name else None
    conv5_out = pool5_channels(conv5_3)
    for name, (ltype, blobs) in by_name.items():
        if name in ATONCE_SCALES:
            _check_scale(blobs[0], name, src)
            atonce = True
            continue
        if name in UPSCORE_NAMES:  # transposed convs: weight (in, out, kh, kw), no bias
            if len(blobs) > 1 and np.any(blobs[1]):
                raise WeightFileError(f"{src}: {name} has a non-zero bias; minifcn's "
                                      "upsampling layers have none")
            arrays[f"{name}.weight"] = blobs[0]
            continue
        if name in CONV_NAMES or name in SCORE_LAYERS:
            weight = blobs[0]
        elif name == "fc6":
            weight = _fc_weight(blobs[0], ltype, name, conv5_out, FC6_KERNEL, src)
        elif name in ("fc7", "fc8"):
            weight = _fc_weight(blobs[0], ltype, name, None, 1, src)
        else:
            unknown.append(f"{name} ({ltype})")
            continue
        arrays[f"{name}.weight"] = weight
        if len(blobs) > 1:
            arrays[f"{name}.bias"] = blobs[1].reshape(-1)  # legacy (1, 1, 1, out) -> (out,)
    if unknown:
        raise WeightFileError(f"{src}: layers with weights that VGG16/FCN does not have: "
                              + ", ".join(unknown))
    if atonce and kind_from_keys(arrays) != "fcn8s":
        raise WeightFileError(f"{src}: at-once scale layers found in a non-FCN-8s net")
    return arrays, atonce


def _check_scale(blob, name, src):
    """The at-once scales are fixed constants in minifcn; refuse a file that differs."""
    expected = ATONCE_SCALES[name]
    if not np.allclose(blob, expected, rtol=1e-4, atol=0):
        raise WeightFileError(
            f"{src}: {name} holds {float(np.mean(blob)):g} on average; minifcn's FCN-8s "
            f"at-once uses the fixed value {expected:g}"
        )

"""Coordinate maps: where each blob's pixels sit in the input image, and the crop offsets.

Every layer maps coordinates affinely. Writing the *input* coordinate of a blob's pixel
``x`` as ``a*x + b``:

- a convolution or pooling with kernel ``k``, stride ``s``, padding ``p`` looks at the window
  centred on ``s*x + (k-1)/2 - p`` of its bottom, so ``a' = a*s``, ``b' = b + a*((k-1)/2 - p)``;
- a transposed convolution is the inverse map: ``x_bottom = (x - ((k-1)/2 - p)) / s``, so
  ``a' = a/s``, ``b' = b - a*((k-1)/2 - p)/s``;
- elementwise layers (ReLU, dropout, scale, add) keep the map.

Two blobs with the same ``a`` are aligned by cropping the one whose ``b`` is smaller: pixel
``x + o`` of it sits where pixel ``x`` of the other does when ``o = (b_ref - b_big) / a``.
FCN-8s gets 5 (pool4 against upscore2), 9 (pool3 against upscore_pool4) and 31 (upscore8
against the image); FCN-16s 5 and 27; FCN-32s 19. Exact fractions are used throughout:
a 2x2 pooling contributes a half pixel.

The same walk along one axis gives every blob's length for an input of a given size
(:func:`blob_sides`), and so the smallest input a network accepts (:func:`smallest_input`):
all of it from the layer specs, with the ops' own size formulas.
"""
from __future__ import annotations

import functools
from fractions import Fraction

from ..ops._util import conv_output_size, transposed_output_size
from .spec import REFERENCE_PAD, network_specs


class CoordMap:
    """``x_input = scale * x + shift`` with exact rational coefficients."""

    __slots__ = ("scale", "shift")

    def __init__(self, scale=Fraction(1), shift=Fraction(0)):
        self.scale, self.shift = Fraction(scale), Fraction(shift)

    def through_window(self, k, s, p):
        """The map of a conv/pool output whose bottom has this map."""
        return CoordMap(self.scale * s, self.shift + self.scale * (Fraction(k - 1, 2) - p))

    def through_transposed(self, k, s, p):
        """The map of a transposed-convolution output whose bottom has this map."""
        return CoordMap(self.scale / s, self.shift - self.scale * (Fraction(k - 1, 2) - p) / s)

    def __eq__(self, other):
        return (self.scale, self.shift) == (other.scale, other.shift)

    def __repr__(self):
        return f"{_fmt(self.scale)}*x {'-' if self.shift < 0 else '+'} {_fmt(abs(self.shift))}"


def _fmt(q):
    return str(q.numerator) if q.denominator == 1 else f"{float(q):g}"


def coordinate_maps(specs):
    """Map of every blob of a network (``{"data": identity, layer name: CoordMap}``)."""
    maps = {"data": CoordMap()}
    for spec in specs:
        bottom = maps[spec.bottom[0]]
        if spec.op in ("conv", "pool"):
            maps[spec.name] = bottom.through_window(spec.kernel, spec.stride, spec.padding)
        elif spec.op == "upscore":
            maps[spec.name] = bottom.through_transposed(spec.kernel, spec.stride, spec.padding)
        elif spec.op == "crop":
            maps[spec.name] = maps[spec.bottom[1]]  # aligned with its reference by construction
        else:
            maps[spec.name] = bottom
    return maps


def crop_offsets(specs):
    """Derive every crop layer's offset from the coordinate maps.

    Returns
    -------
    dict of str -> int
        Crop layer name -> offset (the same along both axes).

    Raises
    ------
    ValueError
        If a crop would align blobs of different scales, or the offset is not a
        non-negative integer (the network's padding is inconsistent).
    """
    maps = coordinate_maps(specs)
    offsets = {}
    for spec in specs:
        if spec.op != "crop":
            continue
        big, ref = maps[spec.bottom[0]], maps[spec.bottom[1]]
        if big.scale != ref.scale:
            raise ValueError(f"{spec.name}: cannot align {spec.bottom[0]} ({big}) with "
                             f"{spec.bottom[1]} ({ref}): different scales")
        offset = (ref.shift - big.shift) / big.scale
        where = f"{spec.bottom[0]}: {big}, {spec.bottom[1]}: {ref}"
        if offset.denominator != 1:
            raise ValueError(f"{spec.name}: crop offset {offset} is not a whole pixel ({where})")
        if offset < 0:
            raise ValueError(f"{spec.name}: crop offset {offset} is negative: {spec.bottom[0]} "
                             f"starts inside {spec.bottom[1]} and cannot cover it ({where}); "
                             f"the first layer's padding is too small")
        offsets[spec.name] = int(offset)
    return offsets


def receptive_fields(specs):
    """Receptive field (pixels of the input, per side) and jump of every blob.

    For a conv/pool, ``rf' = rf + (k - 1) * jump`` and ``jump' = jump * s``; a transposed
    convolution output pixel depends on ``ceil(k / s)`` input pixels per axis, so
    ``rf' = rf + (ceil(k/s) - 1) * jump`` and ``jump' = jump / s``. A sum takes the larger
    field of its inputs. Returns ``{blob: (rf, jump)}``.
    """
    fields = {"data": (Fraction(1), Fraction(1))}
    for spec in specs:
        rf, jump = fields[spec.bottom[0]]
        if spec.op in ("conv", "pool"):
            fields[spec.name] = (rf + (spec.kernel - 1) * jump, jump * spec.stride)
        elif spec.op == "upscore":
            taps = -(-spec.kernel // spec.stride)
            fields[spec.name] = (rf + (taps - 1) * jump, jump / spec.stride)
        elif spec.op == "add":
            fields[spec.name] = max(fields[b] for b in spec.bottom)
        else:
            fields[spec.name] = (rf, jump)
    return fields


def blob_sides(specs, side, offsets=None):
    """Length of every blob along one axis, for an input ``side`` pixels long.

    Parameters
    ----------
    specs : list of LayerSpec
    side : int
        The input's height (or width).
    offsets : dict, optional
        :func:`crop_offsets` of ``specs``, when the caller has them already.

    Returns
    -------
    sides : dict of str -> int
        ``{"data": side, layer name: length}`` for every layer up to the first that has no
        room.
    misfit : str or None
        The first layer that does not fit: one with no output (a convolution's window
        larger than its padded input), or a crop that reaches past its input. ``None`` when
        the whole network fits.

    Notes
    -----
    Convolutions round down, poolings up (FCN's ceil rounding), exactly as the ops do: the
    sizes come from the same :func:`~minifcn.ops.conv_output_size`.
    """
    offsets = crop_offsets(specs) if offsets is None else offsets
    sides = {"data": side}
    for spec in specs:
        n = sides[spec.bottom[0]]
        if spec.op in ("conv", "pool"):
            n = conv_output_size(n, spec.kernel, spec.stride, spec.padding, spec.op == "pool")
        elif spec.op == "upscore":
            n = transposed_output_size(n, spec.kernel, spec.stride, spec.padding)
        elif spec.op == "crop":
            reference = sides[spec.bottom[1]]
            if offsets[spec.name] + reference > n:
                return sides, spec.name
            n = reference
        if n < 1:
            return sides, spec.name
        sides[spec.name] = n
    return sides, None


def smallest_input(specs, limit=4096):
    """The smallest input side (height or width) that every layer of ``specs`` accepts.

    Found by trying every side from 1 up with :func:`blob_sides`; ``None`` when nothing up to
    ``limit`` fits. FCN's reference padding (conv1_1 pad 100) gives 1: every image fits.
    """
    offsets = crop_offsets(specs)
    return next((side for side in range(1, limit + 1)
                 if blob_sides(specs, side, offsets)[1] is None), None)


@functools.lru_cache(maxsize=None)
def least_pad(variant):
    """The smallest conv1_1 padding of ``variant``: the one that puts the last crop at offset 0.

    Padding moves only the last crop (pool3 and pool4 shift with the trunk), one pixel per
    pixel of padding: FCN-8s 69, FCN-16s 73, FCN-32s 81.
    """
    return REFERENCE_PAD - crop_offsets(network_specs(variant))["score"]

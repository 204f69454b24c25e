"""FCN's padded border as a constant: which part of every trunk blob the image can reach.

FCN pads ``conv1_1`` by 100 (69 in the demo's narrow net). An activation whose receptive
field lies wholly in that padding does not depend on the image: it is the network's response
to a blank image, one value per channel (``conv1_1``'s is its bias, ``conv1_2``'s one
matrix-vector product of that, and so on). Each blob of the trunk therefore has three regions:

- the **box**: positions whose receptive field touches the image;
- the **frames**: thin strips along the map's edges, where a later convolution's zero
  padding met the constant (their windows read padding and constant together);
- the **constant**: everything else, the blank-image value of each channel.

This module is the arithmetic of those regions, on sizes alone (no arrays): :class:`Span`
for one axis, :class:`Region` for a blob, :func:`trunk_regions` for every blob of a network,
and :func:`trunk_borders`, which adds the constants (one small product per layer). The
convolutions that use them are in :mod:`minifcn.engine.bordered`.

Along each axis a blob has a box ``[lo, hi)`` and frames of ``top`` and ``bottom`` positions;
a position ``(r, c)`` depends on something other than the constant when ``r`` and ``c`` are
both in their boxes, or either is in a frame. A window (convolution or pooling) keeps that
form: its output is in the box when the window meets the box, in a frame when it meets a frame
or the convolution's zero padding. Pooling has no padding (FCN pools with ceil rounding: a
window that hangs off the map takes the maximum of what exists, and the maximum of a constant
is the constant). Dropout in training draws a mask per position, so from it on a blob is taken
as input-dependent everywhere.

How much the image reaches (``minifcn describe`` prints it per layer): at 500x500 with pad 100,
69 % of the trunk's convolution FLOPs; 224x224, 50 %; the demo's 96x96 with pad 69, 43 %.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from ..ops._util import conv_output_size


@dataclass(frozen=True)
class Span:
    """One axis of a blob: ``size`` positions, the box ``[lo, hi)`` (empty when ``lo == hi``)
    and frames of ``top`` and ``bottom`` positions at the two ends."""

    size: int
    lo: int
    hi: int
    top: int = 0
    bottom: int = 0

    @classmethod
    def whole(cls, size):
        """Every position depends on the input (the image itself, or after random dropout)."""
        return cls(size, 0, size)

    def after_window(self, kernel, stride, padding, out_size, padding_is_frame=True):
        """The span of the output of a window ``kernel``, ``stride``, ``padding`` over this one.

        Output ``o`` reads input positions ``[o*stride - padding, o*stride - padding + kernel)``.
        It is in the box when that meets ``[lo, hi)``; in a frame when it meets a frame, or
        (``padding_is_frame``, a convolution's zero padding next to a non-zero constant) the
        positions outside the map. ``padding_is_frame=False`` is for pooling (no padding) and
        for the image itself (its padding is the constant, zero), both read with ``top == 0``
        or ``padding == 0``.
        """
        k, s, p, m = kernel, stride, padding, out_size
        lo = hi = 0
        if self.lo < self.hi:
            lo = max(0, (self.lo + p - k) // s + 1)  # first window whose end passes lo
            hi = min(m, (self.hi + p - 1) // s + 1)  # past the last window that starts before hi
            lo, hi = (lo, hi) if lo < hi else (0, 0)
        top = bottom = 0
        if padding_is_frame or self.top:  # windows starting before row `top`
            top = min(m, max(0, -(-(self.top + p) // s)))
        if padding_is_frame or self.bottom:  # windows ending past row `size - bottom`
            first = (self.size - self.bottom + p - k) // s + 1
            bottom = m - min(m, max(0, first))
        return Span(m, lo, hi, top, bottom)

    def kinds(self):
        """The axis cut into runs ``(start, stop, in_frame, in_box)``, in order."""
        cuts = sorted({0, self.size, self.top, self.size - self.bottom, self.lo, self.hi}
                      & set(range(self.size + 1)))
        for a, b in zip(cuts, cuts[1:]):
            yield a, b, a < self.top or a >= self.size - self.bottom, self.lo <= a < self.hi


@dataclass(frozen=True)
class Region:
    """A blob's three regions: box, frames and constant (see the module's docstring).

    ``padding_is_frame`` is False only for the image itself: the padding of the network's
    first convolution is zeros, which is the image's "constant" (there is none of it inside).
    """

    rows: Span
    cols: Span
    padding_is_frame: bool = True

    @classmethod
    def image(cls, height, width):
        return cls(Span.whole(height), Span.whole(width), padding_is_frame=False)

    @classmethod
    def whole(cls, height, width):
        return cls(Span.whole(height), Span.whole(width))

    @property
    def shape(self):
        return self.rows.size, self.cols.size

    def after_conv(self, kernel, stride, padding):
        """The region of a convolution's output (square kernel, stride and padding, as FCN's)."""
        sides = [conv_output_size(span.size, kernel, stride, padding)
                 for span in (self.rows, self.cols)]
        return Region(*(span.after_window(kernel, stride, padding, n, self.padding_is_frame)
                        for span, n in zip((self.rows, self.cols), sides)))

    def after_pool(self, kernel, stride):
        """The region of a max-pooling's output (no padding, ceil rounding)."""
        sides = [conv_output_size(span.size, kernel, stride, 0, True)
                 for span in (self.rows, self.cols)]
        return Region(*(span.after_window(kernel, stride, 0, n, False)
                        for span, n in zip((self.rows, self.cols), sides)),
                      self.padding_is_frame)

    def pieces(self, constant=False):
        """Rectangles ``(rows, cols)`` (two slices) that tile the input-dependent positions
        (box and frames), or with ``constant=True`` the constant ones; as few as the form
        allows: a run of rows with the same columns is one rectangle, and the frames are
        whole strips (top, bottom, then left and right between them) around the box when
        that makes fewer rectangles (five instead of nine for a box in the middle)."""
        return list(_pieces(self, bool(constant)))

    def varying_fraction(self):
        """The share of positions that are not the constant (1.0 for a whole map)."""
        area = sum((r.stop - r.start) * (c.stop - c.start) for r, c in self.pieces())
        return area / max(1, self.rows.size * self.cols.size)

    @property
    def is_whole(self):
        return not self.pieces(constant=True)


@functools.lru_cache(maxsize=4096)
def _pieces(region, constant):
    """:meth:`Region.pieces` as a tuple, kept per region. A region is a frozen record of sizes,
    so equal regions have equal pieces and nothing can go stale. A training step asks for them
    a few hundred times: the demo's narrow step 73.8 to 72.1 ms with them kept (one thread,
    medians of 120 steps, alternating)."""
    runs = _row_runs(region, constant)
    if constant:
        return runs
    strips = _frame_strips(region)
    return strips if len(strips) < len(runs) else runs


def _frame_strips(region):
    """The input-dependent positions as the four frames, whole strips, and the box inside them.

    Each rectangle is one product of the engine's convolution, with its own unfolding and
    hand-offs: the demo's narrow net has nine per bordered layer in row runs (the side frames
    cut in three by the box's rows) and five as strips."""
    rows, cols = region.rows, region.cols
    r_in = (rows.top, max(rows.top, rows.size - rows.bottom))  # rows between the top and
    c_in = (cols.top, max(cols.top, cols.size - cols.bottom))  # bottom frames, and columns
    candidates = [
        ((0, rows.top), (0, cols.size)),  # the top frame
        ((r_in[1], rows.size), (0, cols.size)),  # the bottom frame
        (r_in, (0, cols.top)),  # the left frame, between those two
        (r_in, (c_in[1], cols.size)),  # the right frame
        ((max(rows.lo, r_in[0]), min(rows.hi, r_in[1])),  # the box, inside the frames
         (max(cols.lo, c_in[0]), min(cols.hi, c_in[1]))),
    ]
    return tuple((slice(*r), slice(*c)) for r, c in candidates if r[0] < r[1] and c[0] < c[1])


def _row_runs(region, constant):
    """The positions of one kind as runs of rows, each run cut into its runs of columns."""
    out, last = [], None
    for r0, r1, row_frame, row_box in region.rows.kinds():
        spans = []
        for c0, c1, col_frame, col_box in region.cols.kinds():
            varies = row_frame or col_frame or (row_box and col_box)
            if varies != constant:
                if spans and spans[-1][1] == c0:
                    spans[-1] = (spans[-1][0], c1)
                else:
                    spans.append((c0, c1))
        if last is not None and last[1] == r0 and last[2] == spans:
            last = (last[0], r1, spans)
            out[-1] = last
        elif spans:
            last = (r0, r1, spans)
            out.append(last)
    return tuple((slice(r0, r1), slice(c0, c1)) for r0, r1, spans in out for c0, c1 in spans)


def trunk_regions(specs, height, width, random_dropout=False):
    """``{blob name: Region}`` for every blob of a chain of layer specs from ``"data"``.

    ``specs`` are :class:`minifcn.models.spec.LayerSpec` (read by ``name``, ``op``,
    ``kernel``, ``stride``, ``padding``); ``random_dropout`` says whether dropout draws masks
    (training with ``p > 0``): then every blob from the first dropout on is whole.
    """
    region = Region.image(height, width)
    regions = {"data": region}
    for spec in specs:
        if spec.op == "conv":
            region = region.after_conv(spec.kernel, spec.stride, spec.padding)
        elif spec.op == "pool":
            region = region.after_pool(spec.kernel, spec.stride)
        elif spec.op == "dropout" and random_dropout:
            region = Region.whole(*region.shape)
        regions[spec.name] = region
    return regions


@dataclass(frozen=True)
class ConvBorder:
    """What a convolution of the trunk knows about its input and output for one call.

    ``inp`` and ``out`` are the regions of its input and output; ``inp_constant`` and
    ``out_constant`` (arrays of shape (C_in,) and (C_out,)) the blank-image values of their
    constant regions (None when the region is whole and has none).
    """

    inp: Region
    out: Region
    inp_constant: object
    out_constant: object


def trunk_borders(specs, height, width, blank, zeros, random_dropout=False):
    """``{conv name: ConvBorder}`` for the convolutions of a chain of layer specs.

    ``blank(name, constant)`` is layer ``name``'s response to an input that is ``constant``
    (shape (C,)) everywhere, its blank response (:meth:`minifcn.layers.Layer.blank`): for a
    convolution ``bias + (weight summed over its taps) @ constant`` (every tap of a window in
    the constant region reads the same vector), for a ReLU the ReLU of it, for pooling and
    evaluation dropout the constant itself. ``zeros`` is the image's padding, shape (3,).
    One matrix-vector product per layer: recomputed on every call, so a weight update is
    always seen.
    """
    regions = trunk_regions(specs, height, width, random_dropout)
    constant, region, borders = zeros, regions["data"], {}
    for spec in specs:
        out = regions[spec.name]
        # nothing constant left (random dropout, or a map the frames fill): no constant
        new = None if out.is_whole or constant is None else blank(spec.name, constant)
        if spec.op == "conv":
            borders[spec.name] = ConvBorder(region, out, constant, new)
        region, constant = out, new
    return borders

"""``minifcn describe``: every blob's shape, parameters, FLOPs, receptive field, coordinate map
and reach (the share the image's padding leaves input-dependent, :mod:`minifcn.engine.border`).

Computed from the layer specs by size arithmetic alone (no arrays), so it answers instantly
even for the full-width network at 500x500. ``--routes`` shows instead which function each
layer's forward and backward run under the book and under the engine (:func:`route_rows`).
"""
from __future__ import annotations

import argparse

from ..cliargs import non_negative, number
from ..errors import UsageError
from .coords import (blob_sides, coordinate_maps, crop_offsets, least_pad, receptive_fields,
                     smallest_input)
from ..engine.border import trunk_regions
from .fcn import MODELS
from .spec import MAX_CLASSES, MAX_WIDTH, REFERENCE_PAD, VARIANTS, network_specs


def blob_rows(variant, height, width, num_classes=21, net_width=1.0, pad=REFERENCE_PAD):
    """One dict per layer: name, op, shape (C, H, W), params, flops, rf, map, offset, reach.

    FLOPs count a multiply-add as 2 (convolutions and transposed convolutions only).
    ``reach`` is, for a blob of the trunk, the share of its positions that are not the
    blank-image constant (the box the image reaches and the frames along the edges,
    :mod:`minifcn.engine.border`): what the engine computes of it in evaluation. None for
    the head's blobs, which are computed whole.

    Raises
    ------
    UsageError
        When the input is smaller than the network accepts with this ``pad``, or ``pad`` is
        too small for the crops; the message names the least size or pad.
    """
    specs = _checked_specs(variant, num_classes, net_width, pad)
    maps, fields, offsets = coordinate_maps(specs), receptive_fields(specs), crop_offsets(specs)
    heights, misfit_h = blob_sides(specs, height, offsets)
    widths, misfit_w = blob_sides(specs, width, offsets)
    if misfit_h or misfit_w:
        least = smallest_input(specs)
        raise UsageError(f"--size {height}x{width} is too small for {variant} with conv1_1 pad "
                         f"{pad}: it needs at least {least}x{least} ({misfit_h or misfit_w} has "
                         f"no room); give a larger --size or a larger --pad")
    channels = {"data": 3}
    regions = trunk_regions([s for s in specs if s.trunk], height, width)
    rows = [dict(name="data", op="input", shape=(3, height, width), params=0, flops=0,
                 rf=1, map=maps["data"], offset=None, reach=1.0)]
    for s in specs:
        c, params, flops = channels[s.bottom[0]], 0, 0
        h, w = heights[s.name], widths[s.name]
        if s.op == "conv":  # a multiply-add per weight and output pixel
            params = s.out_channels * s.in_channels * s.kernel ** 2 + s.out_channels
            flops = 2 * s.out_channels * s.in_channels * s.kernel ** 2 * h * w
            c = s.out_channels
        elif s.op == "upscore":  # a multiply-add per weight and *input* pixel
            inputs = heights[s.bottom[0]] * widths[s.bottom[0]]
            flops = 2 * s.in_channels * s.out_channels * s.kernel ** 2 * inputs
            params, c = s.in_channels * s.out_channels * s.kernel ** 2, s.out_channels
        channels[s.name] = c
        rows.append(dict(name=s.name, op=s.op, shape=(c, h, w), params=params, flops=flops,
                         rf=fields[s.name][0], map=maps[s.name], offset=offsets.get(s.name),
                         reach=regions[s.name].varying_fraction() if s.name in regions else None))
    return rows


def reached_flops(rows):
    """The share of the trunk's convolution FLOPs that the engine computes: each layer's
    FLOPs weighted by its ``reach`` (the rest is the blank-image constant)."""
    trunk = [r for r in rows if r["op"] == "conv" and r["reach"] is not None]
    total = sum(r["flops"] for r in trunk)
    return sum(r["flops"] * r["reach"] for r in trunk) / total if total else 1.0


def _checked_specs(variant, num_classes, net_width, pad):
    """The specs, or a UsageError naming the least ``--pad`` that aligns the crops."""
    if pad < least_pad(variant):
        raise UsageError(f"--pad {pad} is too small for {variant}: its crops need conv1_1 pad "
                         f">= {least_pad(variant)}")
    return network_specs(variant, num_classes, net_width, pad)


def _human(n):
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n) if n else ""


def describe(variant, height, width, num_classes=21, net_width=1.0, pad=REFERENCE_PAD):
    """The table as text."""
    rows = blob_rows(variant, height, width, num_classes, net_width, pad)
    out = [f"{variant}, input 3x{height}x{width}, {num_classes} classes, width {net_width:g}, "
           f"conv1_1 pad {pad}",
           f"{'layer':<14}{'op':<9}{'output (C x H x W)':<21}{'params':>9}{'FLOPs':>9}"
           f"{'RF':>7}  {'coordinate map (x_in =)':<24}{'crop':>5}{'reach':>7}",
           "-" * 107]
    for r in rows:
        c, h, w = r["shape"]
        rf = r["rf"]
        rf_text = str(int(rf)) if rf.denominator == 1 else f"{float(rf):.1f}"
        reach = "" if r["reach"] is None else f"{r['reach']:.0%}"
        out.append(f"{r['name']:<14}{r['op']:<9}{f'{c} x {h} x {w}':<21}{_human(r['params']):>9}"
                   f"{_human(r['flops']):>9}{rf_text:>7}  {str(r['map']):<24}"
                   f"{'' if r['offset'] is None else r['offset']:>5}"
                   f"{reach:>7}")
    out.append("-" * 107)
    total_p, total_f = sum(r["params"] for r in rows), sum(r["flops"] for r in rows)
    out.append(f"total: {total_p:,} parameters, {total_f / 1e9:.1f} GFLOP per forward pass")
    out.append(f"reach: the share of a trunk blob that is not the blank-image constant (what "
               f"the engine computes); {reached_flops(rows):.0%} of the trunk's convolution "
               f"FLOPs")
    return "\n".join(out)


def route_rows(variant, num_classes=21, net_width=1.0, pad=REFERENCE_PAD):
    """One dict per layer: ``name``, and ``book`` and ``engine``, each the pair of functions
    (forward, backward) that the layer hands its passes to under that op set.

    The pairs come from the layers of a freshly built network (:meth:`minifcn.layers.Layer.routes`),
    that is from the op sets' own dispatch: a convolution's backward asks the engine's
    ``conv2d_backward.route`` which route it takes for that weight, stride and padding. Some
    routes depend on the weights: a freshly built network has bilinear upsamplers, which the
    engine applies as two matrix products as long as they stay bilinear (fixed, as in the
    reference; a learned one leaves that route at its first update).
    """
    model = MODELS[variant](num_classes, net_width, pad=pad)
    return [dict(name=name, book=layer.routes("book"), engine=layer.routes("engine"))
            for name, layer in model.layers.items()]


def _function_name(fn, book_prefix=True):
    """``ops.conv.conv2d_forward``: where a function lives, below the package (just
    ``conv2d_forward`` for one of the book's with ``book_prefix=False``)."""
    module = fn.__module__.removeprefix("minifcn.")
    if not book_prefix and module.startswith("ops."):
        return fn.__qualname__
    return f"{module}.{fn.__qualname__}"


def describe_routes(variant, num_classes=21, net_width=1.0, pad=REFERENCE_PAD):
    """The table of :func:`route_rows` as text."""
    rows = route_rows(variant, num_classes, net_width, pad)
    cells = [[r["name"]] + [_function_name(fn, False) for fn in r["book"]]
             + [_function_name(fn) for fn in r["engine"]] for r in rows]
    header = ["layer", "book forward", "book backward", "engine forward", "engine backward"]
    widths = [max(len(row[k]) for row in cells + [header]) + 2 for k in range(len(header))]
    line = "".join(f"{text:<{width}}" for text, width in zip(header, widths)).rstrip()
    out = [f"{variant}, width {net_width:g}: the function each layer's forward and backward run "
           f"under the book (minifcn.ops) and the engine (minifcn.engine)", line, "-" * len(line)]
    out += ["".join(f"{text:<{width}}" for text, width in zip(row, widths)).rstrip()
            for row in cells]
    return "\n".join(out)


MAX_SIDE = 1 << 20  # a million pixels a side: far past any image, and the sums stay exact


def image_size(text):
    """An argparse type: ``"HxW"`` (or one number for a square) -> ``(H, W)``, each side 1 to
    :data:`MAX_SIDE`."""
    parts = text.lower().split("x")
    try:
        sides = [int(p) for p in parts]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected HxW such as 500x500, got {text!r}")
    if not all(1 <= n <= MAX_SIDE for n in sides):
        raise argparse.ArgumentTypeError(f"{text} is out of range: each side must be 1 to "
                                         f"{MAX_SIDE}")
    return (sides * 2)[:2]


def _cmd_describe(args):
    if args.routes:
        print(describe_routes(args.variant, args.num_classes, args.width, args.pad))
        return 0
    h, w = args.size
    print(describe(args.variant, h, w, args.num_classes, args.width, args.pad))
    return 0


def add_describe_parser(sub):
    p = sub.add_parser(
        "describe", help="print every blob's shape, parameters, FLOPs and coordinate map",
        description="Walk the network's layers and print, for an input of the given size, the "
                    "shape of every blob, each layer's parameter count and FLOPs, its receptive "
                    "field and the affine map from its pixels to input pixels. The crop column "
                    "shows the offsets derived from those maps (5, 9, 31 for FCN-8s); the reach "
                    "column, the share of each trunk blob that is not the blank-image constant of "
                    "conv1_1's padding (what the engine computes).")
    p.add_argument("variant", choices=VARIANTS, help="which network")
    p.add_argument("--size", type=image_size, default=(500, 500),
                   help="input HxW, or N for NxN (default 500x500)")
    p.add_argument("--num-classes", type=number(int, low=1, high=MAX_CLASSES), default=21,
                   help="output classes (default 21)")
    p.add_argument("--width", type=number(float, low=0, high=MAX_WIDTH, low_open=True),
                   default=1.0,
                   help="channel multiplier (default 1.0)")
    p.add_argument("--pad", type=non_negative(int), default=REFERENCE_PAD,
                   help="conv1_1 padding (default 100)")
    p.add_argument("--routes", action="store_true",
                   help="instead: which function each layer's forward and backward run under "
                        "the book (minifcn.ops) and the engine (minifcn.engine)")
    p.set_defaults(func=_cmd_describe)

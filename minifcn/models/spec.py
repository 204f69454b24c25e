"""The FCN networks written down as data: one list of layer specs per variant.

Each spec names its layer (the reference release's names), its operation, the blob(s) it
reads (``bottom``) and its hyper-parameters. The same list builds the network
(:mod:`minifcn.models.fcn`), derives the crop offsets from coordinate maps
(:mod:`minifcn.models.coords`) and prints the shape table (:mod:`minifcn.models.describe`),
so the three can never disagree.

VGG16 trunk (all variants)::

    conv1_1 (pad 100) .. conv1_2  pool1   64 ch
    conv2_1 .. conv2_2            pool2  128 ch
    conv3_1 .. conv3_3            pool3  256 ch   <- FCN-8s skip
    conv4_1 .. conv4_3            pool4  512 ch   <- FCN-16s / FCN-8s skip
    conv5_1 .. conv5_3            pool5  512 ch
    fc6 (7x7 conv, 4096) relu6 drop6  fc7 (1x1 conv, 4096) relu7 drop7  score_fr (1x1, n_class)

Heads: FCN-32s upsamples ``score_fr`` 32x at once; FCN-16s upsamples 2x, adds the scored,
cropped pool4, then 16x; FCN-8s adds pool4 and then pool3 before upsampling 8x. All
pooling uses ceil rounding. ``width`` scales every channel count (``fc6``/``fc7`` too) for
narrow CPU-sized networks.
"""
from __future__ import annotations

from dataclasses import dataclass, field

VARIANTS = ("fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce")
VGG_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (channels, convs) per block
FC_CHANNELS = 4096
REFERENCE_PAD = 100
AT_ONCE_SCALES = {"pool4": 0.01, "pool3": 0.0001}
# Bounds on a network's settings, for model files and the command line alike: generous for
# any real use, far below what would exhaust memory. Width 4 is already 6.6 GB of fc6;
# conv1_1's padding is 100 in the reference (more buys nothing, and the padded input grows
# with its square).
MAX_CLASSES = 65536
MAX_WIDTH = 4.0
MAX_PAD = 512


@dataclass(frozen=True)
class LayerSpec:
    """One layer: ``name`` (also the name of the blob it produces), ``op``, inputs, settings.

    ``op`` is one of ``conv``, ``relu``, ``pool``, ``dropout``, ``upscore`` (transposed
    convolution), ``crop`` (``bottom[0]`` cropped to the size of ``bottom[1]``), ``add``,
    ``scale``.
    """

    name: str
    op: str
    bottom: tuple
    in_channels: int = 0
    out_channels: int = 0
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    bias: bool = True
    factor: float = 1.0
    trunk: bool = field(default=False, compare=False)


def scaled(channels, width):
    """Channel count of a layer in a network ``width`` times the real one (at least 1)."""
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    return max(1, int(round(channels * width)))


def trunk_specs(width=1.0, pad=REFERENCE_PAD, num_classes=21):
    """VGG16 convolutionalised, up to ``score_fr``: a straight chain starting at ``data``."""
    specs, bottom, c_in = [], "data", 3

    def add(spec):
        nonlocal bottom
        specs.append(spec)
        bottom = spec.name

    for b, (channels, n_convs) in enumerate(VGG_BLOCKS, start=1):
        c_out = scaled(channels, width)
        for i in range(1, n_convs + 1):
            add(LayerSpec(f"conv{b}_{i}", "conv", (bottom,), c_in, c_out, 3, 1,
                          pad if (b, i) == (1, 1) else 1, trunk=True))
            add(LayerSpec(f"relu{b}_{i}", "relu", (bottom,), trunk=True))
            c_in = c_out
        add(LayerSpec(f"pool{b}", "pool", (bottom,), kernel=2, stride=2, trunk=True))
    fc = scaled(FC_CHANNELS, width)
    for name, k, c_out in (("fc6", 7, fc), ("fc7", 1, fc)):
        add(LayerSpec(name, "conv", (bottom,), c_in, c_out, k, 1, 0, trunk=True))
        add(LayerSpec(f"relu{name[2]}", "relu", (bottom,), trunk=True))
        add(LayerSpec(f"drop{name[2]}", "dropout", (bottom,), trunk=True))
        c_in = c_out
    add(LayerSpec("score_fr", "conv", (bottom,), c_in, num_classes, 1, trunk=True))
    return specs


def _upscore(name, bottom, n, factor):
    # kernel 2*factor, stride factor: bilinear interpolation by ``factor``, no bias
    return LayerSpec(name, "upscore", (bottom,), n, n, 2 * factor, factor, 0, bias=False)


def _skip(pool, up, n, width, at_once):
    """Score a pool layer, crop it to the upsampled map and add: FCN's skip connection."""
    channels = scaled(dict(pool3=256, pool4=512)[pool], width)
    source, specs = pool, []
    if at_once:
        specs.append(LayerSpec(f"scale_{pool}", "scale", (pool,), factor=AT_ONCE_SCALES[pool]))
        source = f"scale_{pool}"
    specs += [
        LayerSpec(f"score_{pool}", "conv", (source,), channels, n, 1),
        LayerSpec(f"score_{pool}c", "crop", (f"score_{pool}", up)),
        LayerSpec(f"fuse_{pool}", "add", (up, f"score_{pool}c")),
    ]
    return specs


def head_specs(variant, num_classes=21, width=1.0):
    """Everything after ``score_fr`` for ``variant``: upsampling, skips, the final crop."""
    n = num_classes
    if variant == "fcn32s":
        specs = [_upscore("upscore", "score_fr", n, 32)]
    elif variant == "fcn16s":
        specs = [_upscore("upscore2", "score_fr", n, 2), *_skip("pool4", "upscore2", n, width, False),
                 _upscore("upscore16", "fuse_pool4", n, 16)]
    elif variant in ("fcn8s", "fcn8s-atonce"):
        at_once = variant == "fcn8s-atonce"
        specs = [_upscore("upscore2", "score_fr", n, 2), *_skip("pool4", "upscore2", n, width, at_once),
                 _upscore("upscore_pool4", "fuse_pool4", n, 2), *_skip("pool3", "upscore_pool4", n, width, at_once),
                 _upscore("upscore8", "fuse_pool3", n, 8)]
    else:
        raise ValueError(f"unknown FCN variant {variant!r}: expected one of {VARIANTS}")
    specs.append(LayerSpec("score", "crop", (specs[-1].name, "data")))
    return specs


def network_specs(variant, num_classes=21, width=1.0, pad=REFERENCE_PAD):
    """The whole network for ``variant``, in an order where every bottom comes first."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return trunk_specs(width, pad, num_classes) + head_specs(variant, num_classes, width)

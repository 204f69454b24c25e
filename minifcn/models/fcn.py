"""FCN-32s, FCN-16s and FCN-8s, wired from the hand-written layers.

``forward`` reads like the network's figure: the VGG16 trunk up to ``score_fr``, then the
variant's head of upsampling layers, scored skip connections, crops and sums. ``backward`` is
the same code read from the bottom up: every sum hands its gradient to both branches, every
crop pads its gradient back with zeros, and the skip gradients join the trunk at pool4 and
pool3.

Initialisation follows the reference: score layers start at zero, the ``upscore*``
transposed convolutions start as bilinear interpolation on the channel diagonal and stay
fixed unless ``learn_upsampling=True``. The trunk starts from He-normal random weights and is
meant to be overwritten with VGG16's (:meth:`FCN.copy_params`).
"""
from __future__ import annotations

import contextlib

import numpy as np

from .. import layers as L
from ..backend import get_array_module, to_device, to_host
from ..engine.border import trunk_borders
from ..errors import MinifcnError
from ..init import bilinear_upsampling_weight
from ..ops._util import check_float, check_input
from .coords import blob_sides, crop_offsets, smallest_input
from .segment import segment
from .spec import REFERENCE_PAD, network_specs


class ImageTooSmallError(MinifcnError, ValueError):
    """An input smaller than the network accepts with its conv1_1 padding."""


class FCN:
    """Base class: builds the layers of ``variant`` from its specs and runs the trunk.

    Parameters
    ----------
    num_classes : int
        Output channels (21 for PASCAL VOC).
    width : float
        Channel multiplier; 1.0 is the real VGG16 (fc6/fc7 4096 wide), 1/16 a CPU-sized net.
    pad : int
        Padding of conv1_1 (100 in the reference); the final crop offset follows from it.
    dropout : float
        Drop probability after fc6 and fc7 (0.5 in the reference).
    learn_upsampling : bool
        Train the ``upscore*`` layers instead of keeping them bilinear.
    dtype : numpy dtype
        float32, or float64 for gradient checks.
    seed : int
        Seeds the trunk's random initialisation and the dropout masks.
    ops : {"book", "engine"}
        The op set every layer runs: ``"book"`` (:mod:`minifcn.ops`, the textbook ops a
        learner steps through; the default) or ``"engine"`` (:mod:`minifcn.engine`, the same
        results, fast; what the ``minifcn`` command, the trainer and the benchmarks run).
        ``minifcn describe VARIANT --routes`` shows what each layer runs under either set.
    """

    variant = None

    def __init__(self, num_classes=21, width=1.0, pad=REFERENCE_PAD, dropout=0.5,
                 learn_upsampling=False, dtype=np.float32, seed=0, ops="book"):
        L.op_set(ops)  # an unknown name fails here, before any work
        self.ops = ops
        self.num_classes, self.width, self.pad = int(num_classes), float(width), int(pad)
        self.dropout, self.learn_upsampling = float(dropout), bool(learn_upsampling)
        self.dtype = np.dtype(dtype)
        check_float(self.dtype, type(self).__name__, "dtype")
        self.specs = network_specs(self.variant, self.num_classes, self.width, self.pad)
        self.offsets = crop_offsets(self.specs)
        self.preprocessing = None  # set when weights that expect a preprocessing are loaded
        rng = np.random.default_rng(seed)
        self.layers = {spec.name: self._build(spec, rng, seed) for spec in self.specs
                       if spec.op != "add"}
        self.trunk_names = [s.name for s in self.specs if s.trunk]
        # the convolutions whose input gradient training wants only on the box (trunk_backward;
        # the engine's option: the book always computes the whole gradient)
        self.box_convs = set() if ops != "engine" else {
            s.name for s in self.specs if s.trunk and s.op == "conv"} - {self.trunk_names[0]}
        self.training = True

    def _build(self, spec, rng, seed):
        if spec.op == "conv":
            shape = (spec.out_channels, spec.in_channels, spec.kernel, spec.kernel)
            if spec.trunk and spec.name != "score_fr":
                std = np.sqrt(2.0 / (spec.in_channels * spec.kernel ** 2))  # He et al. 2015
                weight = (rng.standard_normal(shape) * std).astype(self.dtype)
            else:
                weight = np.zeros(shape, self.dtype)  # score layers start at zero
            return L.Conv2d(spec.name, weight, np.zeros(spec.out_channels, self.dtype),
                            spec.stride, spec.padding, ops=self.ops)
        if spec.op == "upscore":
            layer = L.ConvTranspose2d(spec.name, bilinear_upsampling_weight(
                spec.in_channels, spec.kernel, self.dtype), None, spec.stride, spec.padding,
                ops=self.ops)
            layer.weight.requires_grad = self.learn_upsampling
            return layer
        if spec.op == "relu":  # a conv output, read by nothing else: the engine may overwrite it
            return L.ReLU(spec.name, inplace=True, ops=self.ops)
        if spec.op == "pool":
            return L.MaxPool2d(spec.name, spec.kernel, spec.stride, ceil_mode=True, ops=self.ops)
        if spec.op == "dropout":
            return L.Dropout(spec.name, self.dropout, seed=seed + int(spec.name[-1]), ops=self.ops)
        if spec.op == "crop":
            return L.Crop(spec.name, self.offsets[spec.name], ops=self.ops)
        if spec.op == "scale":
            return L.Scale(spec.name, spec.factor, ops=self.ops)
        raise ValueError(f"{spec.name}: unknown op {spec.op!r}")

    def __getattr__(self, name):
        layers = self.__dict__.get("layers", {})
        if name in layers:
            return layers[name]
        raise AttributeError(f"{type(self).__name__} has no attribute or layer {name!r}")

    # ------------------------------------------------------------------ trunk
    def trunk_forward(self, x):
        """VGG16 up to ``score_fr``. Returns ``(pool3, pool4, score_fr)``.

        On the engine every convolution is told its border (:meth:`trunk_borders`): the
        parts of its output that are the blank-image constant, which it then does not compute.
        """
        self._check_input(x)
        kept, borders = {}, self.trunk_borders(x)
        for name in self.trunk_names:
            layer = self.layers[name]
            x = layer(x, borders[name]) if name in borders else layer(x)
            if name in ("pool3", "pool4"):
                kept[name] = x
        return kept["pool3"], kept["pool4"], x

    def trunk_borders(self, x):
        """``{conv name: ConvBorder}`` for an input like ``x`` on the engine; ``{}`` on the book.

        FCN pads ``conv1_1`` by 100: every activation whose receptive field lies wholly in
        that padding is the blank image's response, one constant per channel
        (:mod:`minifcn.engine.border`). Worked out afresh on every call, from the input's size
        and the current weights (one matrix-vector product per layer).
        """
        if self.ops != "engine":
            return {}
        specs = [s for s in self.specs if s.trunk]
        random_dropout = self.training and self.dropout > 0

        def blank(name, constant):
            return self.layers[name].blank(constant)

        return trunk_borders(specs, *x.shape[2:], blank, self.xp.zeros(3, dtype=self.dtype),
                             random_dropout)

    def trunk_backward(self, dscore_fr, skips, input_grad=True):
        """Back through the trunk; ``skips`` maps ``"pool3"``/``"pool4"`` to the gradient
        that the skip branches send to that blob. Returns the input gradient, or None when
        ``input_grad`` is False (training needs none: conv1_1 then skips it, and the
        convolutions above want theirs only where the layers below read it: ``"box"``)."""
        d, box = dscore_fr, self.box_convs if not input_grad else ()
        for name in reversed(self.trunk_names[1:]):
            if name in skips:
                d = d + skips[name]  # the blob fed both the trunk and a skip branch
            layer = self.layers[name]
            d = layer.backward(d, "box") if name in box else layer.backward(d)
        return self.layers[self.trunk_names[0]].backward(d, input_grad)  # conv1_1

    def skip_forward(self, pool, blob, reference):
        """Score a pool layer (scaled first in the at-once net) and crop it to ``reference``."""
        if f"scale_{pool}" in self.layers:
            blob = self.layers[f"scale_{pool}"](blob)
        scored = self.layers[f"score_{pool}"](blob)
        return self.layers[f"score_{pool}c"](scored, reference.shape[2:])

    def skip_backward(self, pool, dcropped):
        """Gradient of :meth:`skip_forward` with respect to the pool blob."""
        d = self.layers[f"score_{pool}"].backward(self.layers[f"score_{pool}c"].backward(dcropped))
        if f"scale_{pool}" in self.layers:
            d = self.layers[f"scale_{pool}"].backward(d)
        return d

    def _check_input(self, x):
        name = type(self).__name__
        check_input(x, name)
        if x.shape[1] != 3:
            raise ValueError(f"{name}: expected a 3-channel image batch (N, 3, H, W), got {tuple(x.shape)}")
        dtype = self.layers["conv1_1"].weight.data.dtype
        if x.dtype != dtype:
            raise TypeError(f"{name}: input dtype {x.dtype} differs from the weights' {dtype}; "
                            f"cast the input with x.astype({dtype.name!r})")
        h, w = x.shape[2:]
        if not self.accepts(h, w):
            raise ImageTooSmallError(self._too_small(h, w))

    def accepts(self, height, width, pad=None):
        """Whether every layer has room for a ``height`` x ``width`` input (with conv1_1
        padded by ``pad``, this model's padding by default)."""
        if pad is None:
            specs, offsets = self.specs, self.offsets
        else:
            specs = network_specs(self.variant, self.num_classes, self.width, pad)
            offsets = crop_offsets(specs)
        return all(blob_sides(specs, side, offsets)[1] is None for side in (height, width))

    def _too_small(self, h, w):
        """The message for an input that does not fit: the least size and what to change."""
        misfit = (blob_sides(self.specs, h, self.offsets)[1]
                  or blob_sides(self.specs, w, self.offsets)[1])
        least = smallest_input(self.specs)
        pad = next((p for p in range(self.pad + 1, self.pad + 1001) if self.accepts(h, w, p)),
                   None)
        larger_pad = f", or a model whose conv1_1 pad is at least {pad}" if pad else ""
        least_size = f"at least {least}x{least}" if least else "larger"
        return (f"input {h}x{w} is too small for {self.describe_short()}: with conv1_1 pad "
                f"{self.pad} it needs {least_size} ({misfit} has no room); use a larger "
                f"image{larger_pad}")

    # ------------------------------------------------------------------ modes and parameters
    def __call__(self, x):
        return self.forward(x)

    def predict(self, image):
        """Class of every pixel of a uint8 image (H, W, 3) (grayscale and RGBA accepted),
        after the preprocessing these weights expect. Returns an (H, W) int64 array."""
        return segment(self, image)

    def train(self, mode=True):
        self.training = mode
        for layer in self.layers.values():
            layer.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def reseed_dropout(self, *key):
        """Restart every dropout layer's masks from a seed made of ``key`` and its place.

        With no ``key`` each layer restarts from its own seed. The trainer passes (run seed,
        iteration), so the masks of an iteration are the same however the run got there.
        """
        dropouts = [layer for layer in self.layers.values() if isinstance(layer, L.Dropout)]
        for k, layer in enumerate(dropouts):
            seed = np.random.SeedSequence([*key, k]).generate_state(1)[0] if key else None
            layer.reseed(seed)

    @contextlib.contextmanager
    def inference(self):
        """A block whose forward passes keep no caches, for prediction (no backward follows).

        Inside it every layer drops its cache as soon as its forward returns (and the
        engine's ReLUs compute no masks), so each blob is freed once the next layer has read
        it, as in PyTorch under ``torch.no_grad()``: FCN-8s at 500x500 on the engine peaks at
        0.9 GB instead of 1.7 GB, and the pass touches less fresh memory (docs/performance.md,
        item 20).
        Caches left by an earlier forward are dropped on entry. Train or eval mode is left
        as it is (dropout follows it); a ``backward`` after a forward in the block raises.

        Examples
        --------
        >>> with model.eval().inference():  # doctest: +SKIP
        ...     scores = model(x)
        """
        previous = {name: layer.keep_cache for name, layer in self.layers.items()}
        for layer in self.layers.values():
            layer.keep_cache, layer.cache = False, None
        try:
            yield self
        finally:
            for name, layer in self.layers.items():
                layer.keep_cache = previous[name]

    def named_parameters(self):
        """Yield ``(name, Parameter)`` with names equal to the state-dict keys."""
        for lname, layer in self.layers.items():
            for pname, param in layer.parameters().items():
                yield f"{lname}.{pname}", param

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device):
        """Move every parameter to ``"cpu"`` or ``"gpu"``; returns the model."""
        for p in self.parameters():
            p.data = to_device(p.data, device)
            p.grad = None
        for layer in self.layers.values():
            layer.cache = None
        return self

    @property
    def xp(self):
        return get_array_module(self.layers["conv1_1"].weight.data)

    def num_parameters(self):
        return sum(int(p.data.size) for p in self.parameters())

    # ------------------------------------------------------------------ state dicts
    def state_dict(self):
        """``{"conv1_1.weight": array, ...}`` in PyTorch layouts (the arrays themselves)."""
        return {name: p.data for name, p in self.named_parameters()}

    def load_state_dict(self, state, strict=True):
        """Load arrays by name; validates everything before changing anything.

        Parameters
        ----------
        state : dict of str -> array
        strict : bool
            Require exactly this model's keys. Shape mismatches are errors either way.

        Returns
        -------
        missing, unexpected : list of str

        Raises
        ------
        ValueError
            Listing every missing, unexpected and mis-shaped key (expected vs found shape);
            the model is left untouched.
        """
        own = dict(self.named_parameters())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mismatched = [f"{k}: expected {tuple(p.shape)}, found {tuple(np.shape(state[k]))}"
                      for k, p in own.items() if k in state and tuple(np.shape(state[k])) != tuple(p.shape)]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {', '.join(unexpected)}")
        if mismatched:
            problems.append("shape mismatch: " + "; ".join(mismatched))
        if problems:
            raise ValueError(f"cannot load state dict into {self.describe_short()}:\n  " + "\n  ".join(problems))
        xp = self.xp
        for k, p in own.items():
            if k in state:
                p.data = xp.asarray(to_host(state[k]), dtype=self.dtype).copy()
                p.grad = None
        return missing, unexpected

    def copy_params(self, source, skip=()):
        """Copy every parameter whose name and shape match ``source`` (a model or a state
        dict): VGG16 into an FCN, FCN-32s into FCN-16s into FCN-8s. Returns the copied names."""
        state = source.state_dict() if hasattr(source, "state_dict") else source
        own = dict(self.named_parameters())
        picked = {k: v for k, v in state.items()
                  if k in own and k not in skip and tuple(np.shape(v)) == tuple(own[k].shape)}
        self.load_state_dict(picked, strict=False)
        return sorted(picked)

    def describe_short(self):
        return (f"{type(self).__name__}(num_classes={self.num_classes}, width={self.width:g}, "
                f"pad={self.pad})")

    def __repr__(self):
        return self.describe_short()

    def metadata(self):
        """What a saved file records to rebuild this model."""
        return {"kind": self.variant, "num_classes": self.num_classes, "width": self.width,
                "pad": self.pad, "dropout": self.dropout, "learn_upsampling": self.learn_upsampling,
                "preprocessing": self.preprocessing}


class FCN32s(FCN):
    """FCN-32s: ``score_fr`` upsampled 32x in one step (``upscore``, k64 s32), cropped."""

    variant = "fcn32s"

    def forward(self, x):
        _, _, score_fr = self.trunk_forward(x)
        upscore = self.upscore(score_fr)
        return self.score(upscore, x.shape[2:])

    def backward(self, dscore, input_grad=True):
        """Gradients of every parameter from ``dscore`` (N, classes, H, W); returns the
        input gradient (N, 3, H, W), or None with ``input_grad=False``."""
        dscore_fr = self.upscore.backward(self.score.backward(dscore))
        return self.trunk_backward(dscore_fr, {}, input_grad)


class FCN16s(FCN):
    """FCN-16s: ``score_fr`` upsampled 2x plus scored pool4, then upsampled 16x."""

    variant = "fcn16s"

    def forward(self, x):
        _, pool4, score_fr = self.trunk_forward(x)
        upscore2 = self.upscore2(score_fr)
        fuse_pool4 = upscore2 + self.skip_forward("pool4", pool4, upscore2)
        upscore16 = self.upscore16(fuse_pool4)
        return self.score(upscore16, x.shape[2:])

    def backward(self, dscore, input_grad=True):
        dfuse_pool4 = self.upscore16.backward(self.score.backward(dscore))
        dpool4 = self.skip_backward("pool4", dfuse_pool4)
        dscore_fr = self.upscore2.backward(dfuse_pool4)
        return self.trunk_backward(dscore_fr, {"pool4": dpool4}, input_grad)


class FCN8s(FCN):
    """FCN-8s: two skips (pool4, then pool3) before upsampling 8x."""

    variant = "fcn8s"

    def forward(self, x):
        pool3, pool4, score_fr = self.trunk_forward(x)
        upscore2 = self.upscore2(score_fr)
        fuse_pool4 = upscore2 + self.skip_forward("pool4", pool4, upscore2)
        upscore_pool4 = self.upscore_pool4(fuse_pool4)
        fuse_pool3 = upscore_pool4 + self.skip_forward("pool3", pool3, upscore_pool4)
        upscore8 = self.upscore8(fuse_pool3)
        return self.score(upscore8, x.shape[2:])

    def backward(self, dscore, input_grad=True):
        dfuse_pool3 = self.upscore8.backward(self.score.backward(dscore))
        dpool3 = self.skip_backward("pool3", dfuse_pool3)
        dfuse_pool4 = self.upscore_pool4.backward(dfuse_pool3)
        dpool4 = self.skip_backward("pool4", dfuse_pool4)
        dscore_fr = self.upscore2.backward(dfuse_pool4)
        return self.trunk_backward(dscore_fr, {"pool3": dpool3, "pool4": dpool4}, input_grad)


class FCN8sAtOnce(FCN8s):
    """FCN-8s trained in one stage from VGG16: pool4 is scaled by 0.01 and pool3 by 1e-4
    before their scorers, so the skips start small next to the coarse prediction."""

    variant = "fcn8s-atonce"


MODELS = {cls.variant: cls for cls in (FCN32s, FCN16s, FCN8s, FCN8sAtOnce)}

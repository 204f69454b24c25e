"""Turn images into network input the way the weights were trained to see them.

Pretrained weights come with an input convention, fixed when they were trained:

============  =============  ========  ==================================  ===================
weights       channel order  range     mean (in that channel order)        std
============  =============  ========  ==================================  ===================
Caffe FCN     BGR            0-255     104.00698793, 116.66876762,         none
                                       122.67891434
Caffe VGG16   BGR            0-255     103.939, 116.779, 123.68            none
Keras VGG16   BGR            0-255     103.939, 116.779, 123.68            none
torchvision   RGB            0-1       0.485, 0.456, 0.406                 0.229, 0.224, 0.225
============  =============  ========  ==================================  ===================

Why mixing conventions costs accuracy
-------------------------------------
Nothing fails loudly when the convention is wrong: the network still produces a map. But
conv1_1 was trained on one particular input distribution. Feed RGB to BGR weights and the
filters tuned to blue respond to red (sky and skin swap roles); feed 0-1 inputs to 0-255
weights and every activation is ~255 times too small, so the biases dominate; forget the
std and the inputs are ~4.4 times too small. The features still *look* plausible, so
the damage shows up only as several points of mean IU silently lost, which is easily taken
for a training problem. Always use the :class:`Preprocessing` recorded in the converted
weight file (``meta["preprocessing"]``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend import get_array_module, to_host


@dataclass(frozen=True)
class Preprocessing:
    """An input convention: ``x = (pixels_in_order * scale / 255 - mean) / std``.

    Parameters
    ----------
    channel_order : {'RGB', 'BGR'}
        Order of the 3 input channels the weights expect.
    scale : float
        Pixel range the weights expect: 255.0 means values 0-255, 1.0 means 0-1.
    mean : tuple of 3 floats
        Subtracted per channel, in ``channel_order`` and in units of ``scale``.
    std : tuple of 3 floats or None
        Divided per channel after the mean (``None``: no division).
    """

    channel_order: str
    scale: float
    mean: tuple
    std: tuple | None = None

    def __post_init__(self):
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', not {self.channel_order!r}")
        for field in ("mean", "std"):
            values = getattr(self, field)
            if values is None and field == "std":
                continue
            # A scalar has no len(): refuse it by name rather than broadcast it silently.
            if np.ndim(values) != 1 or len(values) != 3:
                found = (f"a scalar {values!r}" if np.ndim(values) == 0
                         else f"shape {np.shape(values)}")
                raise ValueError(f"{field}: expected one value per channel (3), got {found}")
        # Tuples of floats, so that specs read back from JSON compare equal to the presets.
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        if self.std is not None:
            object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    def to_dict(self) -> dict:
        """A JSON-able dict (stored in converted weight files)."""
        return {"channel_order": self.channel_order, "scale": self.scale,
                "mean": list(self.mean), "std": None if self.std is None else list(self.std)}

    def describe(self) -> str:
        """One line for people, e.g. ``'BGR, 0-255, mean (103.939, 116.779, 123.68), no std'``."""
        rng = "0-255" if self.scale == 255.0 else f"0-{self.scale:g}"
        std = "no std"
        if self.std is not None:
            std = "std (" + ", ".join(f"{s:g}" for s in self.std) + ")"
        mean = ", ".join(f"{m:g}" for m in self.mean)
        return f"{self.channel_order}, {rng}, mean ({mean}), {std}"

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        """Inverse of :meth:`to_dict`."""
        std = d.get("std")
        return cls(d["channel_order"], d["scale"], tuple(d["mean"]),
                   None if std is None else tuple(std))


CAFFE_FCN = Preprocessing("BGR", 255.0, (104.00698793, 116.66876762, 122.67891434))
CAFFE_VGG = Preprocessing("BGR", 255.0, (103.939, 116.779, 123.68))
KERAS = Preprocessing("BGR", 255.0, (103.939, 116.779, 123.68))  # Keras took Caffe's recipe
TORCHVISION = Preprocessing("RGB", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
PRESETS = {"caffe-fcn": CAFFE_FCN, "caffe-vgg": CAFFE_VGG, "keras": KERAS,
           "torchvision": TORCHVISION}


def scratch_preprocessing() -> Preprocessing:
    """The convention of a network trained from scratch: RGB scaled to about [-2, 2].

    Weights converted from VGG16 bring their own convention (:data:`PRESETS`) and replace it.
    """
    return Preprocessing("RGB", 1.0, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def get_preset(name_or_spec) -> Preprocessing:
    """A :class:`Preprocessing` from a preset name (``'caffe-fcn'`` ...), a dict, or itself."""
    if isinstance(name_or_spec, Preprocessing):
        return name_or_spec
    if isinstance(name_or_spec, dict):
        return Preprocessing.from_dict(name_or_spec)
    try:
        return PRESETS[name_or_spec]
    except KeyError:
        raise ValueError(f"unknown preprocessing {name_or_spec!r}: "
                         f"expected one of {sorted(PRESETS)}") from None


def _to_rgb(images, xp):
    """uint8 (H, W), (H, W, 1|3|4) or (N, H, W, 1|3|4) -> uint8 (N, H, W, 3) RGB."""
    images = xp.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels (0-255), got {images.dtype}; a float image "
                        "would be scaled twice")
    if images.ndim == 2:                       # (H, W) grayscale
        images = images[None, :, :, None]
    elif images.ndim == 3:                     # (H, W, C)
        images = images[None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an image (H, W[, 1|3|4]) or a batch (N, H, W, 1|3|4), "
                         f"got shape {tuple(images.shape)}")
    if images.shape[-1] == 1:                  # grayscale: the same value in R, G and B
        images = xp.repeat(images, 3, axis=-1)
    return images[..., :3]                     # RGBA: the alpha channel is dropped


def preprocess(images, spec: Preprocessing, xp=np):
    """uint8 RGB image(s) -> float32 network input in NCHW.

    Parameters
    ----------
    images : ndarray of uint8, shape (H, W, 3) or (N, H, W, 3)
        RGB pixels. Grayscale (H, W) or (..., 1) and RGBA (..., 4) are converted to RGB.
    spec : Preprocessing
        The convention of the weights (e.g. read from a converted file's metadata).
    xp : module
        ``numpy`` or ``cupy``: where the result lives.

    Returns
    -------
    ndarray of float32, shape (N, 3, H, W)
    """
    rgb = _to_rgb(images, xp)                             # (N, H, W, 3) uint8
    x = rgb.astype(xp.float32) * xp.float32(spec.scale / 255.0)
    if spec.channel_order == "BGR":
        x = x[..., ::-1]                                  # RGB -> BGR
    x = x - xp.asarray(spec.mean, dtype=xp.float32)       # broadcasts over the channel axis
    if spec.std is not None:
        x = x / xp.asarray(spec.std, dtype=xp.float32)
    return xp.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (N, H, W, 3) -> (N, 3, H, W)


def deprocess(x, spec: Preprocessing):
    """Network input back to displayable uint8 RGB (the inverse of :func:`preprocess`).

    Parameters
    ----------
    x : ndarray, shape (3, H, W) or (N, 3, H, W)
        NumPy or CuPy.
    spec : Preprocessing

    Returns
    -------
    numpy.ndarray of uint8, shape (H, W, 3) for one image (3-D input or N == 1),
    else (N, H, W, 3). Values are rounded and clipped to 0-255.
    """
    xp = get_array_module(x)
    x = xp.asarray(x, dtype=xp.float32)
    single = x.ndim == 3 or x.shape[0] == 1
    x = x.reshape((-1,) + x.shape[-3:]).transpose(0, 2, 3, 1)  # (N, 3, H, W) -> (N, H, W, 3)
    if spec.std is not None:
        x = x * xp.asarray(spec.std, dtype=xp.float32)
    x = (x + xp.asarray(spec.mean, dtype=xp.float32)) * xp.float32(255.0 / spec.scale)
    if spec.channel_order == "BGR":
        x = x[..., ::-1]                                       # BGR -> RGB
    out = to_host(xp.clip(xp.rint(x), 0, 255).astype(xp.uint8))
    return out[0] if single else out

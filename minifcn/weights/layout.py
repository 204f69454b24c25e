"""What the weight readers need to know about the state-dict contract, all of it read off
the layer table (:mod:`minifcn.models.spec`) through :mod:`minifcn.models.state_dict`.

The contract itself (every key with its shape, :func:`validate`, :func:`checked_values`)
lives beside the layer table in :mod:`minifcn.models.state_dict`, since a model file is
checked with it too; it is imported here so readers and converters find it in one place.
What is only about weight files stays here: the layer names and kernels a reader maps onto,
telling a network from its keys, and reshaping a fully connected weight into a convolution.
"""
from __future__ import annotations

import numpy as np

from ..errors import WeightFileError
from ..models.spec import AT_ONCE_SCALES, FC_CHANNELS, network_specs, scaled, trunk_specs
from ..models.state_dict import FCN_KINDS, KINDS, checked_values, expected_shapes, validate

__all__ = ["KINDS", "FCN_KINDS", "CONV_NAMES", "FC_WIDTH", "FC6_KERNEL", "UPSCORE_LAYERS",
           "SKIP_SCORERS", "LAYER_NAMES", "ATONCE_SCALES", "POOL5_CHANNELS", "WeightFileError", "scaled",
           "expected_shapes", "validate", "checked_values", "kind_from_keys", "fc_to_conv",
           "pool5_channels", "bfloat16_to_float32"]

_TRUNK = trunk_specs()  # full size
_HEADS = {kind: network_specs(kind)[len(_TRUNK):] for kind in FCN_KINDS}
CONV_NAMES = tuple(s.name for s in _TRUNK if s.name.startswith("conv"))  # VGG16's 3x3 convs
FC_WIDTH = FC_CHANNELS  # VGG16's fc6/fc7 output channels
FC6_KERNEL = next(s.kernel for s in _TRUNK if s.name == "fc6")  # pool5 at a 224x224 input
POOL5_CHANNELS = next(s.out_channels for s in _TRUNK if s.name == "conv5_3")  # fc6 reads pool5
# Transposed convolutions of each FCN variant: name -> kernel size (stride is half of it).
UPSCORE_LAYERS = {kind: {s.name: s.kernel for s in head if s.op == "upscore"}
                  for kind, head in _HEADS.items()}
# 1x1 scorers on the pooled features: name -> full-size input channels.
SKIP_SCORERS = {kind: {s.name: s.in_channels for s in head if s.op == "conv"}
                for kind, head in _HEADS.items()}
# Every layer that holds weights in some kind of file (fc8 is VGG16's classifier).
LAYER_NAMES = frozenset(key.split(".")[0] for kind in KINDS for key in expected_shapes(kind))
# FCN-8s at-once scales pool4 and pool3 by fixed constants (Caffe: Scale layers, lr 0).
ATONCE_SCALES = {f"scale_{pool}": factor for pool, factor in AT_ONCE_SCALES.items()}


def kind_from_keys(keys) -> str:
    """Tell the network from the layer names present (``fcn8s`` for both 8s variants)."""
    keys = set(keys)
    if "upscore8.weight" in keys:
        return "fcn8s"
    if "upscore16.weight" in keys:
        return "fcn16s"
    if "upscore.weight" in keys:
        return "fcn32s"
    if any(k.startswith(("fc6.", "fc7.", "fc8.", "score_fr.")) for k in keys):
        return "vgg16"
    return "vgg16-notop"


def pool5_channels(conv5_3_weight) -> int:
    """Channels of pool5, which fc6 flattens: ``conv5_3``'s outputs when the file has it (a
    narrow net), else the full VGG16's."""
    if conv5_3_weight is not None and np.ndim(conv5_3_weight):
        return int(np.shape(conv5_3_weight)[0])
    return POOL5_CHANNELS


def bfloat16_to_float32(bits):
    """``uint16`` bfloat16 bit patterns as float32: bfloat16 is the top half of a float32 (sign,
    exponent and the top 7 mantissa bits), so the widening is exact."""
    return (np.asarray(bits).astype(np.uint32) << 16).view(np.float32)


def fc_to_conv(weight, in_channels: int, kernel: int, key: str, src="weights"):
    """Reshape a fully connected weight ``(out, in_channels * kernel**2)`` to a conv weight.

    The input must have been flattened channels-first (C, H, W), as Caffe and torchvision do;
    channels-last sources (Keras) reorder before calling this.

    Returns
    -------
    ndarray, shape (out, in_channels, kernel, kernel)
    """
    weight = np.asarray(weight)
    if weight.ndim == 4:  # already a convolution (FCN caffemodels, pytorch-fcn, timm)
        return weight
    expected_in = in_channels * kernel * kernel
    if weight.ndim != 2 or weight.shape[1] != expected_in:
        raise WeightFileError(
            f"{src}: {key} has shape {tuple(weight.shape)}; expected (out, {expected_in}) "
            f"= (out, {in_channels} channels x {kernel} x {kernel}) to become a "
            f"{kernel}x{kernel} conv"
        )
    return weight.reshape(weight.shape[0], in_channels, kernel, kernel)  # (out, C, k, k)

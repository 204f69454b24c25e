"""Map PyTorch-style key names (torchvision, timm, minifcn/pytorch-fcn) to minifcn's.

torchvision's VGG16 numbers its layers inside two ``nn.Sequential`` blocks. ``features``
interleaves convs with ReLUs and pools, so the convs sit at indices 0, 2, 5, 7, 10, 12, 14,
17, 19, 21, 24, 26, 28; ``classifier`` is Linear, ReLU, Dropout, Linear, ReLU, Dropout,
Linear, so the three fully connected layers are 0, 3 and 6. ``classifier.0`` reads pool5
flattened channels-first (after ``torch.flatten`` of a (512, 7, 7) map): its
``(4096, 25088)`` weight reshapes straight to the 7x7 conv ``(4096, 512, 7, 7)``.

timm's ``vgg16.tv_in1k`` holds the same numbers with fc6/fc7 already convolutions
(``pre_logits.fc1`` (4096, 512, 7, 7), ``pre_logits.fc2``) and the last layer as ``head.fc``
(a Linear (1000, 4096), or a 1x1 conv). pytorch-fcn's FCN state dicts already use minifcn's
names, with fc6/fc7 as convolutions.
"""
from __future__ import annotations

import re

from .layout import (CONV_NAMES, FC6_KERNEL, LAYER_NAMES, WeightFileError, fc_to_conv,
                     pool5_channels)

TORCHVISION_FEATURES = dict(zip((0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28), CONV_NAMES))
TORCHVISION_CLASSIFIER = {0: "fc6", 3: "fc7", 6: "fc8"}
TIMM_LAYERS = {"pre_logits.fc1": "fc6", "pre_logits.fc2": "fc7", "head.fc": "fc8"}
MINIFCN_LAYERS = LAYER_NAMES


def _rename(key):
    """``(minifcn layer, param, style)`` for one key, or ``None`` if it is not a VGG16 key."""
    m = re.fullmatch(r"features\.(\d+)\.(weight|bias)", key)
    if m and int(m.group(1)) in TORCHVISION_FEATURES:
        return TORCHVISION_FEATURES[int(m.group(1))], m.group(2), "torchvision"
    m = re.fullmatch(r"classifier\.(\d+)\.(weight|bias)", key)
    if m and int(m.group(1)) in TORCHVISION_CLASSIFIER:
        return TORCHVISION_CLASSIFIER[int(m.group(1))], m.group(2), "torchvision"
    layer, _, param = key.rpartition(".")
    if layer in TIMM_LAYERS and param in ("weight", "bias"):
        return TIMM_LAYERS[layer], param, "timm"
    if layer in MINIFCN_LAYERS and param in ("weight", "bias"):
        return layer, param, "minifcn"
    return None


def pytorch_state_dict(sd: dict, src="weights"):
    """Rename a PyTorch-style VGG16/FCN state dict to minifcn keys and conv layouts.

    Parameters
    ----------
    sd : dict of str -> ndarray
        torchvision (``features.0.weight`` ...), timm (``pre_logits.fc1.weight`` ...) or
        minifcn names; a ``module.`` prefix (from ``nn.DataParallel``) is ignored.
    src : str
        File name for error messages.

    Returns
    -------
    arrays : dict of str -> ndarray
        fc6 as (F, C, 7, 7), fc7 and fc8 as (out, in, 1, 1).
    style : str
        ``'torchvision'``, ``'timm'`` or ``'minifcn'`` (the first one seen).
    """
    if any(k.endswith("running_mean") for k in sd):
        raise WeightFileError(f"{src}: has batch-norm statistics: this is vgg16_bn, which is "
                              "a different network from VGG16/FCN (not supported)")
    arrays, unknown, styles = {}, [], []
    for key, value in sd.items():
        plain = key[len("module."):] if key.startswith("module.") else key
        renamed = _rename(plain)
        if renamed is None:
            unknown.append(key)
            continue
        layer, param, style = renamed
        styles.append(style)
        if f"{layer}.{param}" in arrays:
            raise WeightFileError(f"{src}: two keys map to {layer}.{param} (second: {key})")
        arrays[f"{layer}.{param}"] = value
    if unknown:
        shown = ", ".join(unknown[:8]) + (" ..." if len(unknown) > 8 else "")
        raise WeightFileError(f"{src}: {len(unknown)} keys that are not VGG16/FCN layers: {shown}")
    if not arrays:
        raise WeightFileError(f"{src}: no VGG16/FCN keys found")
    if "fc6.weight" in arrays:  # fc6 flattens pool5: conv5_3's channels x 7 x 7
        conv5_3 = arrays.get("conv5_3.weight")
        arrays["fc6.weight"] = fc_to_conv(arrays["fc6.weight"], pool5_channels(conv5_3), FC6_KERNEL,
                                          "fc6.weight", src)
    for name in ("fc7.weight", "fc8.weight"):
        if name in arrays and arrays[name].ndim == 2:
            arrays[name] = arrays[name][:, :, None, None]  # (out, in) -> (out, in, 1, 1)
    return arrays, styles[0]

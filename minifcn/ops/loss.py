"""Per-pixel softmax cross-entropy with a void label.

For every pixel with label ``y`` and scores ``s`` (one per class)::

    loss = -log softmax(s)[y] = logsumexp(s) - s[y]
    dloss/ds = softmax(s) - onehot(y)

Pixels labelled ``ignore_index`` (255, VOC's void border) contribute neither loss nor
gradient. ``reduction="sum"`` is the reference FCN's unnormalised loss (summed over pixels,
batch size 1), which is why its learning rates are as small as 1e-10; ``"mean"`` divides by
the (weighted) count of valid pixels, and wants a learning rate about that many times larger.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module
from ._util import check_input

REDUCTIONS = ("mean", "sum")


def check_labels(scores, labels, ignore_index, name):
    """Raise unless ``labels`` is an integer (N, H, W) array of valid classes or ``ignore_index``."""
    xp = get_array_module(scores)
    n, c, h, w = scores.shape
    if getattr(labels, "dtype", None) is None or labels.dtype.kind not in "iu":
        raise TypeError(f"{name}: labels must be an integer array, got {getattr(labels, 'dtype', type(labels))}")
    if tuple(labels.shape) != (n, h, w):
        raise ValueError(f"{name}: labels shape {tuple(labels.shape)} does not match scores "
                         f"{tuple(scores.shape)}; expected {(n, h, w)}")
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= c))
    if bool(bad.any()):
        values = sorted(int(v) for v in xp.unique(labels[bad])[:10].tolist())
        raise ValueError(f"{name}: labels must be in [0, {c}) or {ignore_index}; found {values}")


def softmax_cross_entropy_forward(scores, labels, ignore_index=255, class_weight=None,
                                  reduction="mean", name="softmax_cross_entropy"):
    """Numerically stable per-pixel softmax cross-entropy.

    Parameters
    ----------
    scores : array, shape (N, C, H, W)
        Unnormalised class scores.
    labels : integer array, shape (N, H, W)
        Class indices in ``[0, C)`` or ``ignore_index``.
    ignore_index : int
    class_weight : array, shape (C,), optional
        Per-class weight of each pixel's loss (as ``torch.nn.functional.cross_entropy``).
    reduction : {"mean", "sum"}
        ``"mean"`` divides by the summed weight of the valid pixels (0 loss if there are none).

    Returns
    -------
    loss : float
    cache : tuple
    """
    check_input(scores, name)
    check_labels(scores, labels, ignore_index, name)
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    xp = get_array_module(scores)
    c = scores.shape[1]
    shifted = scores - scores.max(axis=1, keepdims=True)  # log-sum-exp trick: exp() <= 1
    valid = labels != ignore_index  # (N, H, W)
    target = xp.where(valid, labels, 0).astype(xp.int64)
    true_score = xp.take_along_axis(shifted, target[:, None], axis=1)[:, 0]  # (N, H, W)
    probs = xp.exp(shifted, out=shifted)  # in place: one (N, C, H, W) array for the whole loss
    sum_exp = probs.sum(axis=1, keepdims=True)  # (N, 1, H, W)
    nll = xp.log(sum_exp[:, 0]) - true_score
    if class_weight is not None:
        if tuple(class_weight.shape) != (c,):
            raise ValueError(f"{name}: class_weight shape {tuple(class_weight.shape)} != ({c},)")
        pixel_weight = class_weight.astype(scores.dtype)[target] * valid
    else:
        pixel_weight = valid.astype(scores.dtype)
    total = (pixel_weight * nll).sum()
    denom = pixel_weight.sum() if reduction == "mean" else scores.dtype.type(1)
    denom = xp.maximum(denom, xp.finfo(scores.dtype).tiny)  # no valid pixel: loss 0, not NaN
    loss = float(total / denom)
    probs /= sum_exp  # softmax
    cache = (probs, target, pixel_weight / denom)
    return loss, cache


def softmax_cross_entropy_backward(dloss, cache, name="softmax_cross_entropy"):
    """``dscores = dloss * (softmax - onehot) * pixel_weight / normaliser``, shape (N, C, H, W).

    ``dloss`` is the gradient of the scalar loss: a number (1.0 to differentiate the loss
    itself), or a 0-d array.
    """
    if np.ndim(dloss) != 0:
        raise ValueError(f"{name}: the upstream gradient of the scalar loss must be a number, "
                         f"got shape {tuple(np.shape(dloss))}")
    xp = get_array_module(cache[0])
    probs, target, scale = cache
    classes = xp.arange(probs.shape[1])[None, :, None, None]
    dscores = probs - (classes == target[:, None])  # minus the one-hot labels, (N, C, H, W)
    dscores *= (scale * probs.dtype.type(dloss))[:, None]
    return dscores


def softmax_cross_entropy_naive(scores, labels, ignore_index=255, class_weight=None, reduction="mean"):
    """Loop twin: the loss pixel by pixel, straight from the definition, in float64."""
    import math

    n, c, h, w = scores.shape
    total, weight_sum = 0.0, 0.0
    for b in range(n):
        for i in range(h):
            for j in range(w):
                y = int(labels[b, i, j])
                if y == ignore_index:
                    continue
                s = [float(scores[b, k, i, j]) for k in range(c)]
                m = max(s)
                log_z = m + math.log(sum(math.exp(v - m) for v in s))
                wt = 1.0 if class_weight is None else float(class_weight[y])
                total += wt * (log_z - s[y])
                weight_sum += wt
    if reduction == "sum":
        return total
    return total / weight_sum if weight_sum > 0 else 0.0

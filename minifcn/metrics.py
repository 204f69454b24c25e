"""Segmentation scores from one confusion matrix, as the FCN paper computes them.

The reference accumulates a single matrix ``hist[gt, pred]`` over every labelled pixel of the
whole dataset and only then derives the four scores of the paper (pixel accuracy, mean accuracy,
mean IU, frequency-weighted IU). Averaging per-image scores instead gives different numbers,
so :class:`ConfusionMatrix` keeps the counts and scores them once at the end.

Pixels labelled 255 (the VOC void border) and any ground-truth label outside
``[0, num_classes)`` are not counted.
"""
from __future__ import annotations

import numpy as np

from minifcn.backend import get_array_module, to_host

VOID_LABEL = 255

__all__ = ["VOID_LABEL", "confusion_matrix", "ConfusionMatrix", "scores_from_hist",
           "format_scores"]


def confusion_matrix(gt, pred, num_classes, xp=None):
    """Count pixels by (true class, predicted class).

    Parameters
    ----------
    gt : array of int, any shape (e.g. (H, W) or (N, H, W))
        Ground-truth labels; 255, negatives and values >= ``num_classes`` are ignored.
    pred : array of int, same shape as ``gt``
        Predicted labels in ``[0, num_classes)``.
    num_classes : int
        Number of classes C.
    xp : module, optional
        ``numpy`` or ``cupy``; taken from the arrays when omitted.

    Returns
    -------
    hist : (C, C) int64 array of the same backend as the inputs
        ``hist[i, j]`` is the number of pixels of true class i predicted as class j.

    Notes
    -----
    One ``bincount`` over the flat index ``C * gt + pred`` fills the whole matrix in a single
    pass, on the CPU or the GPU alike; no scatter-add with duplicate indices is needed.
    """
    if xp is None:
        xp = get_array_module(gt, pred)
    gt = xp.asarray(gt).astype(xp.int64).ravel()
    pred = xp.asarray(pred).astype(xp.int64).ravel()
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred differ in size: {gt.size} vs {pred.size} pixels")
    keep = (gt >= 0) & (gt < num_classes)
    # A prediction outside [0, C) would land in another cell of the flat index; reject it
    # loudly rather than count it somewhere wrong.
    bad = keep & ((pred < 0) | (pred >= num_classes))
    if bool(bad.any()):
        raise ValueError(f"predictions must lie in [0, {num_classes}); "
                         f"found {int(pred[bad][0])}")
    flat = num_classes * gt[keep] + pred[keep]
    hist = xp.bincount(flat, minlength=num_classes * num_classes)
    return hist.reshape(num_classes, num_classes).astype(xp.int64)  # (C, C)


def scores_from_hist(hist):
    """The four FCN scores and the per-class values from a confusion matrix.

    Parameters
    ----------
    hist : (C, C) array of int
        ``hist[gt, pred]`` pixel counts (host or device).

    Returns
    -------
    dict
        ``pixel_accuracy``, ``mean_accuracy``, ``mean_iu``, ``frequency_weighted_iu`` (floats)
        and ``per_class_accuracy``, ``per_class_iu`` ((C,) float64 NumPy arrays).

    Notes
    -----
    A class that appears neither in the ground truth nor in the predictions has IU 0/0: NaN
    is the honest answer, not a bug (it is "per-class IU is NaN", question 12 of the FAQ), and
    the means skip it with ``nanmean``, as the reference does. Likewise a class absent from the
    ground truth has accuracy 0/0 = NaN. NumPy's divide warnings for these expected cases are
    silenced. fwIU weights each class by its share of ground-truth pixels, so classes absent
    from the ground truth (freq 0) contribute nothing even when their IU is NaN.
    """
    hist = to_host(hist).astype(np.float64)
    diag = np.diag(hist)
    rows = hist.sum(axis=1)  # pixels per true class
    cols = hist.sum(axis=0)  # pixels per predicted class
    total = hist.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        per_class_acc = diag / rows
        per_class_iu = diag / (rows + cols - diag)
        pixel_acc = diag.sum() / total if total > 0 else float("nan")
    freq = rows / total if total > 0 else np.zeros_like(rows)
    present = freq > 0
    fw_iu = float((freq[present] * per_class_iu[present]).sum()) if total > 0 else float("nan")
    return {
        "pixel_accuracy": float(pixel_acc),
        "mean_accuracy": _nanmean(per_class_acc),
        "mean_iu": _nanmean(per_class_iu),
        "frequency_weighted_iu": fw_iu,
        "per_class_accuracy": per_class_acc,
        "per_class_iu": per_class_iu,
    }


def _nanmean(values):
    """``np.nanmean`` that returns NaN without a warning when every value is NaN."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


class ConfusionMatrix:
    """A confusion matrix accumulated over a dataset, scored once at the end.

    Parameters
    ----------
    num_classes : int
        Number of classes C.

    Examples
    --------
    >>> cm = ConfusionMatrix(3)
    >>> cm.update(np.array([[0, 1], [2, 255]]), np.array([[0, 1], [1, 0]]))
    >>> round(cm.scores()["pixel_accuracy"], 4)
    0.6667
    """

    def __init__(self, num_classes):
        self.num_classes = int(num_classes)
        self.hist = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def reset(self):
        """Forget every count."""
        self.hist[...] = 0

    def update(self, gt, pred):
        """Add the pixels of one image (H, W) or a batch (N, H, W); host or device arrays.

        The counts are computed on the arrays' own device and only the (C, C) result is
        copied to the host, so a GPU evaluation never moves whole label maps.
        """
        self.hist += to_host(confusion_matrix(gt, pred, self.num_classes))

    def scores(self):
        """The scores of :func:`scores_from_hist` for everything seen since the last reset."""
        return scores_from_hist(self.hist)


def format_scores(scores, class_names=None):
    """A plain-text table of the four scores and the per-class IU.

    Parameters
    ----------
    scores : dict
        The output of :meth:`ConfusionMatrix.scores`.
    class_names : sequence of str, optional
        One name per class; ``class 0``, ``class 1``, ... when omitted.

    Returns
    -------
    str
        Percentages with one decimal; ``n/a`` for a NaN (class never seen).
    """
    def pct(v):
        return "n/a" if np.isnan(v) else f"{100.0 * v:5.1f}"

    lines = [
        f"pixel accuracy         {pct(scores['pixel_accuracy'])}",
        f"mean accuracy          {pct(scores['mean_accuracy'])}",
        f"mean IU                {pct(scores['mean_iu'])}",
        f"frequency-weighted IU  {pct(scores['frequency_weighted_iu'])}",
        "per-class IU:",
    ]
    per_class = np.asarray(scores["per_class_iu"])
    if class_names is None:
        class_names = [f"class {i}" for i in range(len(per_class))]
    width = max((len(n) for n in class_names), default=0)
    for name, iu in zip(class_names, per_class):
        lines.append(f"  {name:<{width}}  {pct(iu)}")
    return "\n".join(lines)

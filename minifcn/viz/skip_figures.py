"""What the skips add, seen: FCN-32s, FCN-16s and FCN-8s side by side on held-out images.

:func:`skip_figure` draws, for a few images, the input, the ground truth and each model's
prediction with its mistakes painted (magenta inside the boundary band, cyan away from it),
and under each prediction the argmax of the ``score_fr`` map it started from, at that map's
own coarse resolution. All three variants share the trunk up to ``score_fr``; what differs
is how much finer detail the skips add on the way up. :func:`skip_comparison_figure` draws
it for the three checkpoints shipped in ``minifcn/assets`` (docs/figures/skips.png).

Like the other modules of :mod:`minifcn.viz`, nothing here uses pyplot.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..data.palette import colorize
from ..models.segment import coarse_segment_batch, segment_batch

BAND_ERROR = (255, 0, 255)  # magenta: a wrong pixel within the boundary band
OTHER_ERROR = (0, 230, 255)  # cyan: a wrong pixel away from every boundary
PNG = {"dpi": 72, "metadata": {"Software": None}}  # small files, no version stamp in them


def error_picture(prediction, label, band):
    """The prediction in the VOC colours, its wrong pixels painted.

    Parameters
    ----------
    prediction, label : int array, shape (H, W)
        Predicted and true classes; void pixels (label 255) are never wrong.
    band : bool array, shape (H, W)
        The boundary band (:func:`minifcn.train.experiment.boundary_band`).

    Returns
    -------
    picture : uint8 array, shape (H, W, 3)
        :data:`BAND_ERROR` where wrong inside ``band``, :data:`OTHER_ERROR` where wrong
        outside it, the predicted class's colour elsewhere.
    """
    picture = colorize(prediction)  # (H, W, 3) uint8
    wrong = (prediction != label) & (label != 255)
    picture[wrong & band] = BAND_ERROR
    picture[wrong & ~band] = OTHER_ERROR
    return picture


def _panel(ax, picture, title=None, xlabel=None):
    ax.imshow(picture, interpolation="nearest")  # nearest: a coarse map's cells stay square
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=9)


def skip_figure(models, images, labels, band_width=3):
    """Predictions of each model beside the input and its ground truth, and the coarse maps.

    Parameters
    ----------
    models : dict of str -> FCN
        Column title -> model, left to right (FCN-32s, FCN-16s, FCN-8s).
    images : uint8 array, shape (N, H, W, 3)
    labels : int array, shape (N, H, W)
    band_width : int
        Width of the boundary band whose mistakes are painted magenta.

    Returns
    -------
    matplotlib.figure.Figure
        Two rows per image: the predictions (each labelled with its accuracy in the band),
        then under each the argmax of its ``score_fr`` (h x w, drawn cell by cell).
    """
    from ..train.experiment import boundary_band

    predictions = {name: segment_batch(m, images) for name, m in models.items()}  # (N, H, W)
    coarse = {name: coarse_segment_batch(m, images) for name, m in models.items()}  # (N, h, w)
    columns = 2 + len(models)
    fig = Figure(figsize=(2.1 * columns, 2.2 * 2 * len(images)))
    axes = fig.subplots(2 * len(images), columns, squeeze=False,
                        gridspec_kw={"height_ratios": [1, 0.75] * len(images)})
    for n, (image, label) in enumerate(zip(images, labels)):
        top, bottom = axes[2 * n], axes[2 * n + 1]
        band = boundary_band(label, band_width)
        first = n == 0
        _panel(top[0], image, "input" if first else None)
        _panel(top[1], colorize(label), "ground truth" if first else None)
        for c, name in enumerate(models, start=2):
            pred = predictions[name][n]
            accuracy = (pred[band] == label[band]).mean() if band.any() else float("nan")
            _panel(top[c], error_picture(pred, label, band), name if first else None,
                   f"band accuracy {accuracy:.0%}")
            h, w = coarse[name][n].shape
            _panel(bottom[c], colorize(coarse[name][n]), xlabel=f"score_fr argmax, {h}x{w}")
        for ax in bottom[:2]:
            ax.axis("off")
        bottom[0].text(0, 0.5, "coarse maps\n(1/32 resolution)", fontsize=9, va="center",
                       transform=bottom[0].transAxes)
    fig.suptitle(f"wrong pixels: magenta within {band_width} px of a boundary, cyan elsewhere",
                 fontsize=10)
    fig.tight_layout()
    return fig


def skip_comparison_figure(path, indices=(0, 1, 2), band_width=3):
    """:func:`skip_figure` of the three shipped checkpoints on held-out images ``indices`` of
    the test set that ``minifcn evaluate`` scores; written to ``path``."""
    from ..data.synthetic import SyntheticShapes
    from ..train.demo import TEST_SEED
    from ..train.experiment import load_shipped_skips

    test = SyntheticShapes(max(indices) + 1, 96, seed=TEST_SEED)
    images, labels = zip(*(test[i] for i in indices))
    fig = skip_figure(load_shipped_skips(), np.stack(images), np.stack(labels), band_width)
    fig.savefig(path, **PNG)
    return Path(path)

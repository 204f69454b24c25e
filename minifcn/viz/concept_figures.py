"""Still figures of the concept pages and notebooks 01, 02, 04 and 05, drawn from the real ops.

Every number in a cell is computed by :mod:`minifcn.ops`, :mod:`minifcn.metrics` or
:mod:`minifcn.models`, so a figure cannot drift from the code it illustrates.

- :func:`im2col_figure`: a padded image, its column matrix, and the convolution as one GEMM.
- :func:`max_pool_figure`: max-pooling with ceil rounding and its argmax-routed backward.
- :func:`ceil_floor_figure`: which pixels floor and ceil rounding let the windows see.
- :func:`convolutionalization_figure`: a fully connected layer on a 7x7 map as a 7x7 conv.
- :func:`relu_dropout_figure`: ReLU, its gradient mask, and an inverted-dropout mask.
- :func:`crop_alignment_figure`: why ``score_pool4`` is cropped at 5 and the output at 31.
- :func:`softmax_loss_figure`: per-pixel loss and gradient, void pixels excluded.
- :func:`confusion_figure`: the worked metrics example of notebook 04.
- :func:`fcn8s_sizes_figure`: the spatial size of every FCN-8s blob for a 500x500 input.

:func:`make_concept_figures` writes them all. Like :mod:`minifcn.viz.conv_figures`, nothing here
uses pyplot, so no global backend is touched and no window opens.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..data.palette import colorize
from ..metrics import confusion_matrix, scores_from_hist
from ..models.coords import coordinate_maps
from ..models.describe import blob_rows
from ..models.spec import network_specs
from ..ops import (conv2d_forward, conv_output_size, dropout_forward, im2col, max_pool2d_backward,
                   max_pool2d_forward, relu_backward, relu_forward,
                   softmax_cross_entropy_backward, softmax_cross_entropy_forward)
from .conv_figures import heatmap

PNG = {"dpi": 72, "metadata": {"Software": None}}  # small files, no version stamp in them
SOBEL = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float64)


def _save(fig, path):
    fig.savefig(path, **PNG)
    return Path(path)


def _box(ax, row, col, height, width, colour="tab:orange", style="-", lw=2.5):
    """Outline ``height x width`` cells of a heatmap, top-left cell at ``(row, col)``."""
    ax.add_patch(Rectangle((col - 0.5, row - 0.5), width, height, fill=False, edgecolor=colour,
                           linestyle=style, linewidth=lw, clip_on=False))


def _label_panel(ax, label, title):
    colours = colorize(label)  # (H, W, 3) uint8, the VOC palette
    ax.imshow(colours)
    for (r, c), v in np.ndenumerate(label):
        dark = colours[r, c].mean() < 110
        ax.text(c, r, str(v), ha="center", va="center", fontsize=9,
                color="white" if dark else "black")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)


def im2col_figure(path):
    """A 4x4 image padded by 1, its im2col matrix (9 x 16) and the 3x3 convolution as
    ``kernel row (1 x 9) @ columns``; one window, its column and its output are outlined."""
    x = np.arange(1.0, 17.0).reshape(1, 1, 4, 4)  # (N, C, H, W)
    cols = im2col(x, 3, 1, 1)[0]  # (C*kh*kw, H_out*W_out) = (9, 16)
    out = conv2d_forward(x, SOBEL[None, None], None, 1, 1)[0][0, 0]  # (4, 4)
    padded = np.pad(x[0, 0], 1)
    pad_mask = np.pad(np.zeros((4, 4), bool), 1, constant_values=True)
    fig = Figure(figsize=(13, 3.9))
    grid = fig.add_gridspec(1, 4, width_ratios=[6.5, 16, 3.5, 4.5])
    ax = fig.add_subplot(grid[0])
    heatmap(ax, padded, "image 4x4, zero padding 1", shaded=pad_mask)
    _box(ax, 1, 2, 3, 3)  # the window of output (1, 2)
    ax = fig.add_subplot(grid[1])
    heatmap(ax, cols, "im2col: one column per window  (9 x 16)")
    ax.set_yticks(range(9), [f"tap {i},{j}" for i in range(3) for j in range(3)])
    ax.set_xticks(range(16), [f"{r},{c}" for r in range(4) for c in range(4)], fontsize=6)
    _box(ax, 0, 6, 9, 1)  # column 1*4 + 2
    heatmap(fig.add_subplot(grid[2]), SOBEL, "kernel 3x3\n(a row of 9)", cmap="RdBu_r")
    ax = fig.add_subplot(grid[3])
    heatmap(ax, out, "kernel row @ columns\nreshaped to 4x4", cmap="RdBu_r")
    _box(ax, 1, 2, 1, 1)
    fig.suptitle("convolution = im2col + one matrix product: the outlined window is column 6, "
                 "and its dot product with the kernel is output (1, 2)", fontsize=11)
    fig.subplots_adjust(left=0.04, right=0.99, top=0.8, bottom=0.1, wspace=0.35)
    return _save(fig, path)


def pool_example():
    """The 5x5 input of :func:`max_pool_figure`: distinct integers 1..25 (no ties)."""
    return np.random.default_rng(3).permutation(25).reshape(1, 1, 5, 5).astype(np.float64) + 1


def max_pool_figure(path):
    """2x2 stride-2 max-pooling of a 5x5 input with ceil rounding (3x3 output, the last row
    and column of windows hang off the edge), and the backward pass routing each output
    gradient to the pixel that won its window."""
    x = pool_example()
    out, cache = max_pool2d_forward(x, 2, 2, 0, ceil_mode=True)
    dout = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    dx = max_pool2d_backward(dout, cache)
    winners = np.zeros((5, 5), bool)
    winners[np.nonzero(dx[0, 0])] = True
    fig = Figure(figsize=(12, 3.6))
    grid = fig.add_gridspec(1, 4, width_ratios=[6, 3.6, 3.6, 6])
    ax = fig.add_subplot(grid[0])
    heatmap(ax, x[0, 0], "input 5x5 (winners outlined)")
    for i in range(3):
        for j in range(3):
            hangs = i == 2 or j == 2
            _box(ax, 2 * i + 0.1, 2 * j + 0.1, 1.8, 1.8, "tab:gray", ":" if hangs else "-", 1.5)
    for r, c in zip(*np.nonzero(winners)):
        _box(ax, r, c, 1, 1)
    heatmap(fig.add_subplot(grid[1]), out[0, 0], "max_pool2d, ceil\n5x5 -> 3x3")
    heatmap(fig.add_subplot(grid[2]), dout[0, 0], "upstream gradient\n3x3")
    ax = fig.add_subplot(grid[3])
    heatmap(ax, dx[0, 0], "backward: each gradient\ngoes to its window's winner")
    for r, c in zip(*np.nonzero(winners)):
        _box(ax, r, c, 1, 1)
    fig.suptitle("max-pooling 2x2, stride 2, ceil rounding: the dotted windows hang off the "
                 "edge and pool the pixels that exist", fontsize=11)
    fig.subplots_adjust(left=0.03, right=0.99, top=0.78, bottom=0.06, wspace=0.35)
    return _save(fig, path)


def ceil_floor_figure(path, size=7, kernel=2, stride=2):
    """A row of ``size`` pixels and the windows that floor and ceil rounding place on it."""
    fig = Figure(figsize=(8, 2.3))
    ax = fig.add_subplot()
    for row, ceil in enumerate((False, True)):
        y = 1.2 - 1.2 * row
        n = conv_output_size(size, kernel, stride, 0, ceil)
        seen = set()
        for k in range(n):
            start = k * stride
            seen.update(range(start, min(start + kernel, size)))
            ax.add_patch(Rectangle((start + 0.06, y - 0.42), kernel - 0.12, 0.84, fill=False,
                                   edgecolor="tab:orange", linewidth=2,
                                   linestyle=":" if start + kernel > size else "-"))
        for p in range(size):
            ax.add_patch(Rectangle((p + 0.15, y - 0.3), 0.7, 0.6,
                                   color="tab:blue" if p in seen else "tab:red", alpha=0.6))
        lost = [p for p in range(size) if p not in seen]
        ax.text(-0.3, y, f"{'ceil' if ceil else 'floor'}: {n} windows", ha="right", va="center")
        verdict = f"pixel {lost[0]} never seen" if lost else "every pixel seen"
        ax.text(size + kernel + 0.1, y, verdict, va="center",
                color="tab:red" if lost else "tab:blue")
    ax.set_xlim(-3.2, size + kernel + 4)
    ax.set_ylim(-0.7, 1.9)
    ax.axis("off")
    ax.set_title(f"{size} pixels, kernel {kernel}, stride {stride}", fontsize=11)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.86, bottom=0.02)
    return _save(fig, path)


def convolutionalization_figure(path):
    """A fully connected layer on a flattened 7x7 map is a 7x7 convolution; on a 9x10 map the
    same weights slide and give a 3x4 map of outputs."""
    rng = np.random.default_rng(7)
    kernel = rng.integers(-1, 2, size=(1, 1, 7, 7)).astype(np.float64)  # (out, in, 7, 7)
    big = rng.integers(0, 4, size=(1, 1, 9, 10)).astype(np.float64)
    fc = kernel.reshape(1, -1) @ big[0, :, :7, :7].reshape(-1)  # FC on the flattened 7x7 crop
    out = conv2d_forward(big, kernel)[0][0, 0]  # (3, 4)
    fig = Figure(figsize=(12, 3.7))
    grid = fig.add_gridspec(1, 3, width_ratios=[10, 7, 4.5])
    ax = fig.add_subplot(grid[0])
    heatmap(ax, big[0, 0], "a 9x10 map")
    _box(ax, 0, 0, 7, 7)
    _box(ax, 2, 3, 7, 7, "tab:green", "--", 1.8)
    heatmap(fig.add_subplot(grid[1]), kernel[0, 0], "FC weight row (49) reshaped to 7x7",
            cmap="RdBu_r")
    ax = fig.add_subplot(grid[2])
    heatmap(ax, out, "7x7 conv: 3x4 outputs", cmap="RdBu_r")
    _box(ax, 0, 0, 1, 1)
    _box(ax, 2, 3, 1, 1, "tab:green", "--", 1.8)
    fig.suptitle(f"FC(flatten(orange 7x7)) = {fc[0]:.0f} = conv output (0, 0); the conv also "
                 "answers at every other position (green: (2, 3))", fontsize=11)
    fig.subplots_adjust(left=0.03, right=0.99, top=0.8, bottom=0.06, wspace=0.3)
    return _save(fig, path)


def relu_dropout_figure(path):
    """ReLU's output and gradient mask, and one inverted-dropout mask (p = 0.5, survivors x2)."""
    rng = np.random.default_rng(2)
    x = np.round(rng.uniform(-1, 1, size=(4, 5)), 2)
    relu, mask = relu_forward(x)
    dx = relu_backward(np.ones_like(x), mask)
    dropped, keep = dropout_forward(x, 0.5, True, np.random.default_rng(0))
    fig = Figure(figsize=(14, 2.9))
    panels = [(x, "x"), (relu, "relu(x)"), (dx, "relu backward of ones\n(the mask x > 0)"),
              (keep, "dropout mask, p = 0.5\n(0 or 1/(1-p) = 2)"),
              (dropped, "dropout(x), training")]
    for k, (values, title) in enumerate(panels):
        heatmap(fig.add_subplot(1, 5, k + 1), values + 0.0, title, cmap="RdBu_r")  # no "-0"
    fig.subplots_adjust(left=0.02, right=0.99, top=0.8, bottom=0.04, wspace=0.25)
    return _save(fig, path)


def crop_alignment_figure(path, size=500):
    """Pixel centres of ``score_pool4`` and ``upscore2`` on the input's axis (the offset 5 is
    where they meet), and the final crop of ``upscore8`` at 31, not at the centre."""
    specs = network_specs("fcn8s")
    maps = coordinate_maps(specs)
    rows = {r["name"]: r for r in blob_rows("fcn8s", size, size)}
    fig = Figure(figsize=(12, 3.8))
    grid = fig.add_gridspec(1, 2, width_ratios=[2.4, 1])
    ax = fig.add_subplot(grid[0])
    for y, name, count in ((1, "score_pool4", 12), (0, "upscore2", 7)):
        m = maps[name]
        centres = [float(m.scale * k + m.shift) for k in range(count)]
        ax.plot(centres, [y] * count, "o", ms=7, color="tab:blue" if y else "tab:orange")
        for k, c in enumerate(centres):
            ax.text(c, y + 0.18, str(k), ha="center", fontsize=8)
        ax.text(centres[0] - 12, y, f"{name}\n{m}", ha="right", va="center", fontsize=9)
    aligned = float(maps["upscore2"].shift)
    ax.axvline(aligned, color="0.6", linestyle="--")
    ax.axvline(0, color="tab:green", linewidth=1)
    ax.text(2, 1.4, "input pixel 0", color="tab:green", fontsize=8)
    ax.text(aligned - 3, -0.5, f"score_pool4[5] and upscore2[0] both sit at {aligned:g}",
            fontsize=8, ha="right")
    ax.set_ylim(-0.8, 1.55)
    ax.set_xlim(-175, 110)
    ax.set_yticks([])
    ax.set_xlabel("input coordinate of each pixel centre", fontsize=9)
    ax.tick_params(labelsize=8)
    ax = fig.add_subplot(grid[1])  # the top-left corner of upscore8, where the crops start
    big, off = rows["upscore8"]["shape"][1], rows["score"]["offset"]
    centred = (big - size) / 2
    ax.add_patch(Rectangle((0, 0), big, big, fill=False, edgecolor="0.3", linewidth=1.5))
    ax.add_patch(Rectangle((off, off), size, size, alpha=0.35, color="tab:green",
                           label=f"crop at {off}: the image"))
    ax.add_patch(Rectangle((centred, centred), size, size, fill=False, edgecolor="tab:red",
                           linestyle="--", linewidth=2, label=f"centred crop at {centred:g}"))
    ax.set_xlim(-4, 60)
    ax.set_ylim(60, -4)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8, loc="upper right", bbox_to_anchor=(1.0, 0.9))
    ax.set_title(f"top-left corner of upscore8 ({big}x{big})", fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.9, bottom=0.14, wspace=0.12)
    return _save(fig, path)


def loss_example():
    """Scores (1, 3, 4, 5) and labels (1, 4, 5) with a void (255) border on the right."""
    rng = np.random.default_rng(4)
    scores = np.round(rng.normal(0, 1.5, size=(1, 3, 4, 5)), 1)
    labels = rng.integers(0, 3, size=(1, 4, 5))
    labels[0, :, 4] = 255
    return scores, labels


def softmax_loss_figure(path):
    """Labels with void pixels, each pixel's loss ``-log p[label]``, and the gradient of one
    class, ``p - onehot``: zero wherever the label is 255."""
    scores, labels = loss_example()
    loss_map = np.zeros(labels.shape[1:])
    for i, j in np.ndindex(*loss_map.shape):  # each pixel on its own, summed = its loss
        loss_map[i, j] = softmax_cross_entropy_forward(
            scores[:, :, i:i + 1, j:j + 1], labels[:, i:i + 1, j:j + 1], reduction="sum")[0]
    total, cache = softmax_cross_entropy_forward(scores, labels, reduction="sum")
    grad = softmax_cross_entropy_backward(1.0, cache)[0]  # (C, H, W)
    void = labels[0] == 255
    fig = Figure(figsize=(13, 3.0))
    heatmap(fig.add_subplot(1, 4, 1), scores[0, 0] + 0.0, "scores of class 0", cmap="RdBu_r")
    _label_panel(fig.add_subplot(1, 4, 2), labels[0], "labels (255: void)")
    heatmap(fig.add_subplot(1, 4, 3), loss_map, f"per-pixel loss, sum = {total:.2f}",
            shaded=void)
    heatmap(fig.add_subplot(1, 4, 4), grad[0] + 0.0, "dloss/dscore of class 0\n= p0 - [label == 0]",
            shaded=void, cmap="RdBu_r")
    fig.subplots_adjust(left=0.02, right=0.99, top=0.8, bottom=0.04, wspace=0.2)
    return _save(fig, path)


def metrics_example():
    """The worked example of notebook 04: ground truth and prediction (4x4, 3 classes, one
    void pixel) small enough to score by hand. Returns ``(gt, pred)`` int arrays."""
    gt = np.array([[0, 0, 0, 1],
                   [0, 0, 1, 1],
                   [0, 2, 2, 1],
                   [0, 2, 2, 255]])
    pred = np.array([[0, 0, 0, 0],
                     [0, 0, 1, 1],
                     [0, 0, 2, 1],
                     [1, 2, 2, 2]])
    return gt, pred


def confusion_figure(path):
    """Ground truth, prediction and the confusion matrix ``hist[gt, pred]`` of
    :func:`metrics_example`, with the per-class IU."""
    gt, pred = metrics_example()
    hist = confusion_matrix(gt, pred, 3)
    scores = scores_from_hist(hist)
    fig = Figure(figsize=(10, 3.3))
    grid = fig.add_gridspec(1, 3, width_ratios=[4, 4, 5])
    _label_panel(fig.add_subplot(grid[0]), gt, "ground truth (255: void)")
    _label_panel(fig.add_subplot(grid[1]), pred, "prediction")
    ax = fig.add_subplot(grid[2])
    heatmap(ax, hist, "hist[gt, pred]")
    ax.set_ylabel("ground truth", fontsize=9)
    ax.set_xlabel("prediction", fontsize=9)
    ax.set_yticks(range(3), [f"{c}: IU {iu:.2f}" for c, iu in enumerate(scores["per_class_iu"])])
    fig.suptitle(f"pixel acc {scores['pixel_accuracy']:.3f}, mean acc "
                 f"{scores['mean_accuracy']:.3f}, mean IU {scores['mean_iu']:.3f}, "
                 f"fwIU {scores['frequency_weighted_iu']:.3f}", fontsize=11)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.82, bottom=0.12, wspace=0.4)
    return _save(fig, path)


OP_COLOURS = {"input": "0.5", "conv": "tab:blue", "pool": "tab:orange", "upscore": "tab:green",
              "crop": "tab:red", "add": "tab:purple"}


def fcn8s_sizes_figure(path, size=500):
    """The spatial size of every FCN-8s blob for a ``size x size`` input (ReLU and dropout
    left out: they keep the size), with the crop offsets."""
    rows = [r for r in blob_rows("fcn8s", size, size) if r["op"] in OP_COLOURS]
    fig = Figure(figsize=(8, 7.5))
    ax = fig.add_subplot()
    for k, r in enumerate(rows):
        c, h, w = r["shape"]
        ax.barh(k, h, color=OP_COLOURS[r["op"]], height=0.7)
        note = f"{c} x {h} x {w}" + (f"   crop at {r['offset']}" if r["offset"] is not None else "")
        ax.text(h + 8, k, note, va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [r["name"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 960)
    ax.set_xlabel("height (= width) of the blob", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    for op, colour in OP_COLOURS.items():
        ax.barh(0, 0, color=colour, label=op)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"FCN-8s on a {size}x{size} image", fontsize=11)
    fig.subplots_adjust(left=0.16, right=0.98, top=0.95, bottom=0.07)
    return _save(fig, path)


CONCEPT_FIGURES = {
    "im2col.png": im2col_figure,
    "max_pool.png": max_pool_figure,
    "ceil_floor.png": ceil_floor_figure,
    "convolutionalization.png": convolutionalization_figure,
    "relu_dropout.png": relu_dropout_figure,
    "crop_alignment.png": crop_alignment_figure,
    "softmax_loss.png": softmax_loss_figure,
    "confusion.png": confusion_figure,
    "fcn8s_sizes.png": fcn8s_sizes_figure,
}


def make_concept_figures(out_dir):
    """Write every figure of :data:`CONCEPT_FIGURES` into ``out_dir`` (created if missing).

    Returns
    -------
    paths : list of Path
        The files written, in :data:`CONCEPT_FIGURES` order.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [function(out_dir / name) for name, function in CONCEPT_FIGURES.items()]

"""Figures of the whole network (notebook 05 and docs/model.md), drawn from the model's own
arithmetic and its own backward pass.

- :func:`draw_crop_extents`: every crop of a variant on the input's axis, for any input size:
  the blob that is cropped, the blob it is cropped to, and what the crop throws away.
- :func:`draw_receptive_field`: a unit's theoretical window and its effective receptive field
  (the gradient of the unit with respect to the input).
- :func:`receptive_field_figure`: that picture for the shipped model
  (:func:`receptive_field_example`), written to a file.

The ``draw_*`` functions draw into a :class:`matplotlib.figure.Figure` they are given, so a
notebook can pass ``plt.figure()`` and show it, and the docs a bare ``Figure`` saved to a file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..models.coords import coordinate_maps
from ..models.describe import blob_rows
from ..models.receptive import centred_extent, field_interval, unit_input_gradient
from ..models.spec import network_specs

PNG = {"dpi": 64, "metadata": {"Software": None}}  # small files, no version stamp in them


def _extent(coord_map, length):
    """First and last input coordinate covered by a blob's ``length`` pixels (each pixel
    ``scale`` input pixels wide, centred on its map)."""
    a, b = float(coord_map.scale), float(coord_map.shift)
    return b - a / 2, a * (length - 1) + b + a / 2


def draw_crop_extents(fig, variant="fcn8s", size=500, pad=100):
    """Each crop of ``variant`` for a ``size x size`` input, on the input's axis.

    One panel per crop: the blob that is cropped (top bar) and the blob whose size it is
    cropped to (bottom bar), each drawn where its pixels sit in input coordinates (the
    coordinate maps), with the pixels the crop keeps in a darker shade. The image itself is
    the green band. The offset on the left is the same for every size; what is dropped on
    the right is whatever is left over.
    """
    rows = {r["name"]: r for r in blob_rows(variant, size, size, pad=pad)}
    crops = [r for r in rows.values() if r["op"] == "crop"]
    specs = {s.name: s for s in network_specs(variant, pad=pad)}  # a crop's two inputs
    maps = coordinate_maps(specs.values())
    axes = fig.subplots(len(crops), 1, squeeze=False)[:, 0]
    spans = []
    for ax, crop in zip(axes, crops):
        big_name, ref_name = specs[crop["name"]].bottom
        n_big, n_ref = rows[big_name]["shape"][1], rows[ref_name]["shape"][1]
        offset, m = crop["offset"], maps[big_name]
        a = float(m.scale)
        lo, hi = _extent(m, n_big)
        kept_lo, kept_hi = lo + a * offset, lo + a * (offset + n_ref)
        ref_lo, ref_hi = _extent(maps[ref_name], n_ref)
        spans += [lo, hi]
        ax.axvspan(-0.5, size - 0.5, color="tab:green", alpha=0.12, lw=0)
        ax.barh(1, hi - lo, left=lo, height=0.5, color="0.85", edgecolor="0.5")
        ax.barh(1, kept_hi - kept_lo, left=kept_lo, height=0.5, color="tab:blue", alpha=0.6)
        ax.barh(0, ref_hi - ref_lo, left=ref_lo, height=0.5, color="tab:orange", alpha=0.6)
        if a >= 4:  # pixel boundaries, where they are far enough apart to see
            ax.vlines(lo + a * np.arange(n_big + 1), 0.75, 1.25, color="0.4", lw=0.5)
            ax.vlines(ref_lo + a * np.arange(n_ref + 1), -0.25, 0.25, color="0.4", lw=0.5)
        ax.set_yticks([0, 1], [f"{ref_name}\n{n_ref} px", f"{big_name}\n{n_big} px"], fontsize=8)
        after = n_big - offset - n_ref
        ax.set_title(f"{crop['name']}: {big_name} (x_in = {m}) cropped at {offset}: "
                     f"{offset} px dropped before, {after} after", fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        ax.set_ylim(-0.5, 1.5)
    for ax in axes:
        ax.set_xlim(min(spans) - 8, max(spans) + 8)
    axes[-1].set_xlabel(f"input coordinate (the {size}x{size} image is the green band)",
                        fontsize=9)
    fig.suptitle(f"{variant}: the crops at input size {size}", fontsize=10)
    fig.subplots_adjust(left=0.14, right=0.98, top=0.88, bottom=0.12, hspace=0.9)
    return fig


def _square(ax, centre, side, **style):
    half = side / 2
    ax.add_patch(Rectangle((centre[1] - half, centre[0] - half), side, side, fill=False,
                           **style))


def draw_receptive_field(fig, image, energy, window, side, fraction=0.95):
    """The image, the gradient of one unit with respect to it, and the gradient's profile.

    Parameters
    ----------
    fig : matplotlib Figure
    image : ndarray, shape (H, W, 3), uint8
        The input image as it was before preprocessing.
    energy : ndarray, shape (H, W)
        The unit's squared input gradient, summed over channels (and images).
    window : ((int, int), (int, int))
        The unit's theoretical window, rows and columns (:func:`field_interval`), drawn
        dashed red.
    side : int
        The side of the square around the window's centre that holds ``fraction`` of the
        energy (:func:`centred_extent`), drawn solid.
    """
    (top, bottom), (left, right) = window
    rf, centre = bottom - top + 1, ((top + bottom) / 2, (left + right) / 2)
    axes = fig.subplots(1, 3, gridspec_kw=dict(width_ratios=[1, 1, 1.25]))
    theory = dict(edgecolor="tab:red", linestyle="--", linewidth=1.5)
    magnitude = np.sqrt(energy)  # (H, W) length of the gradient at each pixel
    inner = f"{fraction:.0%} of the energy, {side} px"
    views = ((image, f"input; red: the unit's window, {rf} px\nblack: {inner}", "black"),
             (magnitude, f"|gradient| of the unit\nwhite: {inner}", "white"))
    for ax, (picture, title, colour) in zip(axes[:2], views):
        # a few very large values would leave everything else black
        ax.imshow(picture, cmap="magma", vmax=None if picture is image
                  else np.percentile(magnitude, 99.7))
        _square(ax, centre, rf, **theory)
        _square(ax, centre, side, edgecolor=colour, linewidth=1.5)
        ax.set_xlim(min(left, 0) - 10, max(right, image.shape[1] - 1) + 10)
        ax.set_ylim(max(bottom, image.shape[0] - 1) + 10, min(top, 0) - 10)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    ax = axes[2]
    columns = np.arange(energy.shape[1])
    profile = energy.sum(axis=0) / energy.sum()  # (W,) the energy's share in each column
    mean = (profile * columns).sum()
    std = np.sqrt((profile * (columns - mean) ** 2).sum())
    gauss = np.exp(-0.5 * ((columns - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi))
    ax.plot(columns, profile, color="0.2", lw=1, label="share of the energy per column")
    ax.plot(columns, gauss, color="tab:blue", lw=1.5,
            label=f"Gaussian, same mean and spread (sd {std:.0f} px)")
    ax.axvspan(left, right, color="tab:red", alpha=0.08, label=f"theoretical window, {rf} px")
    ax.axvspan(centre[1] - side / 2, centre[1] + side / 2, color="0.5", alpha=0.15,
               label=f"{fraction:.0%} of the energy, {side} px")
    ax.set_xlim(min(left, 0) - 10, max(right, image.shape[1] - 1) + 10)
    ax.set_xlabel("input column", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper right")
    fig.subplots_adjust(left=0.04, right=0.99, top=0.86, bottom=0.12, wspace=0.2)
    return fig


def receptive_field_example(size=448, channel=1, seed=0, fraction=0.95):
    """The shipped model's ``score_fr`` unit nearest the centre of a synthetic image.

    Returns
    -------
    image : ndarray (H, W, 3) uint8
    energy, window, side
        As :func:`draw_receptive_field` takes them: the unit's squared input gradient summed
        over channels, its theoretical window, the side holding ``fraction`` of the energy.
    """
    from ..data.synthetic import make_sample
    from ..models.io import load_model
    from ..preprocess import preprocess
    from ..train.demo import shipped_checkpoint

    model = load_model(shipped_checkpoint())
    image, _ = make_sample(np.random.default_rng(seed), size, size)  # (H, W, 3) uint8
    x = preprocess(image, model.preprocessing)  # (1, 3, H, W)
    rows = blob_rows(model.variant, size, size, model.num_classes, model.width, model.pad)
    middle = {r["name"]: r for r in rows}["score_fr"]["shape"][1] // 2
    dx = unit_input_gradient(model, x, "score_fr", channel, middle, middle)  # (1, 3, H, W)
    energy = (np.asarray(dx, dtype=np.float64) ** 2).sum(axis=(0, 1))  # (H, W)
    window = (field_interval(model.specs, "score_fr", middle),) * 2  # rows, columns
    centre = tuple((first + last) / 2 for first, last in window)
    return image, energy, window, centred_extent(energy, centre, fraction)


def receptive_field_figure(path, size=448):
    """:func:`draw_receptive_field` for :func:`receptive_field_example`, saved to ``path``."""
    fig = draw_receptive_field(Figure(figsize=(13, 4.2)), *receptive_field_example(size))
    fig.savefig(path, **PNG)
    return Path(path)

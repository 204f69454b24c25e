"""The three regions of FCN-8s's trunk blobs: ``docs/figures/performance/border_regions.png``.

Run from the repository root::

    python -m benchmarks.border_figure                 # 500x500 pad 100, and the demo's net
    python -m benchmarks.border_figure --out /tmp/border.png

Each panel is one blob, coloured by :mod:`minifcn.engine.border`: the box the image reaches,
the frames along the edges (where a convolution's zero padding met the blank-image constant)
and the constant itself. The engine computes the first two and writes the third.
"""
from __future__ import annotations

import argparse
import numpy as np

from benchmarks.report import FIGURES, save_figure
from minifcn.engine.border import trunk_regions
from minifcn.models.spec import network_specs

BLOBS = ("conv1_2", "pool1", "conv2_2", "pool2", "conv3_3", "pool3", "conv4_3", "pool4",
         "fc6")
CONSTANT, FRAME, BOX = 0, 1, 2
ROWS = [("FCN-8s\n500x500, pad 100", 500, 100, 1.0),
        ("the demo's net\n96x96, pad 69", 96, 69, 1 / 16)]


def region_map(region):
    """An (H, W) array of CONSTANT, FRAME and BOX."""
    kinds = np.full(region.shape, CONSTANT, dtype=np.int8)
    for rows, cols in region.pieces():
        kinds[rows, cols] = FRAME
    kinds[region.rows.lo:region.rows.hi, region.cols.lo:region.cols.hi] = BOX
    return kinds


def border_figure(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    colours = ["#d9d9d9", "#e6550d", "#3182bd"]  # constant, frames, box
    fig, axes = plt.subplots(len(ROWS), len(BLOBS), figsize=(1.6 * len(BLOBS), 2.0 * len(ROWS)))
    for row, (title, side, pad, width) in zip(axes, ROWS):
        specs = [s for s in network_specs("fcn8s", 21, width, pad) if s.trunk]
        regions = trunk_regions(specs, side, side)
        for ax, name in zip(row, BLOBS):
            region = regions[name]
            ax.imshow(region_map(region), cmap=ListedColormap(colours), vmin=0, vmax=2,
                      interpolation="nearest")
            ax.set_title(f"{name} {region.shape[0]}\n{region.varying_fraction():.0%} computed",
                         fontsize=7)
            ax.set_xticks([]), ax.set_yticks([])
        row[0].set_ylabel(title, fontsize=7)
    fig.legend([Patch(color=c) for c in colours[::-1]],
               ["box: the image reaches it", "frames: zero padding met the constant",
                "constant: the blank image's response"], loc="lower center", ncol=3, fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return save_figure(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(FIGURES / "border_regions.png"))
    print(border_figure(parser.parse_args(argv).out))


if __name__ == "__main__":
    main()

"""A PNG of a run's training curves: loss, pixel accuracy, and validation mean IU."""
from __future__ import annotations

import csv

from ..npzio import atomic_write


def plot_curves(log_csv, out_png):
    """Plot ``log.csv`` (written by the trainer) to ``out_png``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    it = [int(r["iteration"]) for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(it, [float(r["loss"]) for r in rows], lw=0.6, color="tab:blue")
    ax_loss.set(xlabel="iteration", ylabel="training loss", yscale="log", title="loss")
    ax_acc.plot(it, [float(r["pixel_accuracy"]) for r in rows], lw=0.6, alpha=0.5,
                label="training pixel accuracy")
    val = [(int(r["iteration"]), float(r["val_mean_iu"]), float(r["val_pixel_accuracy"]))
           for r in rows if r.get("val_mean_iu")]
    if val:
        ax_acc.plot([v[0] for v in val], [v[1] for v in val], "o-", label="validation mean IU")
        ax_acc.plot([v[0] for v in val], [v[2] for v in val], "s--", label="validation pixel accuracy")
    ax_acc.set(xlabel="iteration", ylim=(0, 1), title="accuracy")
    ax_acc.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    # through a temporary file: the name says .tmp, so the format is named
    atomic_write(out_png, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)
    return out_png

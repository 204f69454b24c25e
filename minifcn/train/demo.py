"""``minifcn demo``: the whole job in a few minutes, on a CPU, with nothing to download.

1. Train a narrow FCN-8s from scratch on synthetic shapes, with a live progress bar.
2. Evaluate it, and the checkpoint shipped inside the package (the same net trained far longer
   with momentum SGD by ``minifcn train --preset shipped``), on held-out synthetic images,
   with the paper's four metrics.
3. Draw input / ground truth / both predictions side by side into the output folder.
"""
from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import numpy as np

from ..cliargs import positive
from ..data.synthetic import SyntheticShapes
from ..engine.memory import cpu_threads
from ..metrics import format_scores
from .config import check_value, preset
from .evaluate import evaluate, segment_batch
from .processes import usable_processes
from .trainer import Trainer

SHIPPED = "fcn8s_synthetic.npz"
TEST_SEED = 20_000  # neither training batches nor the training run's validation images


def shipped_checkpoint(name=SHIPPED):
    """Path of the checkpoint ``name`` shipped in ``minifcn/assets`` (``None`` if absent)."""
    path = Path(str(resources.files("minifcn") / "assets" / name))
    return path if path.exists() else None


def load_shipped(device="cpu"):
    from ..models.io import load_model

    path = shipped_checkpoint()
    return load_model(path, device=device, ops="engine") if path else None


def _shared(processes):
    return f", shared by {processes} processes" if processes > 1 else ""


def run_demo(minutes=4.0, out_dir="minifcn-output", device="cpu", quick=False, test_images=100):
    """Train, evaluate and draw as the module says; the run's files go to ``out_dir/demo-run``,
    replacing an earlier demo's. Returns the scores of each model by name."""
    out_dir = Path(out_dir)
    start = time.perf_counter()
    # minutes=0 would mean "no time limit" to the trainer: 100,000 iterations of the preset
    config = preset("demo").replace(minutes=check_value("minutes", minutes, positive(float)),
                                    processes=usable_processes(preset("demo").processes, device))
    if quick:
        config = config.replace(width=1 / 32, image_size=64, batch_size=2, iterations=10, minutes=0.0)
        test_images = 6
    print(f"[1/3] training a narrow FCN-8s (width {config.width:g}, {config.image_size}x{config.image_size} "
          f"synthetic shapes, batch {config.batch_size}{_shared(config.processes)}) from scratch "
          + (f"for {config.minutes:g} minutes" if config.minutes else f"for {config.iterations} iterations"))
    trainer = Trainer(config, out_dir / "demo-run", device, progress=True, overwrite=True)
    with cpu_threads(1):  # a network this narrow: one BLAS thread in each process
        summary = trainer.run()
    print(f"      {summary['iterations']} iterations in {summary['seconds']:.0f} s")

    test = SyntheticShapes(test_images, config.image_size, seed=TEST_SEED)
    models = {"trained just now": trainer.model}
    shipped = load_shipped(device)
    if shipped is not None:
        models["shipped checkpoint"] = shipped
    print(f"[2/3] evaluating on {len(test)} held-out synthetic images")
    results = {}
    for name, model in models.items():
        results[name] = evaluate(model, test)
        print(f"\n  {name}:")
        print("  " + format_scores(results[name], test.class_names).replace("\n", "\n  "))
    if shipped is None:
        print("\n  (no shipped checkpoint found in minifcn/assets: only the fresh model is shown)")

    figure = draw_comparison(models, test, out_dir / "demo.png")
    print(f"\n[3/3] figure written to {figure.resolve()}")
    print(f"done in {time.perf_counter() - start:.0f} s; training run files in {(out_dir / 'demo-run').resolve()}")
    return results


def draw_comparison(models, dataset, path, count=4):
    """Input / ground truth / each model's prediction for ``count`` images, one row each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..data.palette import colorize

    samples = [dataset[i] for i in range(min(count, len(dataset)))]
    images = np.stack([s[0] for s in samples])
    predictions = {name: segment_batch(m, images) for name, m in models.items()}
    columns = ["input", "ground truth"] + list(models)
    fig, axes = plt.subplots(len(samples), len(columns), figsize=(2.2 * len(columns), 2.2 * len(samples)),
                             squeeze=False)
    for r, (image, label) in enumerate(samples):
        panels = [image, colorize(label)] + [colorize(predictions[n][r]) for n in models]
        for c, panel in enumerate(panels):
            axes[r, c].imshow(panel, interpolation="nearest")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(columns[c], fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path

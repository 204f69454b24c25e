"""Do skips help? FCN-32s, FCN-16s and FCN-8s trained alike on synthetic shapes, over seeds.

The paper's Figure 4 shows FCN-32s' coarse blobs sharpening as pool4 (FCN-16s) and pool3
(FCN-8s) feed finer detail into the prediction. This reruns that comparison with the presets
``skips-fcn32s``, ``skips-fcn16s`` and ``skips-fcn8s``: one width, one conv1_1 padding (81,
the smallest every variant allows), one budget of iterations (not minutes, so a busy machine
cannot favour one of them), each seed given to all three. Every run is scored on the same
held-out images by mean IU and by pixel accuracy near object boundaries (a trimap band,
where coarse predictions go wrong first); the seeds' scores are summarised as their mean and
their range (min to max: with a handful of seeds a standard deviation says no more).

Run: ``python -m minifcn.train.experiment --seeds 0,1,2 --out runs/skips``. A run already
finished in its folder (``OUT/seed<S>/<variant>``, same settings) is scored, not retrained,
so ``minifcn train --preset skips-fcn8s --seed 1 --out runs/skips/seed1/fcn8s`` and the
experiment share their runs. Seed 0 of each preset is the checkpoint shipped in
``minifcn/assets`` (:func:`load_shipped_skips`).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..data.synthetic import SyntheticShapes
from ..engine.memory import cpu_threads
from .config import TrainConfig, preset
from .demo import TEST_SEED, shipped_checkpoint
from .evaluate import evaluate, segment_batch
from .trainer import Trainer

VARIANTS = ("fcn32s", "fcn16s", "fcn8s")
PAD = 81  # FCN-32s' smallest in-bounds padding (FCN-16s needs 73, FCN-8s 69)
METRICS = ("mean_iu", "pixel_accuracy", "boundary_accuracy")


def title(variant):
    """How the paper writes a variant: ``"fcn16s"`` -> ``"FCN-16s"``."""
    return f"FCN-{variant[3:]}"


def boundary_band(label, width=3):
    """Pixels within ``width`` of a change of class (void pixels excluded), (H, W) bool."""
    change = np.zeros(label.shape, bool)
    change[:-1] |= label[:-1] != label[1:]
    change[1:] |= label[:-1] != label[1:]
    change[:, :-1] |= label[:, :-1] != label[:, 1:]
    change[:, 1:] |= label[:, :-1] != label[:, 1:]
    band = change.copy()
    for _ in range(width):  # grow the edge by one pixel per pass (4-neighbourhood)
        grown = band.copy()
        grown[1:] |= band[:-1]
        grown[:-1] |= band[1:]
        grown[:, 1:] |= band[:, :-1]
        grown[:, :-1] |= band[:, 1:]
        band = grown
    return band & (label != 255)


def boundary_accuracy(model, dataset, width=3):
    """Pixel accuracy over the trimap band of every image."""
    correct = total = 0
    for i in range(len(dataset)):
        image, label = dataset[i]
        pred = segment_batch(model, image[None])[0]
        band = boundary_band(label, width)
        correct += int((pred[band] == label[band]).sum())
        total += int(band.sum())
    return correct / max(total, 1)


def shipped_skips_path(variant):
    """Path of the shipped ``skips-<variant>`` checkpoint (``None`` if absent)."""
    return shipped_checkpoint(f"{variant}_skips.npz")


def load_shipped_skips(device="cpu"):
    """The three shipped checkpoints of the comparison, ``{"FCN-32s": model, ...}``.

    Raises
    ------
    FileNotFoundError
        Naming the missing file, when the package was installed without its assets.
    """
    from ..models.io import load_model

    models = {}
    for variant in VARIANTS:
        path = shipped_skips_path(variant)
        if path is None:
            raise FileNotFoundError(f"minifcn/assets/{variant}_skips.npz: not in this installation "
                                    f"(make it with: minifcn train --preset skips-{variant})")
        models[title(variant)] = load_model(path, device=device, ops="engine")
    return models


def train_or_reuse(config: TrainConfig, folder, progress=True, overwrite=False):
    """The trained model of ``config`` in ``folder``: the finished run there if its settings
    are ``config``'s (unless ``overwrite``), else a new run. Returns ``(model, summary)``."""
    from ..models.io import load_model

    folder = Path(folder)
    summary_path = folder / "summary.json"
    if not overwrite and summary_path.exists() and (folder / "model.npz").exists():
        summary = json.loads(summary_path.read_text())
        if summary.get("stopped_by") == "iterations" and summary.get("config") == config.to_dict():
            return load_model(folder / "model.npz", ops="engine"), summary
    trainer = Trainer(config, folder, progress=progress, overwrite=overwrite)
    return trainer.model, trainer.run()


def summarise(runs):
    """Mean and range over seeds of every metric.

    Parameters
    ----------
    runs : dict
        ``{variant: {seed: {metric: value, ...}}}``, the scores of each run.

    Returns
    -------
    dict
        ``{variant: {metric: {"mean": m, "min": lo, "max": hi, "seeds": n}}}`` for each of
        :data:`METRICS` (and ``seconds`` where the runs recorded it).
    """
    out = {}
    for variant, by_seed in runs.items():
        scores = list(by_seed.values())
        out[variant] = {}
        for metric in (*METRICS, "seconds"):
            values = [s[metric] for s in scores if metric in s]
            if values:
                out[variant][metric] = {"mean": float(np.mean(values)), "min": float(min(values)),
                                        "max": float(max(values)), "seeds": len(values)}
    return out


def table(summary):
    """The summary as a Markdown table: mean over seeds, range in brackets, in percent."""
    def cell(stat):
        return f"{100 * stat['mean']:.1f} ({100 * stat['min']:.1f}-{100 * stat['max']:.1f})"

    lines = ["| variant | seeds | mean IU % | pixel accuracy % | boundary accuracy % |",
             "|---|---|---|---|---|"]
    for variant, stats in summary.items():
        lines.append(f"| {title(variant)} | {stats['mean_iu']['seeds']} | "
                     + " | ".join(cell(stats[m]) for m in METRICS) + " |")
    return "\n".join(lines)


def run(seeds, out_dir, iterations=None, test_images=200, progress=True, overwrite=False):
    """Train (or reuse) and score every variant for every seed in ``out_dir/seed<S>/<variant>``.

    ``iterations`` replaces the presets' budget (for a quick look; the table uses theirs).
    ``overwrite`` retrains runs found in ``out_dir`` (else a folder holding a run of other
    settings is refused). Writes ``out_dir/results.json`` and returns ``(runs, summary)``
    as :func:`summarise` takes and gives them.
    """
    out_dir = Path(out_dir)
    test = SyntheticShapes(test_images, 96, seed=TEST_SEED)
    runs = {variant: {} for variant in VARIANTS}
    for seed in seeds:
        for variant in VARIANTS:
            config = preset(f"skips-{variant}").replace(seed=seed)
            if iterations:
                config = config.replace(iterations=iterations)
            with cpu_threads(1):  # a net this narrow runs fastest on one thread (as the demo)
                model, summary = train_or_reuse(config, out_dir / f"seed{seed}" / variant, progress,
                                                overwrite)
                scores = evaluate(model, test)
                band = boundary_accuracy(model, test)
            runs[variant][seed] = {"iterations": summary["iterations"], "seconds": summary["seconds"],
                                   "mean_iu": scores["mean_iu"],
                                   "pixel_accuracy": scores["pixel_accuracy"], "boundary_accuracy": band}
            print(variant, f"seed {seed}", json.dumps(runs[variant][seed]), flush=True)
    summary = summarise(runs)
    text = json.dumps({"test_images": test_images, "runs": runs, "summary": summary}, indent=2)
    (out_dir / "results.json").write_text(text + "\n")
    return runs, summary


def seed_list(text):
    """``"0,1,2"`` -> ``[0, 1, 2]`` (an argparse type)."""
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds >= 0 separated by commas, got {text!r}")
    return seeds


def main(argv=None):
    from ..cliargs import positive

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=seed_list, default=[0, 1, 2], help="seeds, e.g. 0,1,2 (default)")
    p.add_argument("--iterations", type=positive(int), help="training iterations per run (default: the presets')")
    p.add_argument("--out", default="runs/skips", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="retrain runs already in --out")
    p.add_argument("--images", type=positive(int), default=200, help="held-out test images")
    args = p.parse_args(argv)
    _, summary = run(args.seeds, args.out, args.iterations, test_images=args.images,
                     overwrite=args.overwrite)
    print("\nmean over seeds (min-max):\n" + table(summary))


if __name__ == "__main__":
    main()

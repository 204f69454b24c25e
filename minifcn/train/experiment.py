"""Do skips help? FCN-32s, FCN-16s and FCN-8s trained alike on synthetic shapes.

The paper's Figure 4 shows FCN-32s' coarse blobs sharpening as pool4 (FCN-16s) and pool3
(FCN-8s) feed finer detail into the prediction. This reruns that comparison: the three
variants at one width, one conv1_1 padding (81, the smallest every variant allows), one
budget of iterations (not minutes, so a busy machine cannot favour one of them), one seed,
scored by mean IU and by pixel accuracy near object boundaries (a trimap band, where coarse
predictions go wrong first).

Run: ``python -m minifcn.train.experiment --iterations 2000 --out runs/skips``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..cliargs import positive
from ..data.synthetic import SyntheticShapes
from .config import preset
from .demo import TEST_SEED
from .evaluate import evaluate, segment_batch
from .trainer import Trainer

VARIANTS = ("fcn32s", "fcn16s", "fcn8s")
PAD = 81  # FCN-32s' smallest in-bounds padding (FCN-16s needs 73, FCN-8s 69)


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


def run(iterations, out_dir, width=1 / 16, test_images=200, progress=True, overwrite=False):
    """Train and score each variant in ``out_dir/<variant>``; ``overwrite`` replaces the runs of
    an earlier experiment there (else they are refused). Returns the scores by variant."""
    out_dir = Path(out_dir)
    test = SyntheticShapes(test_images, 96, seed=TEST_SEED)
    results = {}
    for variant in VARIANTS:
        config = preset("demo").replace(variant=variant, width=width, pad=PAD, minutes=0.0,
                                        iterations=iterations)
        trainer = Trainer(config, out_dir / variant, progress=progress, overwrite=overwrite)
        summary = trainer.run()
        scores = evaluate(trainer.model, test)
        results[variant] = {"iterations": summary["iterations"], "seconds": summary["seconds"],
                            "mean_iu": scores["mean_iu"], "pixel_accuracy": scores["pixel_accuracy"],
                            "boundary_accuracy": boundary_accuracy(trainer.model, test)}
        print(variant, json.dumps(results[variant]))
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=positive(int), default=2000, help="training iterations per variant")
    p.add_argument("--out", default="runs/skips", help="output folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the runs of an earlier experiment in --out")
    p.add_argument("--images", type=positive(int), default=200, help="held-out test images")
    args = p.parse_args(argv)
    results = run(args.iterations, args.out, test_images=args.images, overwrite=args.overwrite)
    print(f"\n{'variant':<8}{'iterations':>11}{'mean IU':>9}{'pixel acc.':>11}{'boundary acc.':>14}")
    for v, r in results.items():
        print(f"{v:<8}{r['iterations']:>11}{r['mean_iu']:>9.3f}{r['pixel_accuracy']:>11.3f}"
              f"{r['boundary_accuracy']:>14.3f}")


if __name__ == "__main__":
    main()

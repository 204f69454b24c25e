"""Subcommands ``demo``, ``train``, ``evaluate`` and ``predict``.

Every number is range-checked by its argparse type (:mod:`minifcn.cliargs`), the training
settings' by the same types that :class:`~minifcn.train.config.TrainConfig` checks, so a bad
value is a usage error naming the option before anything runs. Errors are not caught here:
:func:`minifcn.cli.main` prints them, one line each.
"""
from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path

from ..cliargs import number, positive
from ..errors import UsageError
from .config import CHOICES, MAX_MINUTES, PRESETS, RANGES, preset

# TrainConfig fields settable from the command line, with their help
OVERRIDES = {
    "variant": "fcn32s, fcn16s, fcn8s or fcn8s-atonce",
    "width": "channel multiplier: 1 is VGG16, 0.0625 a CPU-sized net",
    "pad": "conv1_1 padding (100 in the reference; 69 is the least FCN-8s allows)",
    "dropout": "drop probability after fc6 and fc7, in [0, 1)",
    "data": "synthetic, voc:ROOT, sbd:ROOT, pet:ROOT or folders:IMAGES,LABELS",
    "image_size": "synthetic image side / dataset crop side (0: whole images, batch 1)",
    "batch_size": "images per update",
    "processes": "CPU processes that share each batch (at most the batch size)",
    "optimizer": "sgd (momentum SGD, as the reference) or adam (AdamW)",
    "lr": "base learning rate",
    "momentum": "SGD momentum, or Adam's beta1, in [0, 1)",
    "weight_decay": "L2 weight decay (weights only, not biases)",
    "schedule": "fixed, step or poly",
    "warmup": "iterations of linear learning-rate warm-up",
    "step_size": "iterations per step of the step schedule",
    "gamma": "factor of each step of the step schedule, in (0, 1]",
    "reduction": "mean (per valid pixel) or sum (the reference's loss)",
    "iterations": "stop after this many updates",
    "schedule_iterations": "horizon of the poly schedule (0: --iterations)",
    "cooldown": "last fraction of the run (time or iterations) over which the rate falls to 0",
    "minutes": "stop after this much training time (0: no limit)",
    "val_every": "validate every N iterations (0: never)",
    "val_images": "held-out synthetic images to validate on",
    "checkpoint_every": "checkpoint every N iterations (0: only at the end)",
    "seed": "seed of data order, augmentation, dropout and initialisation",
    "init": "scratch, or a weight file (converted VGG16, or an FCN to stage from)",
    "score_init_std": "std of the scorers' random start (0: zeros, as the reference)",
}


def _cmd_demo(args):
    from .demo import run_demo

    run_demo(args.minutes, args.out, args.device, quick=args.quick)
    return 0


def add_demo_parser(sub):
    p = sub.add_parser(
        "demo", help="train a narrow FCN-8s for a few minutes, compare it with the shipped one",
        description="The main job, on a CPU with nothing to download: (1) train a narrow FCN-8s "
                    "from scratch on synthetic shapes, (2) evaluate it and the checkpoint shipped "
                    "in the package with pixel accuracy, mean accuracy, mean IU and frequency-"
                    "weighted IU, (3) write a figure comparing their predictions.")
    p.add_argument("--minutes", type=number(float, low=0, high=MAX_MINUTES, low_open=True),
                   default=4.0, help="training time (default 4)")
    p.add_argument("--out", default="minifcn-output",
                   help="output folder (default ./minifcn-output; an earlier demo's files there are replaced)")
    p.add_argument("--quick", action="store_true", help="a few seconds instead of minutes (for tests)")
    p.set_defaults(func=_cmd_demo)


def _cmd_train(args):
    from .processes import usable_processes
    from .runfolder import refuse_if_taken
    from .trainer import Trainer

    changes = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    if args.learn_upsampling:
        changes["learn_upsampling"] = True
    if args.bias_lr_x2:
        changes["bias_lr_x2"] = True
    out = Path(args.out or f"runs/{args.preset}")
    if args.resume:
        trainer = Trainer.resume(out, args.device, progress=not args.quiet, **changes)
        print(f"resuming {out} at iteration {trainer.iteration}")
    else:
        base = preset(args.preset)
        if "processes" not in changes:  # the preset's value, as far as the machine and batch allow
            batch = base.replace(**changes, processes=1).images_per_batch
            changes["processes"] = usable_processes(base.processes, args.device, batch)
        config = base.replace(**changes)
        if not args.overwrite:
            refuse_if_taken(out)  # before data and weights are loaded; run() checks again
        trainer = Trainer(config, out, args.device, progress=not args.quiet, overwrite=args.overwrite)
    summary = trainer.run()
    val = summary.get("validation") or {}
    print(f"{summary['stopped_by']}: {summary['iterations']} iterations, {summary['seconds']:.0f} s"
          + (f", validation mean IU {val['mean_iu']:.3f}" if val else ""))
    print(f"model: {out / 'model.npz'}   log: {out / 'log.csv'}   curves: {out / 'curves.png'}")
    if summary["stopped_by"] != "interrupted":
        return 0
    signum = signal.Signals[summary["signal"]]
    print(f"minifcn train: stopped by {summary['signal']} after iteration {summary['iterations']}; "
          f"checkpoint saved to {out / 'checkpoint.npz'}; continue with: "
          f"minifcn train --out {shlex.quote(str(out))} --resume", file=sys.stderr)
    return 128 + signum  # the shell's status for a process a signal stopped: 130, 143


def add_train_parser(sub):
    presets = ", ".join(sorted(PRESETS))
    p = sub.add_parser(
        "train", help="train an FCN (synthetic shapes or a dataset)",
        description=f"Train from a named preset ({presets}), changing any setting with the "
                    "options below. Writes checkpoint.npz, model.npz, log.csv, summary.json and "
                    "curves.png into --out, which must not hold another run (see --resume, "
                    "--overwrite). Ctrl-C or SIGTERM saves a checkpoint and stops; --resume "
                    "continues bit-for-bit. A diverging run stops before it saves ruined "
                    "weights and names the checkpoint to resume at a lower --lr.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", default="demo", choices=sorted(PRESETS), help="starting recipe")
    p.add_argument("--out", help="run folder (default runs/PRESET)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in --out (options given change its settings, e.g. --lr)")
    again.add_argument("--overwrite", action="store_true",
                       help="remove the files of a run already in --out and start a new one")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--learn-upsampling", action="store_true", help="train the upscore layers")
    p.add_argument("--bias-lr-x2", action="store_true", help="biases learn twice as fast")
    defaults = preset("demo")  # the default preset, whose values the help shows
    for name, text in OVERRIDES.items():
        kind = RANGES.get(name, str)
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None, choices=CHOICES.get(name),
                       help=f"{text} (preset's value; default preset: {getattr(defaults, name)})")
    p.set_defaults(func=_cmd_train)


def _load_weights(path, device):
    from ..models.io import load_model
    from .demo import shipped_checkpoint

    if path is None:
        path = shipped_checkpoint()
        if path is None:
            raise UsageError("--weights: none given, and no shipped checkpoint in minifcn/assets "
                             "to use instead")
        print(f"using the shipped synthetic-shapes checkpoint {path.name}")
    return load_model(path, device=device, ops="engine")  # the command runs the engine


def _cmd_evaluate(args):
    from ..data.synthetic import SyntheticShapes
    from ..metrics import format_scores
    from .demo import TEST_SEED
    from .evaluate import evaluate
    from .sources import open_dataset

    model = _load_weights(args.weights, args.device)
    if args.data == "synthetic":
        data = SyntheticShapes(args.images, args.image_size, seed=TEST_SEED)
    else:
        data = open_dataset(args.data)[1]
    if data.num_classes != model.num_classes:
        raise UsageError(f"--data {args.data} has {data.num_classes} classes but the model "
                         f"{args.weights or 'shipped'} predicts {model.num_classes}")
    scores = evaluate(model, data)
    print(f"{len(data)} images, {model.describe_short()}")
    print(format_scores(scores, data.class_names))
    return 0


def add_evaluate_parser(sub):
    p = sub.add_parser(
        "evaluate", help="score a model: pixel acc., mean acc., mean IU, f.w. IU, per-class IU",
        description="Accumulate one confusion matrix over the validation images (void label 255 "
                    "ignored) and print the paper's four metrics and the per-class IU. A class "
                    "absent from both ground truth and prediction has no IU (n/a).")
    p.add_argument("--weights", help="model file (.npz; default: the shipped checkpoint)")
    p.add_argument("--data", default="synthetic", help="synthetic, voc:ROOT, sbd:ROOT, pet:ROOT, folders:I,L")
    p.add_argument("--images", type=positive(int), default=200, help="synthetic images (default 200)")
    p.add_argument("--image-size", type=positive(int), default=96, help="synthetic image side (default 96)")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_predict(args):
    from .predict import predict_files

    model = _load_weights(args.weights, args.device)
    for image, mask, over, classes in predict_files(model, args.images, args.out):
        print(f"{image}: classes {classes} -> {mask}, {over}")
    return 0


def add_predict_parser(sub):
    p = sub.add_parser(
        "predict", help="segment image files: colour mask and overlay PNGs",
        description="Segment each image (any size; RGB, RGBA, grayscale or palette) and write "
                    "NAME_mask.png (class indices with the VOC palette) and NAME_overlay.png, "
                    "NAME being the image's file name without its extension. Inputs that share "
                    "a NAME (a/cat.png b/cat.png, or cat.png cat.jpg) are told apart in the "
                    "order given: the first keeps NAME, the next get NAME-2, NAME-3, ... "
                    "(skipping names of other inputs). Files of these names already in --out "
                    "are replaced; an output that would replace one of the inputs is refused.")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--weights", help="model file (.npz; default: the shipped checkpoint)")
    p.add_argument("--out", default="minifcn-output/predictions", help="output folder")
    p.set_defaults(func=_cmd_predict)

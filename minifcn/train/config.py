"""Training settings, and the named presets that the commands and the shipped model use.

A preset is a complete, seeded recipe: ``minifcn train --preset shipped`` re-creates the
checkpoint that ships inside the package, and ``minifcn demo`` trains with ``demo``.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

from ..cliargs import non_negative, number, positive
from ..errors import UsageError
from ..models.coords import least_pad
from ..models.spec import MAX_PAD, MAX_WIDTH, REFERENCE_PAD, VARIANTS
from .optim import OPTIMIZERS, SCHEDULES

REDUCTIONS = ("mean", "sum")
PROBABILITY = number(float, low=0, high=1, high_open=True)  # 1 would drop or keep everything
# A time budget is counted in whole seconds; past about two years it is no budget at all
# (0 is "no limit"), and 1e308 minutes would overflow that count.
MAX_MINUTES = 1e6

# The allowed values of every numeric setting, as the argparse types of the command line's
# options; TrainConfig checks values set from Python with the same types, so the two refuse
# the same values.
RANGES = {
    # The bounds a model file must meet to be loaded again (minifcn.models.io).
    "width": number(float, low=0, high=MAX_WIDTH, low_open=True),
    "pad": number(int, low=0, high=MAX_PAD),
    "dropout": PROBABILITY,
    "image_size": non_negative(int),
    "batch_size": positive(int),
    "processes": positive(int),
    "lr": positive(float),
    "momentum": PROBABILITY,
    "weight_decay": non_negative(float),
    "warmup": non_negative(int),
    "step_size": non_negative(int),
    "gamma": number(float, low=0, high=1, low_open=True),  # above 1 the rate would grow
    "iterations": positive(int),
    "schedule_iterations": non_negative(int),
    "cooldown": number(float, low=0, high=1),  # a fraction of the run
    "minutes": number(float, low=0, high=MAX_MINUTES),
    "val_every": non_negative(int),
    "val_images": positive(int),
    "checkpoint_every": non_negative(int),
    "seed": non_negative(int),  # numpy's seed sequences take no negative entropy
    "score_init_std": non_negative(float),
}
CHOICES = {"variant": VARIANTS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES,
           "reduction": REDUCTIONS}


def check_value(name, value, kind):
    """``value`` if the argparse type ``kind`` accepts its text, else a UsageError naming ``name``.

    The command line's types parse text; a value from Python is judged by the text it prints
    as, so ``5.5`` is no integer and ``True`` no number.
    """
    try:
        kind(str(value))
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{name}: {exc}") from None
    return value


def _setting(name):
    """How an error names a setting: for Python and for the command line."""
    return f"setting {name} (--{name.replace('_', '-')})"


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved in every checkpoint).

    Attributes (selection)
    ----------------------
    variant : {"fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce"}
    width : float
        Channel multiplier (1.0 = VGG16).
    pad : int
        conv1_1 padding. 100 in the reference; 69 is the smallest that keeps every FCN-8s
        crop in bounds (81 for FCN-32s) and makes the first maps far smaller at small inputs.
    data : str
        ``"synthetic"`` (fresh generated batches), ``"voc:ROOT"``, ``"sbd:ROOT"``,
        ``"pet:ROOT"`` or ``"folders:IMAGES,LABELS"``.
    image_size : int
        Synthetic image side, or the crop side for datasets (0: whole images, batch 1).
    processes : int
        CPU processes that share every batch, each computing the forward and backward of
        its share of the images at the same time (:mod:`minifcn.train.processes`); at most
        the batch size, and 1 on a GPU.
    optimizer : {"sgd", "adam"}
        Momentum SGD, as the reference trains; or Adam (with decoupled weight decay), whose
        per-weight step sizes suit a net trained from scratch (the ``demo`` preset).
    reduction : {"mean", "sum"}
        Per-pixel mean loss, or the reference's sum (with its tiny learning rates).
    iterations, minutes : int, float
        Stop after this many updates, or this much wall time, whichever comes first.
    schedule_iterations : int
        Length of the ``poly`` schedule's horizon (0: ``iterations``). Setting it apart from
        ``iterations`` stops a run part-way along a longer schedule, reproducibly.
    cooldown : float
        Fraction of the run at its end over which the rate falls linearly to zero, on top of
        the schedule (0: none). The run's length is its time budget when ``minutes`` is set
        (then progress is measured in seconds), else ``iterations``. A fixed rate leaves the
        weights jumping around a minimum; a short cool-down lets them settle before the
        final evaluation.
    init : str
        ``"scratch"``, or a weight file (converted VGG16 or a saved FCN) copied in by name.
    score_init_std : float
        0 starts the scorers at zero, as the reference does when fine-tuning VGG16. From
        scratch, zero scorers pass no gradient into the random trunk until they have grown;
        a small random start (0.05) leaves the all-background plateau sooner.

    Raises
    ------
    UsageError
        When a setting is outside its range (:data:`RANGES`, :data:`CHOICES`), or the
        settings disagree (a padding too small for the variant, the step schedule without a
        step size, synthetic images of side 0), naming the setting and its option.
    """

    variant: str = "fcn8s"
    width: float = 1 / 16
    pad: int = REFERENCE_PAD
    dropout: float = 0.5
    learn_upsampling: bool = False
    data: str = "synthetic"
    image_size: int = 96
    batch_size: int = 4
    processes: int = 1
    optimizer: str = "sgd"
    lr: float = 2e-2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    bias_lr_x2: bool = False
    schedule: str = "fixed"
    warmup: int = 50
    step_size: int = 0
    gamma: float = 0.1
    reduction: str = "mean"
    iterations: int = 1000
    schedule_iterations: int = 0
    cooldown: float = 0.0
    minutes: float = 0.0
    val_every: int = 500
    val_images: int = 200
    checkpoint_every: int = 500
    seed: int = 0
    init: str = "scratch"
    score_init_std: float = 0.0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        """Refuse a setting out of its range, naming it (``replace`` and ``from_dict`` too)."""
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise UsageError(f"{_setting(name)}: {getattr(self, name)!r} is not one of "
                                 f"{', '.join(choices)}")
        for name, kind in RANGES.items():
            check_value(_setting(name), getattr(self, name), kind)
        if self.pad < least_pad(self.variant):
            raise UsageError(f"{_setting('pad')}: {self.pad} is too small for {self.variant}: its "
                             f"last crop needs a conv1_1 padding of at least "
                             f"{least_pad(self.variant)} ({REFERENCE_PAD} in the reference)")
        if self.schedule == "step" and not self.step_size:
            raise UsageError(f"{_setting('step_size')}: the step schedule needs step_size >= 1")
        batch = self.images_per_batch
        if self.processes > batch:
            raise UsageError(f"{_setting('processes')}: {self.processes} processes cannot share a "
                             f"batch of {batch} image{'s' if batch > 1 else ''}"
                             + ("" if self.image_size else " (whole images: set image_size to crop)"))
        if self.data == "synthetic" and not self.image_size:
            raise UsageError(f"{_setting('image_size')}: synthetic images need a side >= 1 "
                             f"(0, whole images, is for datasets)")

    @property
    def images_per_batch(self):
        """``batch_size``, or 1 for whole dataset images (``image_size`` 0), one at a time."""
        return self.batch_size if self.image_size else 1

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**d)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


# The validation images of every synthetic run come from this seed, never used for training
# batches (image n of batch i is drawn from (seed, i, n)), so "held-out" means held out.
SYNTHETIC_VAL_SEED = 10_000


def _skips_preset(variant):
    """The recipe of the skip comparison, for one variant.

    One conv1_1 padding every variant allows (81, FCN-32s' least), so the three nets differ
    in their skips alone; one budget of iterations (not minutes, so a busy machine cannot
    favour one of them); the ``shipped`` optimiser (poly decay to zero at the last iteration).
    The budget, 3,000 iterations, was set by the clock: about 0.09 s per iteration on one
    core, so the nine runs of the table (three variants, three seeds) take about 45 minutes
    of one core, validation included.
    """
    return TrainConfig(variant=variant, width=1 / 16, pad=81, dropout=0.0, image_size=96,
                       batch_size=4, lr=5e-2, warmup=50, schedule="poly", iterations=3000,
                       val_every=500, checkpoint_every=1000, val_images=100, score_init_std=0.05)


PRESETS = {
    # minifcn demo: a narrow FCN-8s from scratch, a few minutes on 2 CPU cores, two processes
    # sharing each batch (6,300-7,700 iterations in the 4 minutes, 3,700-4,100 in one). Adam:
    # at a fixed 3,600 iterations held-out mean IU 80.0, 81.7 and 75.5 (seeds 0-2) against
    # momentum SGD's 74.2 at lr 0.05 (docs/training.md, The demo's optimiser)
    "demo": TrainConfig(variant="fcn8s", width=1 / 16, pad=69, dropout=0.0, image_size=96,
                        batch_size=4, processes=2, optimizer="adam", lr=3e-3, warmup=50,
                        schedule="fixed", cooldown=0.25, iterations=100_000, minutes=4.0, val_every=0,
                        checkpoint_every=0, val_images=100, score_init_std=0.05),
    # the checkpoint shipped in minifcn/assets/: same net, a longer budget, poly decay
    "shipped": TrainConfig(variant="fcn8s", width=1 / 16, pad=69, dropout=0.0, image_size=96,
                           batch_size=4, lr=5e-2, warmup=50, schedule="poly", iterations=36_000,
                           val_every=2000, checkpoint_every=1000, val_images=200, score_init_std=0.05),
    # the three checkpoints of "do skips help?" (minifcn/assets/fcn{32,16,8}s_skips.md): one
    # narrow net trained alike, differing only in the variant (_skips_preset)
    **{f"skips-{variant}": _skips_preset(variant) for variant in ("fcn32s", "fcn16s", "fcn8s")},
    # seconds, for tests
    "quick": TrainConfig(variant="fcn8s", width=1 / 32, pad=69, dropout=0.0, image_size=64,
                         batch_size=2, lr=2e-2, warmup=5, iterations=20, val_every=10,
                         checkpoint_every=10, val_images=8),
}


def preset(name):
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: expected one of {sorted(PRESETS)}")
    return PRESETS[name].replace()

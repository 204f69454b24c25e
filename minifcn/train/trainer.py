"""The training loop: forward, loss, backward, optimiser step; logs, validation, checkpoints.

Reproducible to the bit: batch ``i`` and the dropout masks of iteration ``i`` depend only on
``(seed, i)`` (and on which share of the batch a process takes, when ``processes`` share it:
:mod:`minifcn.train.processes`), and a checkpoint holds the parameters, the momentum buffers
and ``i``, so a run resumed from a checkpoint continues exactly as if it had never stopped.

Safe to stop: checkpoints are written atomically; Ctrl-C or SIGTERM (what ``kill``, a batch
scheduler or a container stop sends) finishes the current iteration, saves and exits. A new
run refuses a folder that holds another run unless told to replace it.

Safe to diverge: every iteration's loss and gradient norm pass a divergence guard
(:mod:`minifcn.train.guard`) before the weights are updated; a checkpoint is written only
after the next iteration has shown that its weights still give a sane loss and gradient. A
diverging run stops with a message that names that checkpoint and the command that resumes
it at a lower learning rate.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import time
import warnings
from pathlib import Path

import numpy as np

from ..backend import to_host
from ..errors import FileFormatError, UsageError, WorkerFailed
from ..models import MODELS
from ..models.io import checked_preprocessing
from ..models.state_dict import checked_values
from ..npzio import atomic_write, load_npz, save_npz
from ..ops import softmax_cross_entropy_backward
from ..preprocess import Preprocessing, scratch_preprocessing
from . import runfolder
from .config import TrainConfig
from .evaluate import evaluate
from .guard import DivergenceGuard, TrainingDiverged
from .optim import cooldown_factor, learning_rate, make_optimizer
from .processes import ProcessGroup, pixel_counts, scored_batch, usable_processes
from .sources import make_source

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def network_for_config(config, num_classes):
    """The network ``config`` describes, freshly initialised from its seed, on the CPU."""
    return MODELS[config.variant](num_classes, config.width, pad=config.pad, dropout=config.dropout,
                                  learn_upsampling=config.learn_upsampling, seed=config.seed,
                                  ops="engine")  # training runs the engine


def model_for_config(config, num_classes, device="cpu"):
    """The network of ``config``, initialised from scratch or from ``config.init``."""
    model = network_for_config(config, num_classes)
    model.preprocessing = scratch_preprocessing()
    if config.score_init_std:
        rng = np.random.default_rng([config.seed, 1])
        scorers = {k: p.shape for k, p in model.named_parameters()
                   if k.startswith("score_") and k.endswith(".weight")}
        model.load_state_dict({k: (rng.standard_normal(shape) * config.score_init_std).astype(model.dtype)
                               for k, shape in scorers.items()}, strict=False)
    if config.init != "scratch":
        arrays, meta = load_npz(config.init)
        # the same checks as load_model: finite real weights, a sane input convention
        arrays = checked_values(arrays, config.init, dtype=model.dtype)
        preprocessing = checked_preprocessing(meta.get("preprocessing"), config.init)
        copied = model.copy_params(arrays)
        if not copied:
            raise ValueError(f"{config.init}: no parameter matches {model.describe_short()} by name and shape")
        if preprocessing is not None:
            model.preprocessing = preprocessing
    return model.to(device)


class Trainer:
    """One training run writing into ``out_dir``.

    Files: ``checkpoint.npz`` (latest state, for ``--resume``), ``model.npz`` (the trained
    model alone, for ``evaluate``/``predict``), ``log.csv`` (one row per iteration),
    ``summary.json`` and ``curves.png``.

    Parameters
    ----------
    config : TrainConfig
    out_dir : str or Path
        The run folder. :meth:`run` refuses one that holds another run (any of those files)
        unless ``overwrite``; :meth:`resume` continues the run that is there.
    device : {"cpu", "gpu"}
    progress : bool
        Show a progress bar.
    overwrite : bool
        Remove the files of a run already in ``out_dir`` when :meth:`run` starts.

    Notes
    -----
    With ``config.processes > 1`` the first :meth:`step` starts the worker processes that
    share each batch, and this process keeps its share of the cores' threads while they run;
    :meth:`run` stops them when it ends, and :meth:`close` does so for a caller that steps by
    hand.
    """

    def __init__(self, config: TrainConfig, out_dir, device="cpu", progress=True, overwrite=False):
        self.config, self.out_dir, self.device = config, Path(out_dir), device
        self.progress, self.overwrite = progress, overwrite
        if config.processes > 1 and device != "cpu":
            raise UsageError(f"setting processes (--processes): {config.processes} CPU processes "
                             f"cannot share a batch on the {device}; use 1")
        if config.processes > 1 and os.name != "posix":
            raise UsageError(f"setting processes (--processes): {config.processes} processes "
                             f"share a batch on Linux and macOS only; use 1 here")
        self.source = make_source(config)
        self.model = model_for_config(config, self.source.num_classes, device).train()
        self.optimizer = make_optimizer(config, self.model.named_parameters())
        self.workers = None  # the ProcessGroup of config.processes > 1, started by the first step
        self.guard = DivergenceGuard()
        self.iteration, self.elapsed, self.last_val = 0, 0.0, None
        self.saved_iteration = None  # iteration of the checkpoint in out_dir, once there is one
        self.stop_signal = None  # the name of the signal that asked to stop
        self._owns_folder = False  # True once run() has claimed out_dir, or after resume()
        self._checkpoint_due = False

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self):
        return self.out_dir / "checkpoint.npz"

    def save_checkpoint(self):
        arrays = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        arrays.update(self.optimizer.state_dict())
        meta = {"minifcn_checkpoint": 1, "iteration": self.iteration, "elapsed": self.elapsed,
                "config": self.config.to_dict(), "model": _jsonable(self.model.metadata()),
                "guard": self.guard.state_dict()}
        save_npz(self.checkpoint_path, arrays, meta)
        self.saved_iteration, self._checkpoint_due = self.iteration, False

    @classmethod
    def resume(cls, out_dir, device="cpu", progress=True, **overrides):
        """Continue the run in ``out_dir`` from its checkpoint (``overrides``: e.g. more
        ``iterations``, or a lower ``lr`` after a divergence)."""
        path = Path(out_dir) / "checkpoint.npz"
        if not path.exists():
            raise UsageError(f"--resume: {out_dir} holds no checkpoint.npz to continue (a run "
                             f"saves one every --checkpoint-every iterations and when it stops)")
        arrays, meta = load_npz(path)
        if "minifcn_checkpoint" not in meta:
            raise FileFormatError(f"{path}: not a training checkpoint (no minifcn_checkpoint record)")
        try:
            config = TrainConfig.from_dict(meta["config"])
            iteration, elapsed = int(meta["iteration"]), float(meta["elapsed"])
            if "processes" not in overrides:  # the run's own, as far as this machine allows
                overrides["processes"] = usable_processes(config.processes, device)
        except (KeyError, TypeError, ValueError) as exc:
            raise FileFormatError(f"{path}: unusable training state ({type(exc).__name__}: {exc})") from None
        trainer = cls(config.replace(**overrides), out_dir, device, progress)
        trainer._owns_folder = True  # the run in out_dir is the one continued
        trainer.model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
        trainer.optimizer.load_state_dict({k: v for k, v in arrays.items() if not k.startswith("model.")},
                                          trainer.model.xp)
        trainer.guard.load_state_dict(meta.get("guard", {}))
        trainer.iteration, trainer.elapsed = iteration, elapsed
        trainer.saved_iteration = iteration
        runfolder.truncate_log(trainer.out_dir / "log.csv", trainer.iteration)
        return trainer

    # ------------------------------------------------------------------ one step
    def step(self):
        """One update on batch ``self.iteration``. Returns ``(loss, pixel accuracy, lr)``.

        The loss and then the gradient norm pass the divergence guard before anything is
        saved or updated (:class:`TrainingDiverged` otherwise). A checkpoint that
        :meth:`run` made due after the previous update is written here, between the checks
        and the update: its weights have just given a sane loss and gradient.
        """
        cfg, model = self.config, self.model
        if cfg.processes > 1:
            loss, valid, correct = self._split_pass()
            self._check("loss", loss)
        else:
            scores, labels, loss, cache = self._forward()
            self._check("loss", loss)
            model.backward(softmax_cross_entropy_backward(1.0, cache), input_grad=False)
            valid, correct = pixel_counts(scores, labels)
        grad_norm = self.optimizer.grad_norm()
        self._check("gradient norm", grad_norm)
        if self._checkpoint_due:
            self.save_checkpoint()
        lr = learning_rate(cfg.lr, self.iteration, cfg.schedule, cfg.schedule_iterations or cfg.iterations,
                           cfg.step_size, cfg.gamma, warmup=cfg.warmup)
        progress = self.elapsed / (cfg.minutes * 60) if cfg.minutes else self.iteration / cfg.iterations
        lr *= cooldown_factor(progress, cfg.cooldown)  # 1 unless a cool-down is set
        self.optimizer.step(lr)
        self.guard.record(loss, grad_norm)
        return loss, correct / max(valid, 1), lr

    def _split_pass(self):
        """Forward and backward of batch ``self.iteration`` shared among ``config.processes``
        processes (:mod:`minifcn.train.processes`): ``(loss, valid pixels, right pixels)``."""
        if self.workers is None:
            self.workers = ProcessGroup(self.model, self.source, self.config, self.optimizer.params,
                                        threads=_blas_threads())
        try:
            return self.workers.step(self.iteration)
        except BaseException:  # the workers' answers are out of step now: start afresh next time
            self.close()
            raise

    def close(self):
        """Stop the worker processes of ``config.processes > 1`` (a next step starts them again)."""
        if self.workers is not None:
            self.workers.close()
            self.workers = None

    def _forward(self):
        """Scores and loss of batch ``self.iteration``: ``(scores, labels, loss, loss cache)``."""
        cfg = self.config
        return scored_batch(self.model, self.source, self.iteration, None, (cfg.seed, self.iteration),
                            cfg.reduction)

    def _check(self, quantity, value):
        reason = self.guard.check(quantity, value)
        if reason is not None:
            saved = None if self.saved_iteration is None else (self.checkpoint_path, self.saved_iteration)
            raise TrainingDiverged.at(self.iteration + 1, reason, self.config, self.out_dir, saved)

    # ------------------------------------------------------------------ the loop
    def run(self):
        """Train until ``iterations`` or ``minutes`` run out, or Ctrl-C / SIGTERM. Returns a summary.

        Raises
        ------
        UsageError
            If ``out_dir`` holds another run and this trainer neither resumed it nor was told
            to ``overwrite`` it.
        TrainingDiverged
            If the loss or the gradient norm diverges; nothing is saved after the last
            checkpoint that was followed by a sane iteration.
        """
        from tqdm import tqdm

        cfg = self.config
        if not self._owns_folder:
            runfolder.claim(self.out_dir, self.overwrite)
            self._owns_folder = True
        runfolder.remove_stale_temporaries(self.out_dir)  # of a run killed while it wrote
        self.stop_signal = None
        budget = cfg.minutes * 60 if cfg.minutes else None
        bar = tqdm(total=int(budget) if budget else cfg.iterations, initial=0 if budget else self.iteration,
                   unit="s" if budget else "it", disable=not self.progress, dynamic_ncols=True,
                   desc=f"{cfg.variant} width {cfg.width:g}")
        previous = {sig: signal.signal(sig, self._request_stop) for sig in STOP_SIGNALS}
        log = runfolder.CsvLog(self.out_dir / "log.csv")
        smooth_loss = smooth_acc = None
        reason, first = "iterations", self.iteration
        try:
            # overflow to inf or NaN is the divergence guard's to report in one line, not
            # NumPy's warnings (a filter, not np.errstate: the engine's threads warn too)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                while self.iteration < cfg.iterations:
                    if budget is not None and self.elapsed >= budget:
                        reason = "time budget"
                        break
                    if self.stop_signal:
                        reason = "interrupted"
                        break
                    start = time.perf_counter()
                    try:
                        loss, acc, lr = self.step()
                    except WorkerFailed as exc:  # this step never updated: keep the run so far
                        raise self._saved_after(exc) from exc
                    self.iteration += 1
                    self.elapsed += time.perf_counter() - start
                    smooth_loss = loss if smooth_loss is None else 0.95 * smooth_loss + 0.05 * loss
                    smooth_acc = acc if smooth_acc is None else 0.95 * smooth_acc + 0.05 * acc
                    row = {"iteration": self.iteration, "loss": f"{loss:.6g}", "pixel_accuracy": f"{acc:.6g}",
                           "lr": f"{lr:.6g}", "seconds": f"{self.elapsed:.3f}"}
                    if cfg.val_every and self.iteration % cfg.val_every == 0:
                        row.update(self.validate())
                        bar.write(f"iteration {self.iteration}: validation mean IU {self.last_val['mean_iu']:.3f}, "
                                  f"pixel accuracy {self.last_val['pixel_accuracy']:.3f}")
                    log.writerow(row)
                    if cfg.checkpoint_every and self.iteration % cfg.checkpoint_every == 0:
                        self._checkpoint_due = True  # written by the next step, once it has passed the guard
                    bar.set_postfix(loss=f"{smooth_loss:.3f}", acc=f"{smooth_acc:.3f}", refresh=False)
                    # whole seconds of a time budget, or one iteration; tqdm redraws at most 10x a second
                    step = min(int(self.elapsed), int(budget)) - bar.n if budget else 1
                    if step:
                        bar.update(step)
                if self.iteration > first:
                    self._check_last_update()
        finally:
            for sig, handler in previous.items():  # None: a handler not set from Python
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)
            bar.close()
            log.close()
            self.close()
        self.save_checkpoint()
        return self.finish(reason)

    def _saved_after(self, failure):
        """Save the run up to the last update (vouched for by one forward), and say so in a
        copy of ``failure``: a worker process that died or failed costs one step, not the run."""
        self.close()
        if self.iteration > 0:
            self._check_last_update()
            self.save_checkpoint()
            return WorkerFailed(f"{failure}\nThe run up to iteration {self.iteration} is saved in "
                                f"{self.checkpoint_path}; continue with: minifcn train --out "
                                f"{shlex.quote(str(self.out_dir))} --resume")
        return failure

    def _check_last_update(self):
        """The final weights have had no step after them to vouch for them: one forward of the
        next batch (no caches kept) does, before they are saved."""
        with self.model.inference():
            loss = self._forward()[2]
        self._check("loss", loss)

    def _request_stop(self, signum, frame):
        # finish the current iteration first: parameters and momentum stay consistent
        self.stop_signal = signal.Signals(signum).name

    def validate(self):
        scores = evaluate(self.model, self.source.validation)
        self.model.train()
        self.last_val = scores
        return {f"val_{k}": f"{scores[k]:.6g}" for k in
                ("pixel_accuracy", "mean_accuracy", "mean_iu", "frequency_weighted_iu")}

    def finish(self, reason):
        from ..models.io import save_model
        from .curves import plot_curves

        save_model(self.model, self.out_dir / "model.npz",
                   extra={"trained": {"iterations": self.iteration, "config": self.config.to_dict()}})
        summary = {"stopped_by": reason, "signal": self.stop_signal if reason == "interrupted" else None,
                   "iterations": self.iteration, "seconds": round(self.elapsed, 1),
                   "validation": _jsonable(self.last_val), "config": self.config.to_dict()}
        text = json.dumps(summary, indent=2) + "\n"
        atomic_write(self.out_dir / "summary.json", lambda tmp: Path(tmp).write_text(text))
        plot_curves(self.out_dir / "log.csv", self.out_dir / "curves.png")
        return summary


def _blas_threads():
    """The BLAS thread limit in force now (``cpu_threads``): a process group shares out no
    more threads than this (:func:`~minifcn.train.processes.threads_per_process`)."""
    from threadpoolctl import threadpool_info

    counts = [pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"]
    return min(counts) if counts else None


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, Preprocessing):
        return value.to_dict()
    if isinstance(value, (np.ndarray,)) or type(value).__module__.startswith("cupy"):
        return [None if np.isnan(v) else float(v) for v in to_host(value).ravel()]
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else float(value)
    return value

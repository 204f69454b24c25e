"""Notice a diverging run before it saves weights that are already ruined.

A NaN loss is the last sign of divergence, not the first. With too high a learning rate the
quick preset's loss went 1.3, 1.9e3, 8.9e10, 1.2e19, 9.7e29 and only then NaN: every
checkpoint written on the way is finite, and none of them trains again at any rate. So each
iteration's loss and gradient norm are compared with what this run usually sees, the median
of its first iterations or of its recent past, whichever is larger (a run that starts from
trained weights starts low; a run whose scorers start at zero sees its gradients grow). An
iteration diverges when either value is not finite or is far above that:
:data:`LOSS_FACTOR` times for the loss, :data:`GRADIENT_FACTOR` times for the gradient norm,
which varies more from batch to batch. The factors are generous on purpose: a false alarm
stops a healthy run, and a divergence goes from 10 to 1e10 in a step or two.

The trainer checks both before it updates the weights and before it writes a checkpoint, and
writes a checkpoint only once the iteration after it has passed (see ``Trainer.step``).
"""
from __future__ import annotations

import math
import shlex
import statistics

from ..errors import MinifcnError

WINDOW = 20  # iterations in "the first iterations" and in "the recent past"
LOSS_FACTOR = 100.0
GRADIENT_FACTOR = 1000.0
QUANTITIES = ("loss", "gradient norm")


class DivergenceGuard:
    """The usual size of the loss and the gradient norm of a run, and the check against it.

    Parameters
    ----------
    window : int
        How many of the first and of the latest accepted values make the reference.
    factors : dict of str -> float, optional
        How far above its usual size each quantity may go (default: :data:`LOSS_FACTOR`,
        :data:`GRADIENT_FACTOR`).

    Examples
    --------
    >>> guard = DivergenceGuard()
    >>> guard.record(1.6, 1.2)
    >>> guard.check("loss", 1.4) is None
    True
    >>> guard.check("loss", 1e15)
    'the loss 1e+15 is over 100 times its usual size (1.6)'
    """

    def __init__(self, window=WINDOW, factors=None):
        self.window = window
        self.factors = factors or {"loss": LOSS_FACTOR, "gradient norm": GRADIENT_FACTOR}
        self.first = {q: [] for q in QUANTITIES}
        self.recent = {q: [] for q in QUANTITIES}

    def usual(self, quantity):
        """The reference size of ``quantity`` (``None`` before anything was recorded)."""
        if not self.first[quantity]:
            return None
        return max(statistics.median(self.first[quantity]), statistics.median(self.recent[quantity]))

    def check(self, quantity, value):
        """``None`` if ``value`` of ``quantity`` looks like this run, else why it does not."""
        if not math.isfinite(value):
            return f"the {quantity} became {value}"
        usual, factor = self.usual(quantity), self.factors[quantity]
        # a usual size of 0 (nothing but void pixels so far) is no scale to compare with
        if usual and value > factor * usual:
            return f"the {quantity} {value:.3g} is over {factor:g} times its usual size ({usual:.3g})"
        return None

    def record(self, loss, gradient_norm):
        """Remember the values of an iteration that passed both checks."""
        for quantity, value in zip(QUANTITIES, (float(loss), float(gradient_norm))):
            if len(self.first[quantity]) < self.window:
                self.first[quantity].append(value)
            self.recent[quantity] = (self.recent[quantity] + [value])[-self.window:]

    def state_dict(self):
        """The recorded values, JSON-able (a checkpoint keeps them, so a resumed run keeps its
        scale)."""
        return {"first": self.first, "recent": self.recent}

    def load_state_dict(self, state):
        """Take back what :meth:`state_dict` gave (lists of numbers per quantity)."""
        values = {part: {q: [float(v) for v in state.get(part, {}).get(q, [])] for q in QUANTITIES}
                  for part in ("first", "recent")}
        self.first = {q: v[:self.window] for q, v in values["first"].items()}
        self.recent = {q: v[-self.window:] for q, v in values["recent"].items()}


class TrainingDiverged(MinifcnError, RuntimeError):
    """The loss or the gradient norm became non-finite or exploded; nothing was saved after it.

    Attributes
    ----------
    iteration : int
        The iteration (counted from 1, as in ``log.csv``) whose update was refused.
    checkpoint : Path or None
        The checkpoint saved before the divergence, if any: it resumes at a lower rate.
    lr : float
        The learning rate the message suggests (a tenth of the run's).
    """

    def __init__(self, message, iteration, checkpoint, lr):
        super().__init__(message)
        self.iteration, self.checkpoint, self.lr = iteration, checkpoint, lr

    @classmethod
    def at(cls, iteration, reason, config, out_dir, saved=None):
        """The error for a divergence at ``iteration``: what happened, and the command to run
        next. ``saved``: ``(checkpoint path, its iteration)``, or ``None`` when there is none."""
        lower = float(f"{config.lr / 10:.3g}")
        if saved is None:
            advice = (f"no checkpoint was saved before it: start again with --overwrite and a lower "
                      f"--lr (e.g. {lower:g}); --checkpoint-every N keeps one to come back to")
        else:
            advice = (f"{saved[0]} (iteration {saved[1]}) is from before it; continue it at a lower "
                      f"rate with: minifcn train --out {shlex.quote(str(out_dir))} --resume --lr {lower:g}")
        message = (f"training diverged at iteration {iteration}: {reason}; stopped without saving. "
                   f"{advice} (lr was {config.lr:g} with the {config.reduction} loss; a summed loss "
                   f"wants a rate about the pixel count smaller than a mean loss)")
        return cls(message, iteration, None if saved is None else saved[0], lower)

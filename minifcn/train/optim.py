"""SGD with momentum, as the reference FCN trains: weight decay on weights only, an optional
doubled learning rate for biases, and fixed / step / poly learning-rate schedules.

The update for a parameter ``w`` with gradient ``g`` (Caffe's and PyTorch's form)::

    v = momentum * v + (g + weight_decay * w)      # no decay on biases
    w = w - lr * lr_mult * v                       # lr_mult = 2 for biases if bias_lr_x2
"""
from __future__ import annotations

import math

SCHEDULES = ("fixed", "step", "poly")


def learning_rate(base_lr, iteration, schedule="fixed", max_iter=None, step_size=None, gamma=0.1,
                  power=0.9, warmup=0):
    """The learning rate at ``iteration`` (0-based).

    ``fixed``: ``base_lr``; ``step``: ``base_lr * gamma ** (iteration // step_size)``;
    ``poly``: ``base_lr * (1 - iteration / max_iter) ** power``. A linear warm-up over the
    first ``warmup`` iterations multiplies any of them.
    """
    if schedule == "fixed":
        lr = base_lr
    elif schedule == "step":
        if not step_size:
            raise ValueError("the step schedule needs step_size")
        lr = base_lr * gamma ** (iteration // step_size)
    elif schedule == "poly":
        if not max_iter:
            raise ValueError("the poly schedule needs max_iter")
        lr = base_lr * max(0.0, 1 - iteration / max_iter) ** power
    else:
        raise ValueError(f"unknown schedule {schedule!r}: expected one of {SCHEDULES}")
    if warmup and iteration < warmup:
        lr *= (iteration + 1) / warmup
    return lr


def cooldown_factor(progress, cooldown):
    """Multiplier that takes the rate linearly to zero over the last ``cooldown`` fraction of
    a run; ``progress`` is the fraction done (iterations or seconds). 1 before that."""
    if not cooldown:
        return 1.0
    return min(1.0, max(0.0, (1.0 - progress) / cooldown))


class SGD:
    """Momentum SGD over a model's ``named_parameters()``; frozen parameters are skipped.

    Parameters
    ----------
    named_parameters : iterable of (str, Parameter)
    lr : float
        Base learning rate (see :func:`learning_rate` for the schedule, applied by the caller
        through :meth:`step`'s ``lr`` argument).
    momentum, weight_decay : float
    bias_lr_x2 : bool
        Biases learn twice as fast (the reference's ``lr_mult: 2``).
    """

    def __init__(self, named_parameters, lr=1e-3, momentum=0.9, weight_decay=5e-4, bias_lr_x2=False):
        self.params = [(n, p) for n, p in named_parameters if p.requires_grad]
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.bias_lr_x2 = bias_lr_x2
        self.velocity = {}

    def step(self, lr=None):
        """Apply one update with learning rate ``lr`` (default: the base rate)."""
        lr = self.lr if lr is None else lr
        for name, p in self.params:
            if p.grad is None:
                continue
            is_bias = name.endswith(".bias")
            g = p.grad if is_bias or not self.weight_decay else p.grad + self.weight_decay * p.data
            v = self.velocity.get(name)
            v = g.copy() if v is None else v * p.data.dtype.type(self.momentum) + g
            self.velocity[name] = v
            p.data -= p.data.dtype.type(lr * (2.0 if is_bias and self.bias_lr_x2 else 1.0)) * v

    def grad_norm(self):
        """The L2 norm of all gradients together, as a float (what gradient clipping measures).

        Sums in the gradients' dtype: float32 overflows to ``inf`` only past about 1e19, where a
        run is diverging anyway.
        """
        total = 0.0
        for _, p in self.params:
            if p.grad is not None:
                g = p.grad.ravel()  # (size,): g.dot(g) sums the squares without a temporary
                total += float(g.dot(g))
        return math.sqrt(total)

    def zero_grad(self):
        for _, p in self.params:
            p.grad = None

    def state_dict(self):
        """Momentum buffers, keyed ``momentum.<param name>``."""
        return {f"momentum.{k}": v for k, v in self.velocity.items()}

    def load_state_dict(self, state, xp=None):
        own = {n for n, _ in self.params}
        self.velocity = {}
        for key, v in state.items():
            name = key[len("momentum."):]
            if name not in own:
                raise ValueError(f"optimizer state has a buffer for unknown parameter {name!r}")
            self.velocity[name] = xp.asarray(v) if xp is not None else v



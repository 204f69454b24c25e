"""SGD with momentum, as the reference FCN trains, and Adam; weight decay on weights only, an
optional doubled learning rate for biases, and fixed / step / poly learning-rate schedules.

SGD's update for a parameter ``w`` with gradient ``g`` (Caffe's and PyTorch's form)::

    v = momentum * v + (g + weight_decay * w)      # no decay on biases
    w = w - lr * lr_mult * v                       # lr_mult = 2 for biases if bias_lr_x2

Adam's (Kingma and Ba, 2015), with the weight decay kept out of the gradient's moments as in
AdamW (Loshchilov and Hutter, 2019; PyTorch's ``AdamW``), step ``t = 1, 2, ...``::

    m = beta1 * m + (1 - beta1) * g                # beta1 = momentum
    s = beta2 * s + (1 - beta2) * g**2             # beta2 = 0.999
    w = w - lr * lr_mult * (m / (1 - beta1**t) / (sqrt(s / (1 - beta2**t)) + eps)
                            + weight_decay * w)   # eps = 1e-8; no decay on biases

Each parameter's step is about ``lr`` whatever its gradient's scale: from scratch, the narrow
net's first layers and its wide ``fc6`` get gradients that differ by orders of magnitude, and
one SGD rate cannot suit both.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import get_array_module

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


class Optimizer:
    """What both optimisers share: the trainable parameters, their gradients' norm, and
    clearing them. Subclasses define ``step``, ``state_dict`` and ``load_state_dict``."""

    def __init__(self, named_parameters):
        self.params = [(n, p) for n, p in named_parameters if p.requires_grad]

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

    def _updates(self, lr):
        """``(name, parameter, is_bias, rate)`` for every parameter that has a gradient:
        ``rate`` is ``lr`` (the base rate when None), doubled for biases with ``bias_lr_x2``."""
        lr = self.lr if lr is None else lr
        for name, p in self.params:
            if p.grad is None:
                continue
            is_bias = name.endswith(".bias")
            yield name, p, is_bias, lr * (2.0 if is_bias and self.bias_lr_x2 else 1.0)

    def _buffers(self, state, prefix, xp):
        """``{parameter name: array}`` from the ``prefix`` keys of ``state``, refusing unknown
        names and shapes that are not the parameter's."""
        own = dict(self.params)
        buffers = {}
        for key, value in state.items():
            if not key.startswith(prefix):
                continue
            name = key[len(prefix):]
            if name not in own:
                raise ValueError(f"optimizer state has a buffer for unknown parameter {name!r}")
            if tuple(value.shape) != tuple(own[name].shape):
                raise ValueError(f"optimizer state {key!r}: shape {tuple(value.shape)}, but "
                                 f"{name} is {tuple(own[name].shape)}")
            buffers[name] = xp.asarray(value) if xp is not None else value
        return buffers


class SGD(Optimizer):
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

    def __init__(self, named_parameters, lr=1e-3, momentum=0.9, weight_decay=5e-4,
                 bias_lr_x2=False):
        super().__init__(named_parameters)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.bias_lr_x2 = bias_lr_x2
        self.velocity = {}

    def step(self, lr=None):
        """Apply one update with learning rate ``lr`` (default: the base rate)."""
        for name, p, is_bias, rate in self._updates(lr):
            g = p.grad if is_bias or not self.weight_decay else p.grad + self.weight_decay * p.data
            v = self.velocity.get(name)
            v = g.copy() if v is None else v * p.data.dtype.type(self.momentum) + g
            self.velocity[name] = v
            p.data -= p.data.dtype.type(rate) * v

    def state_dict(self):
        """Momentum buffers, keyed ``momentum.<param name>``."""
        return {f"momentum.{k}": v for k, v in self.velocity.items()}

    def load_state_dict(self, state, xp=None):
        """Take the ``momentum.`` buffers of ``state`` (a checkpoint's arrays)."""
        self.velocity = self._buffers(state, "momentum.", xp)


class Adam(Optimizer):
    """Adam with decoupled weight decay (AdamW) over a model's ``named_parameters()``.

    Parameters
    ----------
    named_parameters : iterable of (str, Parameter)
    lr : float
        Base learning rate: about the largest step any weight takes per update.
    momentum : float
        ``beta1``, the decay of the gradient's running mean (the same setting as SGD's).
    weight_decay : float
        Decoupled: ``w -= lr * weight_decay * w`` each step, on weights only.
    bias_lr_x2 : bool
        Biases step twice as far.
    beta2, eps : float
        The decay of the running mean of squared gradients, and the guard of its root.
    """

    def __init__(self, named_parameters, lr=1e-3, momentum=0.9, weight_decay=0.0, bias_lr_x2=False,
                 beta2=0.999, eps=1e-8):
        super().__init__(named_parameters)
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.bias_lr_x2, self.beta2, self.eps = bias_lr_x2, beta2, eps
        self.steps = 0  # t, for the bias corrections
        self.mean, self.square = {}, {}  # m and s of every parameter

    def step(self, lr=None):
        """Apply one update with learning rate ``lr`` (default: the base rate)."""
        self.steps += 1
        beta1, beta2 = self.momentum, self.beta2
        correction1, correction2 = 1 - beta1 ** self.steps, 1 - beta2 ** self.steps
        for name, p, is_bias, rate in self._updates(lr):
            xp, dtype = get_array_module(p.data), p.data.dtype.type
            g = p.grad
            if name not in self.mean:
                self.mean[name], self.square[name] = xp.zeros_like(p.data), xp.zeros_like(p.data)
            m, s = self.mean[name], self.square[name]
            m *= dtype(beta1)
            m += dtype(1 - beta1) * g
            s *= dtype(beta2)
            s += dtype(1 - beta2) * (g * g)
            if self.weight_decay and not is_bias:
                p.data -= dtype(rate * self.weight_decay) * p.data  # the weight before this step
            root = xp.sqrt(s * dtype(1 / correction2))
            root += dtype(self.eps)
            p.data -= dtype(rate / correction1) * m / root

    def state_dict(self):
        """Both running means, keyed ``adam.mean.<param name>`` and ``adam.square.<param
        name>``, and the step count, ``adam.steps``."""
        state = {f"adam.mean.{k}": v for k, v in self.mean.items()}
        state.update({f"adam.square.{k}": v for k, v in self.square.items()})
        state["adam.steps"] = np.array(self.steps)
        return state

    def load_state_dict(self, state, xp=None):
        """Take the ``adam.`` entries of ``state`` (a checkpoint's arrays)."""
        self.mean = self._buffers(state, "adam.mean.", xp)
        self.square = self._buffers(state, "adam.square.", xp)
        if set(self.mean) != set(self.square):
            raise ValueError("optimizer state: Adam's two running means name different parameters")
        steps = state.get("adam.steps")
        if self.mean and steps is None:
            raise ValueError("optimizer state: Adam's running means without adam.steps")
        self.steps = 0 if steps is None else int(steps)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}  # the config's ``optimizer`` choices


def make_optimizer(config, named_parameters):
    """The optimiser ``config.optimizer`` names (a key of :data:`OPTIMIZERS`, which the config
    checks), with the config's rate, momentum, decay and bias rate."""
    return OPTIMIZERS[config.optimizer](named_parameters, config.lr, config.momentum,
                                        config.weight_decay, config.bias_lr_x2)

"""Whole-network gradient checks: a narrow FCN in float64, through the loss, every parameter.

A full finite-difference sweep over every weight would need two forward passes per entry.
Instead each parameter array (and the input) gets a random-direction check — the directional
derivative along a random unit vector against ``<grad, direction>`` — plus central
differences on a few sampled entries. A wrong gradient in any entry shows up in the
directional check with probability one.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..gradcheck import directional_check, numerical_gradient, sampled_rel_error
from ..gradcheck_pins import pinned_branches
from ..ops import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from .fcn import MODELS

TOLERANCE = 1e-6


def randomise(model, rng):
    """Give every parameter (scorers and biases included) random values, so that no gradient
    is trivially zero. Biases of order one keep pre-activations away from ReLU's kink, where
    a finite-difference step would measure the wrong branch."""
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.data = rng.standard_normal(p.shape) * 0.5
        else:
            fan_in = int(np.prod(p.shape[1:]))
            p.data = rng.standard_normal(p.shape) * np.sqrt(2.0 / fan_in)  # He et al. 2015


def check_model_gradients(model, x, labels, num_samples=2, seed=0, h=1e-2):
    """Compare the model's analytic gradients of the mean cross-entropy with finite
    differences. Returns ``{"dx": err, "d<param>": err, ...}`` (largest of the directional
    and sampled errors; ``num_samples=0`` checks the random direction alone).

    A narrow network on a small, heavily padded input has thousands of pre-activations
    within 1e-5 of ReLU's kink, so any step of a useful size crosses some of them and the
    difference quotient mixes two branches. The check therefore pins the branches of the
    analytic forward (:func:`minifcn.gradcheck_pins.pinned_branches`): the pinned network is
    exactly the smooth piece the backward differentiates, and a five-point stencil with a
    large step measures its slope to about 1e-10. Either op set: the model runs its own.
    """
    rng = np.random.default_rng(seed)

    def loss():
        model.reseed_dropout()  # the same masks in every forward pass
        return softmax_cross_entropy_forward(model.forward(x), labels)[0]

    model.reseed_dropout()
    _, cache = softmax_cross_entropy_forward(model.forward(x), labels)
    dx = model.backward(softmax_cross_entropy_backward(1.0, cache))
    targets = [("dx", x, dx)] + [(f"d{name}", p.data, p.grad) for name, p in model.named_parameters()
                                 if p.requires_grad]
    errors = {}
    with pinned_branches(model, at=loss):  # the branches of the forward at x, as analysed
        for name, array, grad in targets:
            errors[name] = directional_check(loss, array, grad, h=h, rng=rng, points=4)[2]
            if num_samples:
                numeric = numerical_gradient(loss, array, h=h, num_samples=num_samples, rng=rng,
                                             points=4)
                errors[name] = max(errors[name], sampled_rel_error(numeric, grad))
    return errors


def narrow_case(variant, size=(9, 11), width=1 / 64, num_classes=3, learn_upsampling=True, seed=0,
                ops="book", num_samples=2):
    """A callable row for ``minifcn gradcheck``: ``() -> (op, config, errors)``."""

    def run():
        rng = np.random.default_rng(seed)
        model = MODELS[variant](num_classes, width, dropout=0.5, learn_upsampling=learn_upsampling,
                                dtype=np.float64, seed=seed, ops=ops)
        randomise(model, rng)
        x = rng.standard_normal((2, 3) + size)
        labels = rng.integers(0, num_classes, (2,) + size)
        labels[0, :2] = 255
        errors = check_model_gradients(model.train(), x, labels, num_samples, seed=seed)
        worst = max(errors, key=errors.get)
        w = Fraction(width).limit_denominator(1000)
        name = variant if ops == "book" else f"{variant} ({ops})"
        return (name, f"width {w}, x(2, 3, {size[0]}, {size[1]}), {len(errors)} grads, worst",
                {worst: errors[worst]})

    return run


def model_cases(op_sets=("book",)):
    """``(run, tolerance)`` pairs for the gradcheck table, one per variant and op set."""
    return [(narrow_case(v, ops=ops), TOLERANCE) for ops in op_sets for v in MODELS]

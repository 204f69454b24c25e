"""Pinned branches: ReLU masks and max-pool winners held fixed, for gradient checks.

ReLU and max-pooling are smooth only piece by piece. A finite-difference step that crosses
ReLU's kink, or makes another pixel win a pooling window, measures a different piece than the
one whose derivative the backward computed. A narrow network on a small, heavily padded input
has thousands of pre-activations within 1e-5 of the kink, so any step of a useful size
crosses some of them. Whole-network checks therefore pin every branch to the one taken at
the point being checked: the pinned network is exactly the smooth piece that the backward
differentiates, and a five-point stencil with a large step measures its slope to about 1e-10.

The pins are wrappers around the layers' ``forward`` (the ops and the layers know nothing of
them), for networks on either op set:

- a pinned ReLU multiplies by the mask it recorded, ``x * (x0 > 0)``, and so does its
  ``blank`` (the engine's blank-image constant of the trunk, :mod:`minifcn.engine.border`);
- a pinned max-pool reads, in every window, the pixel that won it at ``x0``. The winners are
  the book's argmax (:func:`minifcn.ops.pool.max_pool2d_forward`), whichever op set the layer
  runs: the engine's pooling has the same tie rule and is tested equal to it.
"""
from __future__ import annotations

import contextlib

from .backend import get_array_module
from .layers import MaxPool2d, ReLU
from .ops.pool import max_pool2d_forward, taps


@contextlib.contextmanager
def pinned_branches(model, at):
    """A block in which ``model``'s ReLU masks and pooling winners stay those of one point.

    Parameters
    ----------
    model : object with a ``layers`` dict (an FCN)
    at : callable
        Runs one forward at the point whose branches are pinned (``x0``); called on entry,
        before the block runs.

    Every later forward inside the block applies those branches, whatever its input; on exit
    the layers run their own ``forward`` again.
    """
    pinned = [layer for layer in model.layers.values() if isinstance(layer, (ReLU, MaxPool2d))]
    for layer in pinned:
        layer.forward = _pinned_relu() if isinstance(layer, ReLU) else _pinned_pool(layer)
        if isinstance(layer, ReLU):  # the engine's blank-image constants take ReLUs too
            layer.blank = _pinned_relu()
    try:
        at()  # the first call of each wrapper records its branch
        yield model
    finally:
        for layer in pinned:
            del layer.forward  # the instance attribute goes, the class's method is back
            layer.__dict__.pop("blank", None)


def _pinned_relu():
    """``forward(x)`` of a ReLU whose mask is the one of its first input."""
    mask = None

    def forward(x):
        nonlocal mask
        if mask is None:
            mask = x > 0  # the branch at the point being checked
        return x * mask

    return forward


def _pinned_pool(layer):
    """``forward(x)`` of a max-pool whose winners are those of its first input."""
    winners = None

    def forward(x):
        nonlocal winners
        if winners is None:  # the branch at the point being checked: the book's argmax
            winners = max_pool2d_forward(x, layer.kernel_size, layer.stride, layer.padding,
                                         layer.ceil_mode, layer.name)[1]
        return read_winners(x, winners)

    return forward


def read_winners(x, cache):
    """Read, in every window of ``x``, the pixel that won it in the forward that made the book's
    pooling ``cache``: max-pooling with its branch pinned, linear in ``x``. Returns an array of
    shape (N, C, H_out, W_out)."""
    x_shape, shape, argmax, kernel, stride, (ph, pw) = cache
    xp = get_array_module(x)
    h, w = x.shape[2:]
    x_pad = xp.zeros(shape, dtype=x.dtype)  # placed as the book's forward placed x0
    x_pad[:, :, ph:ph + h, pw:pw + w] = x
    out = xp.zeros(argmax.shape, dtype=x.dtype)
    for k, rows, cols in taps(kernel, stride, argmax.shape[2:]):
        out = xp.where(argmax == k, x_pad[:, :, rows, cols], out)  # windows that tap k won
    return out

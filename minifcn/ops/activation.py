"""ReLU and inverted dropout.

ReLU passes positive values and blocks the rest; its gradient is the same mask.

Dropout (Srivastava et al. 2014), in its *inverted* form as in Caffe and PyTorch: during
training each activation is kept with probability ``1 - p`` and the survivors are scaled by
``1 / (1 - p)``, so the expected activation is unchanged and evaluation is the identity. FCN
applies ``p = 0.5`` after fc6 and fc7.
"""
from __future__ import annotations

from ..backend import get_array_module
from ._util import check_float, check_grad


def relu_forward(x, name="relu"):
    """``out = max(x, 0)``.

    Parameters
    ----------
    x : array, any shape
    name : str
        Layer name used in error messages.

    Returns
    -------
    out : array, same shape as ``x``
    cache : array of bool, the mask ``x > 0``
    """
    check_float(x, name, "input")
    xp = get_array_module(x)
    return xp.maximum(x, x.dtype.type(0)), x > 0


def relu_backward(dout, cache, name="relu"):
    """``dx = dout * (x > 0)``: the gradient passes where the input was positive (at exactly
    0 it is taken as 0)."""
    check_grad(dout, cache.shape, name)
    return dout * cache


def relu_naive(x):
    """Loop twin of :func:`relu_forward`."""
    xp = get_array_module(x)
    out = xp.zeros_like(x)
    flat_in, flat_out = x.reshape(-1), out.reshape(-1)
    for k in range(flat_in.size):
        flat_out[k] = flat_in[k] if flat_in[k] > 0 else 0
    return out


def dropout_forward(x, p=0.5, train=True, rng=None, name="dropout"):
    """Inverted dropout.

    Parameters
    ----------
    x : array, any shape
    p : float
        Probability of *dropping* an activation, ``0 <= p < 1``.
    train : bool
        In evaluation mode (``False``) dropout is the identity.
    rng : Generator
        ``numpy.random.Generator`` (or ``cupy.random.Generator`` for CuPy arrays); seeded by
        the caller so that a run is reproducible.
    name : str
        Layer name used in error messages.

    Returns
    -------
    out : array, same shape as ``x``
    cache : array or None
        The scaled keep-mask (``0`` or ``1/(1-p)``), or ``None`` when nothing was dropped.
    """
    check_float(x, name, "input")
    if not 0 <= p < 1:
        raise ValueError(f"{name}: p must be in [0, 1), got {p}")
    if not train or p == 0:
        return x, None
    if rng is None:
        raise ValueError(f"{name}: training mode needs a seeded generator (rng)")
    keep = rng.random(x.shape, dtype=x.dtype) >= p
    mask = keep * x.dtype.type(1.0 / (1.0 - p))
    return x * mask, mask


def dropout_backward(dout, cache, name="dropout"):
    """The same mask applied to the gradient.

    When nothing was dropped (evaluation, ``p = 0``) the forward was the identity and kept
    nothing, not even a shape: the gradient passes through as it is, as in PyTorch, where
    such a dropout leaves no trace in the graph.
    """
    if cache is None:
        return dout
    check_grad(dout, cache.shape, name)
    return dout * cache

"""Numerical gradient checking: the test every hand-written backward must pass.

A backward pass claims ``dL/dx`` for ``L = sum(f(x) * dout)``. Central differences estimate
the same thing from forward passes alone::

    dL/dx[i] ~ (L(x + h e_i) - L(x - h e_i)) / (2h)        error O(h^2)

Run it in float64: with float32's 7 digits the rounding error of ``L`` divided by ``2h``
swamps the answer and checks fail for no reason.

Two flavours:

- :func:`numerical_gradient` perturbs entries one at a time (all, or a random sample of
  them): exact coverage for small arrays.
- :func:`directional_check` perturbs the whole array along one random direction ``d`` and
  compares ``(L(x + h d) - L(x - h d)) / 2h`` with ``<grad, d>``: two forward passes whatever
  the size, and it runs unchanged on CuPy arrays.
"""
from __future__ import annotations

import numpy as np

from .backend import get_array_module, to_host


def rel_error(a, b):
    """Relative error ``max|a - b| / max(max|a|, max|b|)``, 0 when both are all zero.

    Scaling by the largest magnitude (not entry by entry) keeps entries that are zero up to
    rounding from dominating the figure.
    """
    a = np.asarray(to_host(a), dtype=np.float64)
    b = np.asarray(to_host(b), dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0))
    if scale == 0.0:
        return 0.0
    return float(np.abs(a - b).max() / scale)


def _objective(f, dout):
    """``L = sum(f() * dout)`` as a Python float (``dout=None``: ``f()`` is already a scalar)."""
    out = f()
    if dout is None:
        return float(out)
    return float((out * dout).sum())


def _central_difference(f, dout, perturb, h, points=2):
    """Finite-difference slope of ``L`` where ``perturb(step)`` moves the argument by ``step``.

    ``points=2``: ``(L(+h) - L(-h)) / 2h``, error O(h^2). ``points=4``: the five-point stencil
    ``(-L(+2h) + 8 L(+h) - 8 L(-h) + L(-2h)) / 12h``, error O(h^4), which allows a larger
    step and so less rounding error where the slope is small next to ``L`` itself (deep
    networks).
    """
    if points == 2:
        offsets, weights = (1, -1), (0.5, -0.5)
    elif points == 4:
        offsets, weights = (2, 1, -1, -2), (-1 / 12, 8 / 12, -8 / 12, 1 / 12)
    else:
        raise ValueError(f"points must be 2 or 4, got {points}")
    values, position = [], 0
    for k in offsets:
        perturb((k - position) * h)
        position = k
        values.append(_objective(f, dout))
    perturb(-position * h)
    return sum(w * v for w, v in zip(weights, values)) / h


def numerical_gradient(f, x, dout=None, h=1e-5, num_samples=None, rng=None, points=2):
    """Central-difference gradient of ``L = sum(f() * dout)`` with respect to ``x``.

    Parameters
    ----------
    f : callable
        Takes no arguments and reads ``x`` (which is perturbed *in place*, then restored).
    x : array
        The argument to differentiate with respect to (any shape; float64 recommended).
    dout : array, optional
        Upstream gradient, same shape as ``f()``; ``None`` when ``f`` returns a scalar.
    h : float
        Step.
    num_samples : int, optional
        Check only this many randomly chosen entries (the rest of the result is NaN).
    rng : numpy.random.Generator, optional
        Chooses the sampled entries.
    points : {2, 4}
        Two-point central difference or the five-point stencil.

    Returns
    -------
    grad : numpy.ndarray, same shape as ``x`` (on the host)
    """
    if not x.flags.c_contiguous:
        raise ValueError("numerical_gradient: x must be C-contiguous (perturbing a copy would "
                         "leave f() unchanged); pass np.ascontiguousarray(x) to f and here")
    flat = x.reshape(-1)  # a view: writing to it perturbs x
    if num_samples is None or num_samples >= flat.size:
        indices = range(flat.size)
        grad = np.zeros(flat.size)
    else:
        rng = rng or np.random.default_rng(0)
        indices = rng.choice(flat.size, size=num_samples, replace=False)
        grad = np.full(flat.size, np.nan)
    for i in indices:
        if points == 2:  # the plain loop, as in the text above
            old = flat[i].item()
            flat[i] = old + h
            plus = _objective(f, dout)
            flat[i] = old - h
            minus = _objective(f, dout)
            flat[i] = old
            grad[i] = (plus - minus) / (2 * h)
        else:
            def perturb(step, i=i):
                flat[i] += step

            grad[i] = _central_difference(f, dout, perturb, h, points)
    return grad.reshape(x.shape)


def sampled_rel_error(numeric, analytic):
    """Largest difference over the entries :func:`numerical_gradient` computed, relative to
    the largest entry of the whole analytic gradient (the scale of that gradient)."""
    analytic = np.asarray(to_host(analytic), dtype=np.float64)
    checked = ~np.isnan(numeric)
    scale = max(np.abs(analytic).max(initial=0.0), np.abs(numeric[checked]).max(initial=0.0))
    if scale == 0.0:
        return 0.0
    return float(np.abs(numeric[checked] - analytic[checked]).max() / scale)


def directional_check(f, x, grad, dout=None, h=1e-5, rng=None, points=2):
    """Compare the analytic gradient with a finite difference along a random direction.

    Parameters
    ----------
    f, x, dout, h, points : as in :func:`numerical_gradient`
    grad : array, same shape as ``x``
        The analytic gradient under test.
    rng : numpy.random.Generator, optional

    Returns
    -------
    numeric, analytic, error : float
        ``(L(x + h d) - L(x - h d)) / 2h``, ``<grad, d>`` and their relative difference.
    """
    xp = get_array_module(x)
    rng = rng or np.random.default_rng(0)
    direction = rng.standard_normal(x.shape)
    direction /= np.linalg.norm(direction)
    d = xp.asarray(direction, dtype=x.dtype)

    def perturb(step):
        x[...] += step * d

    numeric = _central_difference(f, dout, perturb, h, points)
    analytic = float((to_host(grad).astype(np.float64) * direction).sum())
    scale = max(abs(numeric), abs(analytic))
    return numeric, analytic, (abs(numeric - analytic) / scale if scale else 0.0)


def well_separated(rng, shape):
    """Random values in [-1, 1] with no two closer than ``2 / size``.

    Max-pooling and ReLU are not differentiable where two window entries tie (or an input
    is 0); a finite-difference step that crosses such a point measures a different branch.
    Inputs whose values are a shuffled even grid keep every step far from a tie.
    """
    size = int(np.prod(shape))
    grid = np.linspace(-1.0, 1.0, size) + 0.5 / max(size, 1)  # no value is exactly 0
    return rng.permutation(grid).reshape(shape)

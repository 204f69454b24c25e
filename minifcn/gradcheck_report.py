"""``minifcn gradcheck``: every layer, several configurations, every gradient, in float64.

Each row runs one op's forward on small random float64 arrays (odd, non-square shapes),
its backward with a random upstream gradient, and compares every analytic gradient with
the central-difference estimate of :func:`minifcn.gradcheck.numerical_gradient`. A row
passes when the relative error of every gradient is below :data:`TOLERANCE`. The rows run
on the book's ops (:mod:`minifcn.ops`), the engine's (:mod:`minifcn.engine`), or both.
"""
from __future__ import annotations

import numpy as np

from .gradcheck import numerical_gradient, rel_error, well_separated
from .init import bilinear_upsampling_weight
from .layers import op_set

TOLERANCE = 1e-7


def _conv(ops, name, x_shape, w_shape, stride, padding, bias=True):
    def build(rng):
        arrays = {"x": rng.standard_normal(x_shape), "weight": rng.standard_normal(w_shape)}
        if bias:
            arrays["bias"] = rng.standard_normal(w_shape[0])
        return arrays

    def forward(a):
        return ops.conv2d_forward(a["x"], a["weight"], a.get("bias"), stride, padding)

    config = f"x{x_shape} w{w_shape} s{stride} p{padding}" + ("" if bias else " no bias")
    return name, config, build, forward, ops.conv2d_backward


def _conv_t(ops, name, x_shape, w_shape, stride, padding, output_padding=0, bias=True):
    def build(rng):
        arrays = {"x": rng.standard_normal(x_shape), "weight": rng.standard_normal(w_shape)}
        if bias:
            arrays["bias"] = rng.standard_normal(w_shape[1])
        return arrays

    def forward(a):
        return ops.conv_transpose2d_forward(a["x"], a["weight"], a.get("bias"), stride, padding,
                                            output_padding)

    config = f"x{x_shape} w{w_shape} s{stride} p{padding}" + (f" op{output_padding}" if output_padding else "") + (
        "" if bias else " no bias")
    return name, config, build, forward, ops.conv_transpose2d_backward


def _pool(ops, x_shape, k, stride, padding, ceil_mode):
    def build(rng):
        return {"x": well_separated(rng, x_shape)}  # ties would break finite differences

    def forward(a):
        return ops.max_pool2d_forward(a["x"], k, stride, padding, ceil_mode)

    def backward(dout, cache):
        return (ops.max_pool2d_backward(dout, cache),)

    mode = "ceil" if ceil_mode else "floor"
    return "max_pool2d", f"x{x_shape} k{k} s{stride} p{padding} {mode}", build, forward, backward


def _unary(name, config, x_shape, forward_fn, backward_fn):
    def build(rng):
        return {"x": rng.standard_normal(x_shape)}

    def forward(a):
        return forward_fn(a["x"])

    def backward(dout, cache):
        return (backward_fn(dout, cache),)

    return name, config, build, forward, backward


def _loss(ops, config, shape, reduction, weighted):
    n, c, h, w = shape

    def build(rng):
        labels = rng.integers(0, c, size=(n, h, w))
        labels[rng.random((n, h, w)) < 0.2] = 255  # some void pixels
        arrays = {"x": rng.standard_normal(shape), "labels": labels}
        if weighted:
            arrays["class_weight"] = rng.uniform(0.5, 2.0, size=c)
        return arrays

    def forward(a):
        return ops.softmax_cross_entropy_forward(a["x"], a["labels"], 255, a.get("class_weight"), reduction)

    def backward(dout, cache):
        return (ops.softmax_cross_entropy_backward(1.0, cache),)

    return "softmax_cross_entropy", config, build, forward, backward


def _dropout_case(ops):
    def forward_fn(x):
        # a fresh generator with a fixed seed per call: every finite-difference forward
        # draws the same mask as the analytic one
        return ops.dropout_forward(x, 0.5, True, np.random.default_rng(3))

    return _unary("dropout", "x(2, 3, 5, 7) p0.5 train", (2, 3, 5, 7), forward_fn, ops.dropout_backward)


def cases(ops="book"):
    """The table's rows for the op set ``ops`` ("book" or "engine"): ``(op, configuration,
    build(rng), forward(arrays), backward)``. The engine's rows are the ops it replaces (the
    others it takes from the book unchanged), named with the set."""
    m = op_set(ops)
    rows = [
        _conv(m, "conv2d", (2, 3, 7, 6), (4, 3, 3, 3), 1, 1),
        _conv(m, "conv2d", (2, 3, 9, 8), (5, 3, 3, 2), (2, 3), (2, 1)),
        _conv(m, "conv2d", (1, 2, 11, 9), (3, 2, 7, 7), 1, 0),
        _conv(m, "conv2d", (2, 6, 5, 7), (4, 6, 1, 1), 1, 0),
        _conv(m, "conv2d", (2, 6, 5, 7), (4, 6, 1, 1), 1, 0, bias=False),
        _conv_t(m, "conv_transpose2d", (2, 3, 4, 5), (3, 2, 4, 4), 2, 0, bias=False),
        _conv_t(m, "conv_transpose2d", (2, 3, 5, 4), (3, 4, 3, 2), (2, 3), (1, 0), (1, 2)),
        _conv_t(m, "conv_transpose2d", (1, 2, 3, 2), (2, 2, 16, 16), 8, 0, bias=False),
        _pool(m, (2, 3, 7, 9), 2, 2, 0, True),
        _pool(m, (2, 3, 9, 8), 3, 2, 1, False),
        _pool(m, (1, 2, 7, 5), 3, 2, 1, True),
        _unary("relu", "x(2, 3, 5, 7)", (2, 3, 5, 7), m.relu_forward, m.relu_backward),
        _bilinear_case(m),
    ]
    if ops == "book":
        rows += [
            _dropout_case(m),
            _unary("crop", "x(2, 3, 9, 11) offset(2, 3) size(5, 4)", (2, 3, 9, 11),
                   lambda x: m.crop_forward(x, (2, 3), (5, 4)), m.crop_backward),
            _unary("scale", "x(2, 3, 5, 7) factor 0.01", (2, 3, 5, 7),
                   lambda x: m.scale_forward(x, 0.01), m.scale_backward),
            _loss(m, "(2, 4, 5, 7) mean", (2, 4, 5, 7), "mean", False),
            _loss(m, "(2, 4, 5, 7) sum, class weights", (2, 4, 5, 7), "sum", True),
        ]
    tag = "" if ops == "book" else f" ({ops})"
    return [(name + tag,) + tuple(rest) for name, *rest in rows]


def check_case(case, seed=0):
    """Run one row; returns ``(op, config, {gradient name: relative error})``."""
    name, config, build, forward, backward = case
    rng = np.random.default_rng(seed)
    arrays = build(rng)
    out, cache = forward(arrays)
    scalar = np.ndim(out) == 0
    dout = None if scalar else rng.standard_normal(np.shape(out))
    grads = backward(1.0 if scalar else dout, cache)
    names = [k for k in arrays if np.asarray(arrays[k]).dtype.kind == "f" and k != "class_weight"]
    errors = {}
    for key, grad in zip(names, grads):
        if grad is None:
            continue

        def f():
            return forward(arrays)[0]

        numeric = numerical_gradient(f, arrays[key], dout)
        errors["d" + key] = rel_error(numeric, grad)
    return name, config, errors


def _bilinear_case(ops):
    """Upsampling with a fixed bilinear kernel (the engine's separable route): checks the
    input gradient only."""
    weight = bilinear_upsampling_weight(3, 4, np.float64)
    return _unary("conv_transpose2d", "bilinear k4 s2, weight fixed", (1, 3, 4, 5),
                  lambda x: ops.conv_transpose2d_forward(x, weight, None, 2, 0),
                  lambda d, c: ops.conv_transpose2d_backward(d, c, weight_grad=False)[0])


def run_gradcheck(extra_cases=(), op_sets=("book", "engine")):
    """All rows of the op sets ``op_sets``; returns a list of ``(op, config, errors, passed)``.

    ``extra_cases`` holds ``(run, tolerance)`` pairs, ``run() -> (op, config, errors)``.
    """
    rows = []
    for case in [case for ops in op_sets for case in cases(ops)]:
        name, config, errors = check_case(case)
        rows.append((name, config, errors, all(e < TOLERANCE for e in errors.values())))
    for run, tolerance in extra_cases:  # whole networks: (callable, tolerance)
        name, config, errors = run()
        rows.append((name, config, errors, all(e < tolerance for e in errors.values())))
    return rows


def format_table(rows):
    """Render the rows as a plain-text table."""
    lines = [f"{'op':<25} {'configuration':<54} {'gradient':<9} {'rel. error':>10}  result",
             "-" * 109]
    for name, config, errors, passed in rows:
        first = True
        for grad_name, err in errors.items():
            verdict = "ok" if passed else "FAIL"
            lines.append(f"{name if first else '':<25} {config if first else '':<54} "
                         f"{grad_name:<9} {err:>10.1e}  {verdict}")
            first = False
    failed = sum(not r[3] for r in rows)
    lines.append("-" * 109)
    lines.append(f"{len(rows) - failed} of {len(rows)} configurations pass (float64, central "
                 f"differences; tolerance {TOLERANCE:.0e} per op, 1e-6 for whole networks)")
    return "\n".join(lines)

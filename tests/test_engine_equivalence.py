"""The engine computes what the book computes: every engine function against its book twin.

Each function of ``minifcn.engine`` that replaces one of ``minifcn.ops`` is run beside it on
seeded random geometries (odd and non-square sizes, strides 1-3, padding 0-2, batch 1-3)
and on the geometries that send the engine down each of its routes (bands, the stride-1
backward, 1x1 layers, the phase fold, the separable upsamplers with bilinear and with random
weights, pooling with and without a canvas, several threads); output and every gradient
agree to 1e-10 in float64 and 1e-5 in float32, relative to the result's largest entry. Whole
FCN-32s/16s/8s networks then agree layer set against layer set. The book itself is checked
against its loop twins and finite differences elsewhere (test_conv.py, test_pool.py, ...).
No test here reaches a path by patching the engine: the geometries choose the routes, and
``test_the_geometries_reach_every_route`` checks that they do.
"""
import importlib

import numpy as np
import pytest

from minifcn import engine
from minifcn import ops as book
from minifcn.engine import bands
from minifcn.engine import conv as engine_conv
from minifcn.engine import conv_transpose as engine_conv_transpose
from minifcn.engine import pool as engine_pool
from minifcn.engine.stride1 import stride1_backward
from minifcn.engine.winograd import winograd_pays
from minifcn.gradcheck import well_separated
from minifcn.init import bilinear_upsampling_weight
from minifcn.models import MODELS
from tests.conftest import random_geometries

engine_im2col = importlib.import_module("minifcn.engine.im2col")  # not the function im2col
TOLERANCE = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}


def assert_same(got, ref, what=""):
    """``got`` equals ``ref`` to the dtype's tolerance, relative to ``ref``'s largest entry."""
    if ref is None:
        assert got is None, what
        return
    assert got.shape == ref.shape and got.dtype == ref.dtype, (what, got.shape, ref.shape, got.dtype)
    tol = TOLERANCE[ref.dtype]
    scale = float(np.abs(ref).max(initial=0.0)) or 1.0
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * scale, err_msg=what)


def arrays(shape_x, shape_w, dtype, seed, bias=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape_x).astype(dtype)
    w = rng.standard_normal(shape_w).astype(dtype)
    b = rng.standard_normal(shape_w[0]).astype(dtype) if bias else None
    return x, w, b


def test_the_engine_offers_every_op_of_the_book():
    # a layer may hold either module as its op set
    names = [n for n in book.__all__ if callable(getattr(book, n))]
    assert set(names) <= set(engine.__all__)
    assert all(callable(getattr(engine, n)) for n in engine.__all__)
    replaced = {n for n in names if getattr(engine, n) is not getattr(book, n)}
    assert replaced == {"conv2d_forward", "conv2d_backward", "conv_weight_grad", "im2col",
                        "col2im", "conv_transpose2d_forward", "conv_transpose2d_backward",
                        "max_pool2d_forward", "max_pool2d_backward", "relu_forward", "relu_backward"}


# ---- convolution -------------------------------------------------------------------------

# (n, c_in, c_out, h, w, kernel, stride, padding): chosen for the routes, see the route test
ROUTED = [
    (1, 32, 32, 70, 60, (3, 3), (1, 1), (1, 1)),  # stride-1 backward, several bands
    (2, 16, 24, 40, 33, (3, 3), (1, 1), (1, 1)),  # widening: the col2im route, batched bands
    (1, 32, 40, 70, 60, (3, 3), (1, 1), (1, 1)),  # widening, several bands of one image
    (2, 6, 5, 9, 7, (1, 1), (1, 1), (0, 0)),  # 1x1: no unfolding at all
    (1, 3, 4, 5, 6, (3, 3), (1, 1), (7, 4)),  # padding beyond the kernel: rows of bias alone
    (1, 2, 3, 9, 4, (3, 2), (2, 1), (3, 0)),
    (2, 3, 2, 1, 4, (1, 1), (10, 1), (5, 0)),  # every window misses the image
    (1, 3, 3, 8, 8, (7, 7), (1, 1), (0, 0)),  # fc6-like
    (1, 4, 2, 6, 9, (3, 2), (1, 1), (2, 0)),  # stride 1, narrowing, non-square kernel
    (1, 256, 256, 9, 11, (3, 3), (1, 1), (1, 1)),  # enough channels: Winograd's forward
]
RANDOM = [(g["n"], g["c_in"], g["c_out"], g["h"], g["w"], g["kernel"], g["stride"], g["padding"])
          for g in random_geometries(seed=71, count=24)]


def run_conv(ops, geo, dtype, input_grad=True, weight_grad=True, seed=0):
    n, c_in, c_out, h, w, kernel, stride, padding = geo
    x, weight, bias = arrays((n, c_in, h, w), (c_out, c_in) + kernel, dtype, seed)
    out, cache = ops.conv2d_forward(x, weight, bias, stride, padding)
    dout = np.random.default_rng(seed + 1).standard_normal(out.shape).astype(dtype)
    return (out,) + tuple(ops.conv2d_backward(dout, cache, input_grad, weight_grad))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("geo", ROUTED + RANDOM, ids=str)
def test_conv2d(geo, dtype):
    for got, ref, what in zip(run_conv(engine, geo, dtype), run_conv(book, geo, dtype),
                              ("out", "dx", "dweight", "dbias")):
        assert_same(got, ref, what)


@pytest.mark.parametrize("geo", ROUTED[:4] + RANDOM[:4], ids=str)
@pytest.mark.parametrize("flags", [(False, True), (True, False), (False, False)])
def test_conv2d_skipped_gradients(geo, flags):
    for got, ref in zip(run_conv(engine, geo, np.float64, *flags), run_conv(book, geo, np.float64, *flags)):
        assert_same(got, ref)


def test_conv2d_on_several_threads(monkeypatch):
    monkeypatch.setenv("MINIFCN_NUM_THREADS", "3")  # blocks of channels: uneven, some empty
    for geo in ROUTED[:3]:
        for got, ref in zip(run_conv(engine, geo, np.float32), run_conv(book, geo, np.float32)):
            assert_same(got, ref)


def test_the_geometries_reach_every_route():
    routes, most_bands = set(), 0
    for n, c_in, c_out, h, w, kernel, stride, padding in ROUTED:
        weight = np.empty((c_out, c_in) + kernel)
        routes.add(engine_conv.backward_route(weight, stride, padding))
        x = np.empty((n, c_in, h, w))
        most_bands = max(most_bands, len(list(bands.column_bands(x, weight, stride, padding, unfold=False))))
    assert routes == {stride1_backward, engine_conv.banded_backward}
    assert any(winograd_pays(np.empty((c_out, c_in) + kernel), stride, padding)
               for _, c_in, c_out, _, _, kernel, stride, padding in ROUTED)
    assert most_bands >= 3
    assert bands.is_pointwise(np.empty((5, 6, 1, 1)), 1, 0)
    assert bands.image_rows(1, 1, 10, 5, 2) == (1, 1)  # ROUTED[6]: no row sees the image


@pytest.mark.parametrize("shape", [(2, 4, 3, 50), (1, 64, 27, 40), (3, 7, 700, 20), (1, 300, 70, 7)])
def test_conv_weight_grad_in_either_orientation(shape):
    n, c_out, k, length = shape
    rng = np.random.default_rng(0)
    dout, cols = rng.standard_normal((n, c_out, length)), rng.standard_normal((n, k, length))
    assert_same(engine.conv_weight_grad(dout, cols), book.conv_weight_grad(dout, cols))


# ---- im2col and col2im -------------------------------------------------------------------

LARGE_KERNELS = [(1, 2, 19, 11, (8, 16), (4, 8), (0, 4)), (2, 1, 12, 12, (4, 4), (4, 4), (1, 0)),
                 (1, 1, 40, 9, (32, 5), (16, 1), (3, 2)), (1, 3, 70, 70, (16, 16), (8, 8), (0, 0))]
UNFOLDS = [(g["n"], g["c_in"], g["h"], g["w"], g["kernel"], g["stride"], g["padding"])
           for g in random_geometries(seed=72, count=20)] + LARGE_KERNELS


@pytest.mark.parametrize("geo", UNFOLDS, ids=str)
def test_im2col_and_col2im(geo):
    n, c, h, w, kernel, stride, padding = geo
    x = np.random.default_rng(1).standard_normal((n, c, h, w))
    cols = book.im2col(x, kernel, stride, padding)
    np.testing.assert_array_equal(engine.im2col(x, kernel, stride, padding), cols)  # copies
    y = np.random.default_rng(2).standard_normal(cols.shape)
    folded = book.col2im(y, x.shape, kernel, stride, padding)
    assert_same(engine.col2im(y, x.shape, kernel, stride, padding), folded)
    start = np.random.default_rng(3).standard_normal(x.shape)
    out = start.copy()  # the engine's out=: adds the fold into an image
    assert engine.col2im(y, x.shape, kernel, stride, padding, out=out) is out
    assert_same(out, start + folded)
    buffer = np.empty(cols.shape)  # the engine's out=: unfolds into a kept buffer
    assert engine.im2col(x, kernel, stride, padding, out=buffer) is not None
    np.testing.assert_array_equal(buffer, cols)


def test_the_large_kernels_take_the_phase_fold():
    taken = {engine_im2col.col2im_route(np, k, s, np.float64) for *_, k, s, _ in LARGE_KERNELS}
    assert engine_im2col._col2im_phases in taken
    assert engine_im2col.col2im_route(np, (4, 4), (2, 2), np.float32) is engine_im2col._col2im_slices


def test_out_arguments_are_checked():
    x = np.zeros((2, 3, 5, 4))
    with pytest.raises(ValueError, match=r"shape \(2, 27, 20\), found float64 \(2, 27, 19\)"):
        engine.im2col(x, 3, 1, 1, out=np.empty((2, 27, 19)))
    with pytest.raises(ValueError, match=r"out has shape \(2, 3, 5, 3\), expected \(2, 3, 5, 4\)"):
        engine.col2im(np.zeros((2, 27, 20)), x.shape, 3, 1, 1, out=np.zeros((2, 3, 5, 3)))


# ---- transposed convolution --------------------------------------------------------------

def separable_weight(channels, kernel, rng):
    """Channel-diagonal weight whose kernels are random outer products (not bilinear)."""
    weight = np.zeros((channels, channels) + kernel)
    for c in range(channels):
        weight[c, c] = np.outer(rng.standard_normal(kernel[0]), rng.standard_normal(kernel[1]))
    return weight


def transposed_cases():
    """(name, x, weight, bias, stride, padding, output_padding)."""
    rng = np.random.default_rng(5)
    for k, g in enumerate(random_geometries(seed=73, count=16)):
        x = rng.standard_normal((g["n"], g["c_in"], g["h"], g["w"]))
        weight = rng.standard_normal((g["c_in"], g["c_out"]) + g["kernel"])
        output_padding = tuple(int(rng.integers(0, s)) for s in g["stride"])
        yield f"random{k}", x, weight, rng.standard_normal(g["c_out"]), g["stride"], g["padding"], output_padding
    for kernel, stride in [(4, 2), (16, 8), (32, 16), (64, 32)]:  # FCN's upsamplers
        x = rng.standard_normal((2, 3, 5, 4))
        bilinear = bilinear_upsampling_weight(3, kernel, np.float64)
        yield f"bilinear k{kernel}", x, bilinear, None, stride, 0, 0
        learned = bilinear + 0.01 * rng.standard_normal(bilinear.shape)  # off the separable route
        yield f"learned k{kernel}", x, learned, None, stride, 0, 0
    for kernel, stride, padding, output_padding in [((5, 3), (3, 2), (1, 2), (2, 1)),
                                                    ((3, 4), (1, 3), (2, 0), (0, 2))]:
        x = rng.standard_normal((2, 2, 4, 3))
        yield f"separable {kernel}", x, separable_weight(2, kernel, rng), rng.standard_normal(2), \
            stride, padding, output_padding


TRANSPOSED = list(transposed_cases())


def run_transposed(ops, case, dtype, weight_grad=True):
    _, x, weight, bias, stride, padding, output_padding = case
    x, weight = x.astype(dtype), weight.astype(dtype)
    bias = None if bias is None else bias.astype(dtype)
    out, cache = ops.conv_transpose2d_forward(x, weight, bias, stride, padding, output_padding)
    dout = np.random.default_rng(6).standard_normal(out.shape).astype(dtype)
    return (out,) + tuple(ops.conv_transpose2d_backward(dout, cache, True, weight_grad))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", TRANSPOSED, ids=[c[0] for c in TRANSPOSED])
def test_conv_transpose2d(case, dtype):
    for got, ref, what in zip(run_transposed(engine, case, dtype), run_transposed(book, case, dtype),
                              ("out", "dx", "dweight", "dbias")):
        assert_same(got, ref, what)


@pytest.mark.parametrize("case", [c for c in TRANSPOSED if c[0].startswith("bilinear")],
                         ids=lambda c: c[0])
def test_frozen_upsamplers(case):
    # FCN's fixed upsamplers: no weight gradient, the input gradient by the separable route
    engine_result = run_transposed(engine, case, np.float64, weight_grad=False)
    assert engine_result[2] is None
    for got, ref in zip(engine_result, run_transposed(book, case, np.float64, weight_grad=False)):
        assert_same(got, ref)


def test_the_transposed_cases_reach_both_routes():
    forward = {engine_conv_transpose.forward_route(c[2]) for c in TRANSPOSED}
    backward = {engine_conv_transpose.backward_route(c[2]) for c in TRANSPOSED}
    assert forward == {engine_conv_transpose.columns_forward, engine.separable.separable_upsample_forward}
    assert backward == {engine_conv_transpose.columns_backward, engine.separable.separable_upsample_backward}


# ---- max-pooling and ReLU ----------------------------------------------------------------

POOLS = [((2, 3, 8, 10), 2, 2, 0, True),  # tiles exactly: the engine writes each slice once
         ((2, 3, 9, 7), 2, 2, 0, True),  # ceil overhang, no canvas in the engine
         ((1, 2, 9, 9), 3, 2, 1, False),  # padding, overlapping windows
         ((1, 2, 7, 8), 3, 2, 1, True),  # padding and an overhang
         ((2, 2, 10, 7), (3, 2), (2, 3), (1, 0), True),
         ((3, 1, 9, 11), 3, 1, 1, False),  # stride 1: heavy overlap
         ((2, 2, 1, 1), 2, 2, 0, True),  # a 1x1 map
         ((1, 64, 97, 83), 2, 2, 0, True)]  # large enough for several threads


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("cfg", POOLS, ids=str)
@pytest.mark.parametrize("block", [None, 1, 2], ids=["blocks", "1-channel", "2-channel"])
def test_max_pool2d(cfg, ties, dtype, block, monkeypatch):
    monkeypatch.setenv("MINIFCN_NUM_THREADS", "3")
    shape, k, s, p, ceil = cfg
    x = well_separated(np.random.default_rng(3), shape).astype(dtype)
    if block:  # each thread walks its channels in blocks of 1 or 2 (uneven at the end)
        h, w = engine.max_pool2d_forward(x, k, s, p, ceil)[1][1].shape[2:]  # with its canvas
        monkeypatch.setattr(engine_pool, "BLOCK_BYTES", block * shape[0] * h * w * x.itemsize)
    if ties:  # a third of the pixels share one value, as after a ReLU: the tie rule decides
        x = np.maximum(x, np.quantile(x, 1 / 3)).astype(dtype)
    dout = None
    for ops in (book, engine):
        out, cache = ops.max_pool2d_forward(x, k, s, p, ceil)
        dout = np.random.default_rng(4).standard_normal(out.shape).astype(dtype) if dout is None else dout
        if ops is book:
            ref = (out, ops.max_pool2d_backward(dout, cache))
        else:
            for got, want in zip((out, ops.max_pool2d_backward(dout, cache)), ref):
                assert_same(got, want)


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (7,), (1, 64, 120, 100)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_relu(shape, dtype, monkeypatch):
    monkeypatch.setenv("MINIFCN_NUM_THREADS", "3")
    x = np.random.default_rng(5).standard_normal(shape).astype(dtype)
    dout = np.random.default_rng(6).standard_normal(shape).astype(dtype)
    out, mask = book.relu_forward(x)
    dx = book.relu_backward(dout, mask)
    got, got_mask = engine.relu_forward(x)
    np.testing.assert_array_equal(got, out)
    np.testing.assert_array_equal(got_mask, mask)
    np.testing.assert_array_equal(engine.relu_backward(dout, got_mask), dx)
    y, d = x.copy(), dout.copy()  # in place: the same numbers, in the input's own memory
    got, got_mask = engine.relu_forward(y, inplace=True)
    assert got is y and np.array_equal(y, out) and np.array_equal(got_mask, mask)
    assert engine.relu_backward(d, got_mask, inplace=True) is d and np.array_equal(d, dx)
    assert engine.relu_forward(x, mask=False)[1] is None  # no backward to follow


# ---- whole networks ----------------------------------------------------------------------

def run_network(variant, ops, dtype, upsamplers):
    rng = np.random.default_rng(7)
    model = MODELS[variant](num_classes=3, width=1 / 32, dropout=0.5, learn_upsampling=True,
                            dtype=dtype, seed=1, ops=ops).train()
    for name, p in model.named_parameters():  # no gradient trivially zero (zero scorers)
        if name.startswith("score") or (name.startswith("upscore") and upsamplers == "learned"):
            p.data = (p.data + 0.1 * rng.standard_normal(p.shape)).astype(dtype)
    x = rng.standard_normal((2, 3, 23, 19)).astype(dtype)
    labels = rng.integers(0, 3, (2, 23, 19))
    scores = model(x)
    loss, cache = book.softmax_cross_entropy_forward(scores, labels)
    dx = model.backward(book.softmax_cross_entropy_backward(1.0, cache))
    return [("scores", scores), ("dx", dx)] + [(n, p.grad) for n, p in model.named_parameters()]


@pytest.mark.parametrize("variant,upsamplers,dtype", [
    ("fcn32s", "bilinear", np.float64), ("fcn16s", "learned", np.float64),
    ("fcn8s", "bilinear", np.float64), ("fcn8s", "learned", np.float64),
    ("fcn8s-atonce", "bilinear", np.float64), ("fcn32s", "learned", np.float32),
    ("fcn8s", "bilinear", np.float32)])
def test_whole_networks_book_vs_engine(variant, upsamplers, dtype):
    # same seed, same parameters; dropout on (the layers draw the same masks either way)
    ref, got = run_network(variant, "book", dtype, upsamplers), run_network(variant, "engine", dtype, upsamplers)
    assert [n for n, _ in got] == [n for n, _ in ref]
    for (name, a), (_, b) in zip(got, ref):
        assert_same(a, b, name)

"""The memory- and speed-minded paths give the results of the plain ones.

The convolution walks its output in bands of rows (``column_bands``) and recomputes its
columns in backward; these tests force bands of a single row (``CHUNK_BYTES = 1``) and
compare with one band over everything, and with the loop twins. Timing is never asserted
here: that is ``python -m benchmarks.run``'s job.
"""
import numpy as np
import pytest

from minifcn.models import FCN8s
from minifcn.ops import (conv2d_backward, conv2d_backward_naive, conv2d_forward, conv2d_naive,
                         conv_transpose2d_backward, conv_transpose2d_forward, im2col,
                         max_pool2d_backward, max_pool2d_backward_naive, max_pool2d_forward,
                         max_pool2d_naive, max_pool2d_pinned, softmax_cross_entropy_backward,
                         softmax_cross_entropy_forward)
from minifcn.ops import conv as conv_module
from minifcn.ops.conv import band_rows, column_bands, conv_weight_grad
from tests.conftest import random_geometries

# odd sizes, strides, and paddings larger than the kernel (bands that lie wholly in the padding)
GEOMETRIES = list(random_geometries(seed=11, count=12)) + [
    dict(n=2, c_in=3, c_out=4, h=5, w=6, kernel=(3, 3), stride=(1, 1), padding=(7, 4)),
    dict(n=1, c_in=2, c_out=3, h=9, w=4, kernel=(3, 2), stride=(2, 1), padding=(3, 0)),
    dict(n=2, c_in=4, c_out=2, h=6, w=7, kernel=(1, 1), stride=(1, 1), padding=(0, 0)),
    dict(n=1, c_in=3, c_out=5, h=8, w=8, kernel=(7, 7), stride=(1, 1), padding=(0, 0)),
]


@pytest.fixture
def one_row_bands(monkeypatch):
    """Bands of one output row each (the weight bound is lifted as well)."""
    monkeypatch.setattr(conv_module, "CHUNK_BYTES", 1)
    monkeypatch.setattr(conv_module, "band_rows", lambda *args: 1)


def _arrays(geo, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((geo["n"], geo["c_in"], geo["h"], geo["w"])).astype(dtype)
    w = rng.standard_normal((geo["c_out"], geo["c_in"]) + geo["kernel"]).astype(dtype)
    b = rng.standard_normal(geo["c_out"]).astype(dtype)
    return x, w, b


def _run(geo, x, w, b, seed=1):
    out, cache = conv2d_forward(x, w, b, geo["stride"], geo["padding"])
    dout = np.random.default_rng(seed).standard_normal(out.shape).astype(x.dtype)
    return (out,) + conv2d_backward(dout, cache), dout


@pytest.mark.parametrize("geo", GEOMETRIES, ids=str)
def test_one_row_bands_equal_one_band_in_float32(geo, monkeypatch):
    x, w, b = _arrays(geo, np.float32)
    monkeypatch.setattr(conv_module, "CHUNK_BYTES", 2**40)  # one band over everything
    whole, _ = _run(geo, x, w, b)
    monkeypatch.setattr(conv_module, "band_rows", lambda *args: 1)
    banded, _ = _run(geo, x, w, b)
    for name, got, ref in zip(("out", "dx", "dweight", "dbias"), banded, whole):
        scale = float(np.abs(ref).max()) or 1.0
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * scale, err_msg=name)
        assert got.dtype == np.float32 and got.shape == ref.shape


@pytest.mark.parametrize("geo", GEOMETRIES, ids=str)
def test_one_row_bands_match_the_loop_twins(geo, one_row_bands):
    x, w, b = _arrays(geo, np.float64)
    (out, dx, dw, db), dout = _run(geo, x, w, b)
    np.testing.assert_allclose(out, conv2d_naive(x, w, b, geo["stride"], geo["padding"]), atol=1e-12)
    for got, ref in zip((dx, dw, db), conv2d_backward_naive(dout, x, w, geo["stride"], geo["padding"])):
        np.testing.assert_allclose(got, ref, atol=1e-12)


@pytest.mark.parametrize("geo", GEOMETRIES, ids=str)
def test_bands_tile_the_output_and_concatenate_to_im2col(geo, one_row_bands):
    x, w, _ = _arrays(geo, np.float64)
    sh, sw = geo["stride"]
    ph, pw = geo["padding"]
    kh = geo["kernel"][0]
    bands = list(column_bands(x, w, (sh, sw), (ph, pw)))
    whole = im2col(x, geo["kernel"], (sh, sw), (ph, pw))
    out_h = (geo["h"] + 2 * ph - kh) // sh + 1
    out_w = whole.shape[2] // out_h
    # the rows whose windows see the image: those with a nonzero column in an all-ones image
    ones = im2col(np.ones_like(x), geo["kernel"], (sh, sw), (ph, pw)).reshape(x.shape[0], -1, out_h, out_w)
    seen = [r for r in range(out_h) if ones[:, :, r].any()]
    rows = [r for out_rows, _, _ in bands for r in range(out_rows.start, out_rows.stop)]
    if not conv_module.is_pointwise(w, (sh, sw), (ph, pw)):  # a 1x1 layer is one band
        assert rows == seen  # each of those rows once, in order, and no other
        np.testing.assert_array_equal(np.concatenate([c for _, _, c in bands], axis=2),
                                      whole[:, :, seen[0] * out_w:(seen[-1] + 1) * out_w])
        assert not whole[:, :, :seen[0] * out_w].any() and not whole[:, :, (seen[-1] + 1) * out_w:].any()
        for out_rows, in_rows, _ in bands:  # the padded input rows that band reads
            assert (in_rows.start, in_rows.stop) == (out_rows.start * sh, (out_rows.stop - 1) * sh + kh)
    else:
        np.testing.assert_array_equal(bands[0][2], whole)


@pytest.mark.parametrize("geo", GEOMETRIES[:6] + GEOMETRIES[-4:], ids=str)
def test_reused_bands_hold_the_same_columns_until_the_next_band(geo, one_row_bands):
    x, w, _ = _arrays(geo, np.float64)
    args = (x, w, geo["stride"], geo["padding"])
    kept = list(column_bands(*args))
    reused = [(r, i, c.copy(), c) for r, i, c in column_bands(*args, reuse=True)]
    assert len(reused) == len(kept)
    for (rows, in_rows, cols), (rows_r, in_rows_r, copied, _) in zip(kept, reused):
        assert (rows, in_rows) == (rows_r, in_rows_r)
        np.testing.assert_array_equal(copied, cols)
    if len(reused) > 1 and not conv_module.is_pointwise(w, geo["stride"], geo["padding"]):
        assert np.shares_memory(reused[0][3], reused[-1][3])  # one buffer for every band


def test_scratch_buffers_are_kept_per_name_and_thread(monkeypatch):
    import threading

    a = conv_module.scratch("test-a", (2, 3, 4), np.float32, np)
    again = conv_module.scratch("test-a", (3, 5), np.float32, np)  # smaller: the same memory
    assert again.shape == (3, 5) and again.flags.c_contiguous and np.shares_memory(a, again)
    assert not np.shares_memory(a, conv_module.scratch("test-b", (2, 3, 4), np.float32, np))
    assert not np.shares_memory(a, conv_module.scratch("test-a", (2, 3, 4), np.float64, np))
    grown = conv_module.scratch("test-a", (100,), np.float32, np)  # larger: a new buffer
    assert grown.shape == (100,) and np.shares_memory(grown, conv_module.scratch("test-a", (7,), np.float32, np))
    other = []
    thread = threading.Thread(target=lambda: other.append(conv_module.scratch("test-a", (7,), np.float32, np)))
    thread.start()
    thread.join()
    assert not np.shares_memory(other[0], grown)
    monkeypatch.setattr(conv_module, "SCRATCH_MAX_BYTES", 64)
    big = conv_module.scratch("test-a", (17,), np.float32, np)  # 68 bytes: not kept
    assert not np.shares_memory(big, conv_module.scratch("test-a", (17,), np.float32, np))


def test_im2col_writes_into_out_and_names_a_wrong_buffer(rng):
    x = rng.standard_normal((2, 3, 5, 4))
    out = np.empty((2, 27, 20))
    cols = im2col(x, 3, 1, 1, out=out)
    assert np.shares_memory(cols, out)
    np.testing.assert_array_equal(out, im2col(x, 3, 1, 1))
    with pytest.raises(ValueError, match=r"shape \(2, 27, 20\), found float64 \(2, 27, 19\)"):
        im2col(x, 3, 1, 1, out=np.empty((2, 27, 19)))
    with pytest.raises(ValueError, match="float32"):
        im2col(x, 3, 1, 1, out=np.empty((2, 27, 20), dtype=np.float32))


def test_a_convolution_whose_windows_all_miss_the_image(rng):
    # stride 10 over a 1-row image padded by 5: both output rows read padding only
    x, w, b = rng.standard_normal((2, 3, 1, 4)), rng.standard_normal((2, 3, 1, 1)), rng.standard_normal(2)
    out, cache = conv2d_forward(x, w, b, (10, 1), (5, 0))
    np.testing.assert_array_equal(out, conv2d_naive(x, w, b, (10, 1), (5, 0)))
    assert out.shape == (2, 2, 2, 4) and np.all(out == b[None, :, None, None])
    dout = rng.standard_normal(out.shape)
    for got, ref in zip(conv2d_backward(dout, cache), conv2d_backward_naive(dout, x, w, (10, 1), (5, 0))):
        np.testing.assert_allclose(got, ref, atol=1e-12)


def test_the_cache_keeps_the_input_not_its_columns(rng):
    x = rng.standard_normal((1, 8, 30, 30)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    _, cache = conv2d_forward(x, w, None, 1, 1)
    assert cache[0] is x  # no copy
    biggest = max(a.nbytes for a in cache if isinstance(a, np.ndarray))
    assert biggest == x.nbytes  # the columns (9 times x) are not kept


def test_band_height_follows_the_chunk_and_the_weight():
    # the demo's conv1_2 (batch 4, 36 x 232 floats per output row): bands of CHUNK_BYTES
    assert band_rows(4, 36, 232, 232, 4 * 36 * 4, 4) == conv_module.CHUNK_BYTES // (4 * 36 * 232 * 4)
    # conv1_2 at 500x500: 576 x 698 floats (1.6 MB) per output row: the row floor, not 2 rows
    assert band_rows(1, 576, 698, 698, 64 * 576 * 4, 4) == conv_module.MIN_BAND_ROWS
    # rows of 20 MB each: the floor gives way to the memory bound
    assert band_rows(1, 5 * 2**20, 100, 1, 4, 4) == 8 * conv_module.CHUNK_BYTES // (20 * 2**20)
    # fc6 at 500x500: a 411 MB weight keeps its 16-row output in one band
    assert band_rows(1, 25088, 16, 16, 4096 * 25088 * 4, 4) == 16
    assert band_rows(1, 10**9, 5, 5, 4, 4) == 1  # at least one row


# stride 1, C_out <= C_in: both gradients from one unfolding of dout (stride1_backward)
FLIPPED = [
    dict(n=2, c_in=3, c_out=3, h=7, w=5, kernel=(3, 3), stride=(1, 1), padding=(1, 1)),
    dict(n=1, c_in=4, c_out=2, h=6, w=9, kernel=(3, 2), stride=(1, 1), padding=(2, 0)),
    dict(n=3, c_in=5, c_out=1, h=5, w=4, kernel=(1, 4), stride=(1, 1), padding=(0, 3)),
    dict(n=1, c_in=2, c_out=2, h=3, w=3, kernel=(3, 3), stride=(1, 1), padding=(0, 0)),
    dict(n=1, c_in=3, c_out=3, h=4, w=6, kernel=(2, 2), stride=(1, 1), padding=(1, 0)),
]


@pytest.mark.parametrize("geo", FLIPPED, ids=str)
def test_gradients_from_dout_columns_match_the_loop_twin(geo, monkeypatch):
    def no_fold(*args, **kwargs):
        raise AssertionError("col2im was used")

    monkeypatch.setattr(conv_module, "col2im", no_fold)  # this geometry must take the new path
    x, w, b = _arrays(geo, np.float64)
    (_, dx, dw, db), dout = _run(geo, x, w, b)
    for got, ref in zip((dx, dw, db), conv2d_backward_naive(dout, x, w, geo["stride"], geo["padding"])):
        np.testing.assert_allclose(got, ref, atol=1e-12)
    # a frozen weight: the input gradient alone
    dx_alone, none = conv_module.stride1_backward(dout, x, w, geo["padding"], weight_grad=False)
    np.testing.assert_allclose(dx_alone, dx, atol=1e-12)
    assert none is None


def test_widening_strided_or_1x1_layers_keep_col2im(monkeypatch):
    calls = []
    monkeypatch.setattr(conv_module, "stride1_backward", lambda *a: calls.append(a))
    for geo in (dict(n=1, c_in=2, c_out=3, h=5, w=5, kernel=(3, 3), stride=(1, 1), padding=(1, 1)),
                dict(n=1, c_in=3, c_out=2, h=7, w=7, kernel=(3, 3), stride=(2, 1), padding=(1, 1)),
                dict(n=1, c_in=3, c_out=2, h=7, w=7, kernel=(3, 3), stride=(1, 1), padding=(3, 0)),
                dict(n=2, c_in=6, c_out=6, h=3, w=4, kernel=(1, 1), stride=(1, 1), padding=(0, 0))):
        x, w, b = _arrays(geo, np.float64)
        (_, dx, _, _), dout = _run(geo, x, w, b)
        np.testing.assert_allclose(dx, conv2d_backward_naive(dout, x, w, geo["stride"], geo["padding"])[0],
                                   atol=1e-12)
    assert calls == []


@pytest.mark.parametrize("shape", [(2, 4, 3, 50), (1, 64, 27, 40), (3, 512, 700, 20), (1, 4096, 300, 7)])
def test_conv_weight_grad_either_orientation(shape):
    n, c_out, k, length = shape
    rng = np.random.default_rng(0)
    dout, cols = rng.standard_normal((n, c_out, length)), rng.standard_normal((n, k, length))
    expected = sum(dout[i] @ cols[i].T for i in range(n))
    np.testing.assert_allclose(conv_weight_grad(dout, cols), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,k,s,p,ceil,canvas", [
    ((2, 3, 8, 10), 2, 2, 0, True, False),  # tiles exactly: backward writes each slice once
    ((2, 3, 9, 7), 2, 2, 0, True, False),  # ceil overhang: the last offsets reach fewer windows
    ((1, 2, 9, 9), 3, 2, 1, False, True),  # padding (-inf canvas), overlapping windows
    ((1, 2, 7, 8), 3, 2, 1, True, True),  # padding and a ceil overhang
])
@pytest.mark.parametrize("ties", [False, True])
def test_pool_paths_match_the_loop_twins(shape, k, s, p, ceil, canvas, ties):
    from minifcn.gradcheck import well_separated

    x = well_separated(np.random.default_rng(3), shape).astype(np.float32)
    if ties:  # a third of the pixels share one value, as after a ReLU
        x = np.maximum(x, np.quantile(x, 1 / 3)).astype(np.float32)
    out, cache = max_pool2d_forward(x, k, s, p, ceil)
    np.testing.assert_array_equal(out, max_pool2d_naive(x, k, s, p, ceil))
    assert (cache[1] is not x) == canvas  # without a canvas the cache refers to x, no copy
    dout = np.random.default_rng(4).standard_normal(out.shape).astype(np.float32)
    np.testing.assert_allclose(max_pool2d_backward(dout, cache),
                               max_pool2d_backward_naive(dout, x, k, s, p, ceil), atol=1e-6)
    np.testing.assert_array_equal(max_pool2d_pinned(x, cache), out)


def test_transposed_conv_weight_grad_through_the_new_orientation(rng):
    # conv_transpose2d shares conv_weight_grad; its result may be a transposed view
    x = rng.standard_normal((2, 3, 5, 4))
    w = rng.standard_normal((3, 2, 4, 4))
    out, cache = conv_transpose2d_forward(x, w, None, 2)
    dout = rng.standard_normal(out.shape)
    _, dw, _ = conv_transpose2d_backward(dout, cache)
    assert dw.shape == w.shape and dw.flags.c_contiguous
    # d<out, dout>/dw[i, o, a, b] = sum over pixels of x[n, i, h, w] * dout[n, o, 2h + a, 2w + b]
    ref = np.zeros_like(w)
    for a in range(4):
        for b in range(4):
            window = dout[:, :, a:a + 2 * 5 - 1:2, b:b + 2 * 4 - 1:2]  # (N, C_out, H, W)
            ref[:, :, a, b] = np.einsum("nihw,nohw->io", x, window)
    np.testing.assert_allclose(dw, ref, atol=1e-12)


def test_fcn8s_with_one_row_bands_equals_the_default(monkeypatch):
    rng = np.random.default_rng(0)
    model = FCN8s(num_classes=3, width=1 / 32, dropout=0.0, learn_upsampling=True, seed=1).train()
    for name in ("score_fr", "score_pool4", "score_pool3"):
        model.layers[name].weight.data = rng.standard_normal(model.layers[name].weight.shape).astype(np.float32)
    x = rng.standard_normal((2, 3, 37, 29)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 37, 29))

    def run():
        scores = model(x)
        _, cache = softmax_cross_entropy_forward(scores, labels)
        dx = model.backward(softmax_cross_entropy_backward(1.0, cache))
        return [scores, dx] + [p.grad.copy() for p in model.parameters()]

    default = run()
    monkeypatch.setattr(conv_module, "band_rows", lambda *args: 1)
    banded = run()
    for got, ref in zip(banded, default):
        scale = float(np.abs(ref).max()) or 1.0
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("geo", GEOMETRIES[:6], ids=str)
def test_skipped_gradients_leave_the_others_unchanged(geo):
    x, w, b = _arrays(geo, np.float64)
    (_, dx, dw, db), dout = _run(geo, x, w, b)
    cache = conv2d_forward(x, w, b, geo["stride"], geo["padding"])[1]
    no_dx = conv2d_backward(dout, cache, input_grad=False)
    no_dw = conv2d_backward(dout, cache, weight_grad=False)
    assert no_dx[0] is None and no_dw[1] is None
    np.testing.assert_allclose(no_dx[1], dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(no_dw[0], dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(no_dx[2], db)


def test_training_backward_skips_the_image_gradient_and_frozen_upsamplers(monkeypatch):
    rng = np.random.default_rng(2)
    model = FCN8s(num_classes=3, width=1 / 32, dropout=0.0, seed=1).train()
    model.layers["score_fr"].weight.data = rng.standard_normal(model.score_fr.weight.shape).astype(np.float32)
    x = rng.standard_normal((2, 3, 37, 29)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 37, 29))
    scores = model(x)
    dscore = softmax_cross_entropy_backward(1.0, softmax_cross_entropy_forward(scores, labels)[1])
    dx = model.backward(dscore)
    grads = {name: p.grad.copy() for name, p in model.named_parameters() if p.requires_grad}
    assert dx.shape == x.shape and np.abs(dx).max() > 0
    assert all(model.layers[n].weight.grad is None for n in ("upscore2", "upscore_pool4", "upscore8"))
    for p in model.parameters():
        p.grad = None
    assert model.backward(dscore, input_grad=False) is None
    for name, p in model.named_parameters():
        if p.requires_grad:
            np.testing.assert_array_equal(p.grad, grads[name], err_msg=name)


@pytest.fixture
def many_threads(monkeypatch):
    """Every job split among 3 threads, however small (channel counts 1-5 give empty,
    single and uneven blocks)."""
    monkeypatch.setattr("minifcn.ops._threads.MIN_BYTES", 0)
    monkeypatch.setenv("MINIFCN_NUM_THREADS", "3")


@pytest.mark.parametrize("geo", list(random_geometries(seed=61, count=8)), ids=str)
def test_threaded_im2col_col2im_and_conv_are_bit_for_bit(geo, many_threads, monkeypatch):
    from minifcn.ops import col2im, col2im_naive, im2col_naive

    rng = np.random.default_rng(7)
    x = rng.standard_normal((geo["n"], geo["c_in"], geo["h"], geo["w"])).astype(np.float32)
    args = (geo["kernel"], geo["stride"], geo["padding"])
    threaded = im2col(x, *args)
    np.testing.assert_array_equal(threaded, im2col_naive(x, *args))
    folded = col2im(threaded, x.shape, *args)
    np.testing.assert_allclose(folded, col2im_naive(threaded, x.shape, *args), rtol=1e-6, atol=1e-6)
    monkeypatch.setenv("MINIFCN_NUM_THREADS", "1")
    np.testing.assert_array_equal(folded, col2im(threaded, x.shape, *args))


@pytest.mark.parametrize("shape,k,s,p,ceil", [
    ((2, 5, 8, 10), 2, 2, 0, True), ((1, 4, 9, 7), 2, 2, 0, True), ((2, 1, 9, 9), 3, 2, 1, False),
])
def test_threaded_pool_and_relu_are_bit_for_bit(shape, k, s, p, ceil, many_threads, monkeypatch):
    from minifcn.gradcheck import well_separated
    from minifcn.ops import relu_backward, relu_forward

    x = well_separated(np.random.default_rng(8), shape).astype(np.float32)
    out, cache = max_pool2d_forward(x, k, s, p, ceil)
    dout = np.random.default_rng(9).standard_normal(out.shape).astype(np.float32)
    dx = max_pool2d_backward(dout, cache)
    np.testing.assert_array_equal(out, max_pool2d_naive(x, k, s, p, ceil))
    np.testing.assert_allclose(dx, max_pool2d_backward_naive(dout, x, k, s, p, ceil), atol=1e-6)
    r, mask = relu_forward(x)
    dr = relu_backward(x, mask)
    np.testing.assert_array_equal(r, np.maximum(x, 0))
    np.testing.assert_array_equal(dr, x * (x > 0))
    monkeypatch.setenv("MINIFCN_NUM_THREADS", "1")
    out1, cache1 = max_pool2d_forward(x, k, s, p, ceil)
    np.testing.assert_array_equal(out, out1)
    np.testing.assert_array_equal(cache[2], cache1[2])
    np.testing.assert_array_equal(dx, max_pool2d_backward(dout, cache1))


def test_thread_count_comes_from_the_environment(monkeypatch):
    from minifcn.ops._threads import num_threads

    for var in ("MINIFCN_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    assert num_threads() == 2
    monkeypatch.setenv("MINIFCN_NUM_THREADS", "5")
    assert num_threads() == 5
    monkeypatch.setenv("MINIFCN_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="MINIFCN_NUM_THREADS='two'"):
        num_threads()


def test_a_worker_exception_reaches_the_caller(many_threads):
    from minifcn.ops._threads import split_work

    done = []

    def fail(c0, c1):  # the first block runs in the calling thread, the others in the pool
        if c0 > 0:
            raise RuntimeError(f"block {c0}:{c1}")
        done.append((c0, c1))

    with pytest.raises(RuntimeError, match="block [24]:[46]"):
        split_work(fail, 6, 1 << 30)
    assert done == [(0, 2)]

"""The engine's parts, each on its own: bands, scratch buffers, threads, col2im's folds, the
gather kernel's C body, the separable factors. (That the engine's ops equal the book's is
tests/test_engine_equivalence.py; timing is ``python -m benchmarks.run``'s job.)"""
import ctypes
import importlib
import inspect
import re
import shutil
import subprocess
import threading

import numpy as np
import pytest

from minifcn import engine
from minifcn.backend import gpu_available
from minifcn.engine import bands, memory, pool
from minifcn.engine.separable import interpolation_matrices, separable_factors
from minifcn.engine.threads import num_threads, split_work
from minifcn.init import bilinear_upsampling_weight
from minifcn.ops import col2im_naive, im2col
from tests.conftest import random_geometries

engine_im2col = importlib.import_module("minifcn.engine.im2col")  # not the function im2col

# (n, c_in, c_out, h, w, kernel, stride, padding): several bands each, at CHUNK_BYTES = 4 MB
BANDED = [(1, 32, 8, 70, 60, (3, 3), (1, 1), (1, 1)), (2, 32, 4, 95, 41, (3, 2), (2, 1), (2, 0)),
          (1, 64, 4, 40, 70, (3, 3), (1, 1), (9, 1))]  # padding beyond the kernel: rows skipped


@pytest.mark.parametrize("geo", BANDED, ids=str)
def test_bands_tile_the_rows_that_see_the_image_and_concatenate_to_im2col(geo):
    n, c_in, c_out, h, w, kernel, stride, padding = geo
    x = np.random.default_rng(0).standard_normal((n, c_in, h, w))
    weight = np.empty((c_out, c_in) + kernel)
    kept = list(bands.column_bands(x, weight, stride, padding))
    assert len(kept) >= 2
    whole = im2col(x, kernel, stride, padding)  # the book's, (N, K, H_out*W_out)
    out_h = (h + 2 * padding[0] - kernel[0]) // stride[0] + 1
    out_w = whole.shape[2] // out_h
    ones = im2col(np.ones_like(x), kernel, stride, padding).reshape(n, -1, out_h, out_w)
    seen = [r for r in range(out_h) if ones[:, :, r].any()]  # rows whose windows see the image
    assert [r for rows, _, _ in kept for r in range(rows.start, rows.stop)] == seen
    np.testing.assert_array_equal(np.concatenate([c for _, _, c in kept], axis=2),
                                  whole[:, :, seen[0] * out_w:(seen[-1] + 1) * out_w])
    for rows, in_rows, _ in kept:  # the padded input rows each band reads
        assert (in_rows.start, in_rows.stop) == (rows.start * stride[0], (rows.stop - 1) * stride[0] + kernel[0])
    reused = [(rows, c.copy(), c) for rows, _, c in bands.column_bands(x, weight, stride, padding, reuse=True)]
    for (_, _, cols), (_, copied, _) in zip(kept, reused):  # the same columns, one buffer
        np.testing.assert_array_equal(copied, cols)
    assert np.shares_memory(reused[0][2], reused[-1][2])


def test_band_height_follows_the_chunk_and_the_weight():
    # the demo's conv1_2 (batch 4, 36 x 232 floats per output row): bands of CHUNK_BYTES
    assert bands.band_rows(4, 36, 232, 232, 4 * 36 * 4, 4) == bands.CHUNK_BYTES // (4 * 36 * 232 * 4)
    # conv1_2 at 500x500: 576 x 698 floats (1.6 MB) per output row: the row floor, not 2 rows
    assert bands.band_rows(1, 576, 698, 698, 64 * 576 * 4, 4) == bands.MIN_BAND_ROWS
    # rows of 20 MB each: the floor gives way to the memory bound
    assert bands.band_rows(1, 5 * 2**20, 100, 1, 4, 4) == 8 * bands.CHUNK_BYTES // (20 * 2**20)
    # fc6 at 500x500: a 411 MB weight keeps its 16-row output in one band
    assert bands.band_rows(1, 25088, 16, 16, 4096 * 25088 * 4, 4) == 16
    assert bands.band_rows(1, 10**9, 5, 5, 4, 4) == 1  # at least one row
    # FCN's conv1_1 at 500x500 (pad 100): 196 of 698 output rows read only padding
    first, last = bands.image_rows(500, 3, 1, 100, 698)
    assert 698 - (last - first) == 196


def test_the_cache_keeps_the_input_not_its_columns(rng):
    x = rng.standard_normal((1, 8, 30, 30)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    _, cache = engine.conv2d_forward(x, w, None, 1, 1)
    assert cache[0] is x  # no copy
    assert max(a.nbytes for a in cache if isinstance(a, np.ndarray)) == x.nbytes  # no columns


def test_scratch_buffers_are_kept_per_name_dtype_and_thread():
    a = memory.scratch("test-a", (2, 3, 4), np.float32, np)
    again = memory.scratch("test-a", (3, 5), np.float32, np)  # smaller: the same memory
    assert again.shape == (3, 5) and again.flags.c_contiguous and np.shares_memory(a, again)
    assert not np.shares_memory(a, memory.scratch("test-b", (2, 3, 4), np.float32, np))
    assert not np.shares_memory(a, memory.scratch("test-a", (2, 3, 4), np.float64, np))
    grown = memory.scratch("test-a", (100,), np.float32, np)  # larger: a new buffer, then kept
    assert np.shares_memory(grown, memory.scratch("test-a", (7,), np.float32, np))
    other = []
    thread = threading.Thread(target=lambda: other.append(memory.scratch("test-a", (7,), np.float32, np)))
    thread.start()
    thread.join()
    assert not np.shares_memory(other[0], grown)
    size = memory.SCRATCH_MAX_BYTES // 4 + 1  # one float32 over the bound: never kept
    assert not np.shares_memory(memory.scratch("test-a", (size,), np.float32, np),
                                memory.scratch("test-a", (size,), np.float32, np))


def test_pooling_blocks_cover_the_channels_once_and_stay_whole_off_the_cpu(monkeypatch):
    monkeypatch.setattr(pool, "BLOCK_BYTES", 3 * 100)
    blocks = list(pool._blocks(5, 16, 100, np))  # three channels of 100 bytes per block
    assert blocks == [slice(5, 8), slice(8, 11), slice(11, 14), slice(14, 16)]
    assert list(pool._blocks(5, 16, 1000, np)) == [slice(b, b + 1) for b in range(5, 16)]
    assert list(pool._blocks(5, 16, 100, object())) == [slice(5, 16)]  # CuPy: one launch each


def test_thread_count_comes_from_the_environment(monkeypatch):
    for var in ("MINIFCN_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    assert num_threads() == 2
    monkeypatch.setenv("MINIFCN_NUM_THREADS", "5")
    assert num_threads() == 5
    monkeypatch.setenv("MINIFCN_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="MINIFCN_NUM_THREADS='two'"):
        num_threads()


def test_split_work_covers_every_item_once_and_passes_on_a_worker_exception(monkeypatch):
    monkeypatch.setenv("MINIFCN_NUM_THREADS", "3")
    seen = []
    split_work(lambda c0, c1: seen.extend(range(c0, c1)), 7, 1 << 30)
    assert sorted(seen) == list(range(7))
    done = []

    def fail(c0, c1):  # the first block runs in the calling thread, the others in the pool
        if c0 > 0:
            raise RuntimeError(f"block {c0}:{c1}")
        done.append((c0, c1))

    with pytest.raises(RuntimeError, match="block [24]:[46]"):
        split_work(fail, 6, 1 << 30)
    assert done == [(0, 2)]


def test_cpu_threads_limits_blas_and_element_wise_threads(monkeypatch):
    from threadpoolctl import threadpool_info

    monkeypatch.setenv("MINIFCN_NUM_THREADS", "2")
    with memory.cpu_threads(1):
        assert num_threads() == 1
        assert all(lib["num_threads"] == 1 for lib in threadpool_info() if lib["user_api"] == "blas")
    assert num_threads() == 2


def test_keep_freed_memory_sets_both_glibc_thresholds(monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: FakeLibc())
    assert memory.keep_freed_memory() is True
    assert calls == [(-3, 32 * 2**20), (-1, 2**31 - 1)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD

    def no_libc(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert memory.keep_freed_memory() is False  # macOS, Windows, musl: nothing to do


# ---- col2im's folds, against the loop twin ------------------------------------------------

GEOMETRIES = list(random_geometries(seed=41, count=12))
LARGE_KERNELS = [dict(n=1, c_in=2, h=19, w=11, kernel=(8, 16), stride=(4, 8), padding=(0, 4)),
                 dict(n=2, c_in=1, h=12, w=12, kernel=(4, 4), stride=(4, 4), padding=(1, 0)),
                 dict(n=1, c_in=1, h=40, w=9, kernel=(32, 5), stride=(16, 1), padding=(3, 2))]


def random_cols(geo, seed):
    shape = (geo["n"], geo["c_in"], geo["h"], geo["w"])
    cols_shape = im2col(np.zeros(shape), geo["kernel"], geo["stride"], geo["padding"]).shape
    return np.random.default_rng(seed).standard_normal(cols_shape), shape


@pytest.mark.parametrize("fold", ["_col2im_phases", "_col2im_slices"])
@pytest.mark.parametrize("geo", GEOMETRIES + LARGE_KERNELS, ids=str)
def test_each_fold_matches_the_loop_twin(geo, fold):
    cols, shape = random_cols(geo, seed=6)
    geometry = engine_im2col._windows(shape[2], shape[3], geo["kernel"], geo["stride"], geo["padding"])
    folded = getattr(engine_im2col, fold)(cols, shape, geometry, None)
    np.testing.assert_allclose(folded, col2im_naive(cols, shape, geo["kernel"], geo["stride"], geo["padding"]),
                               rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def compiled_gather_body(tmp_path_factory):
    """The CuPy kernel's C body, compiled for the CPU with a C compiler (skip if none)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    params = ", ".join(f"int {p}" for p in ("h", "w", "kh", "kw", "sh", "sw", "ph", "pw",
                                             "out_h", "out_w"))
    source = (f"typedef double T;\nvoid gather(const T *cols, T *out, long long size, {params})"
              f" {{\n for (long long i = 0; i < size; ++i) {{\n T img;\n"
              f"{engine_im2col.GATHER_BODY}\n out[i] = img;\n }}\n}}\n")
    folder = tmp_path_factory.mktemp("gather")
    (folder / "gather.c").write_text(source)
    subprocess.run([cc, "-O1", "-shared", "-fPIC", "-o", str(folder / "gather.so"),
                    str(folder / "gather.c")], check=True)
    lib = ctypes.CDLL(str(folder / "gather.so"))
    pointer = np.ctypeslib.ndpointer(np.float64, flags="C_CONTIGUOUS")
    lib.gather.argtypes = [pointer, pointer, ctypes.c_longlong] + [ctypes.c_int] * 10
    return lib.gather


@pytest.mark.parametrize("geo", GEOMETRIES[:8] + LARGE_KERNELS, ids=str)
def test_gpu_gather_body_matches_loop_twin(compiled_gather_body, geo):
    cols, shape = random_cols(geo, seed=8)
    (kh, kw), (sh, sw), (ph, pw) = geo["kernel"], geo["stride"], geo["padding"]
    out_h, out_w = engine_im2col._windows(shape[2], shape[3], (kh, kw), (sh, sw), (ph, pw))[6:]
    out = np.empty(shape)
    compiled_gather_body(np.ascontiguousarray(cols), out, out.size, shape[2], shape[3],
                         kh, kw, sh, sw, ph, pw, out_h, out_w)
    np.testing.assert_allclose(out, col2im_naive(cols, shape, (kh, kw), (sh, sw), (ph, pw)),
                               rtol=1e-12, atol=1e-12)


def test_gpu_gather_path_uses_only_existing_cupy_names():
    cupy = pytest.importorskip("cupy")
    source = inspect.getsource(engine_im2col._col2im_gather)
    source += inspect.getsource(engine_im2col._gather_kernel)
    names = set(re.findall(r"\bxp\.(\w+)", source))
    assert names >= {"empty", "ascontiguousarray", "ElementwiseKernel"}
    assert all(hasattr(cupy, name) for name in names), names
    kernel = engine_im2col._gather_kernel(cupy)  # parses the parameter list; compiles later
    assert kernel.nin == 11 and kernel.nout == 1


@pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a GPU")
def test_gpu_col2im_takes_the_gather_kernel_and_matches_loop_twin():
    import cupy
    for geo in GEOMETRIES[:5] + LARGE_KERNELS:
        cols, shape = random_cols(geo, seed=9)
        fast = engine.col2im(cupy.asarray(cols), shape, geo["kernel"], geo["stride"], geo["padding"])
        slow = col2im_naive(cols, shape, geo["kernel"], geo["stride"], geo["padding"])
        np.testing.assert_allclose(cupy.asnumpy(fast), slow, rtol=1e-12, atol=1e-12)
    assert engine_im2col.col2im_route(cupy, (16, 16), (8, 8), np.float32) is engine_im2col._col2im_gather


# ---- the separable route's parts ----------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_factors_recognise_bilinear_and_refuse_the_rest(dtype):
    bilinear = bilinear_upsampling_weight(4, 16, dtype)
    u, v = separable_factors(bilinear)
    rtol = 4 * np.finfo(dtype).eps  # v is a row divided by the peak: exact up to rounding
    np.testing.assert_allclose(u[:, :, None] * v[:, None, :], bilinear[range(4), range(4)], rtol=rtol)
    mixed = bilinear.copy()
    mixed[0, 1, 3, 3] = 1e-3  # one channel leaks into another
    assert separable_factors(mixed) is None
    full_rank = bilinear.copy()
    full_rank[2, 2, 0, 0] += 1e-3  # one kernel no longer an outer product
    assert separable_factors(full_rank) is None
    assert separable_factors(np.zeros((3, 2, 4, 4), dtype)) is None  # C_in != C_out
    u, v = separable_factors(np.zeros((2, 2, 4, 4), dtype))  # all-zero kernels factor trivially
    assert not u.any() and not v.any()


def test_interpolation_matrix_is_the_one_dimensional_transposed_convolution():
    # column i of the matrix is the kernel placed at i*stride - padding, cut to the output
    taps = np.array([[1.0, 2.0, 3.0]])
    a = interpolation_matrices(taps, size_in=3, size_out=6, stride=2, padding=1)
    expected = np.array([[2, 0, 0], [3, 1, 0], [0, 2, 0], [0, 3, 1], [0, 0, 2], [0, 0, 3]], float)
    np.testing.assert_array_equal(a[0], expected)

"""How should col2im fold columns back onto the image? Slice loop, scatter, or phases.

col2im is the forward pass of every transposed convolution (FCN's ``upscore*`` layers) and
the input gradient of every convolution. Its readable form is one strided slice-add per
kernel offset: ``kh*kw`` vectorised adds, 256 for upscore8 (16x16 kernel) and 4,096 for
FCN-32s' upscore (64x64). This script times, on the FCN shapes at a 500x500 image:

- ``slice``     the per-offset slice loop (the book's ``minifcn.ops.col2im``)
- ``add.at``    one unbuffered scatter, ``np.add.at(x, flat_index, cols)``
- ``bincount``  one scatter as a weighted histogram, ``np.bincount(flat_index, weights=cols)``
- ``phases``    the engine's fold for large kernels: one add per block of ``stride x stride``
                taps, ``ceil(k/s)^2`` adds (4 for every FCN upsampler, whose k is 2s)
- ``col2im``    what the engine's ``col2im`` picks for that shape (``col2im_route``)

The scatters' flat indices are built once per geometry outside the timing, as a layer would
cache them; their build time and size are listed separately. With a GPU (CuPy) it also times
the book's slice loop against the engine's one-launch gather kernel. Run::

    python benchmarks/bench_col2im.py                 # float32, the table in the docs
    python benchmarks/bench_col2im.py --dtype float64
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from minifcn.backend import cupy_or_none
from minifcn.engine.im2col import _col2im_phases, _windows, col2im
from minifcn.ops import col2im as slice_loop
from minifcn.ops._util import transposed_output_size

# (label, channels, input side, kernel, stride): the transposed convs of FCN at 500x500
CASES = [
    ("upscore2, k4 s2, 16x16", 21, 16, 4, 2),
    ("upscore_pool4, k4 s2, 34x34", 21, 34, 4, 2),
    ("upscore8, k16 s8, 16x16", 21, 16, 16, 8),
    ("upscore8, k16 s8, 70x70 (FCN-8s)", 21, 70, 16, 8),
    ("upscore, k64 s32, 16x16 (FCN-32s)", 21, 16, 64, 32),
]


def flat_index(c, h, k, s):
    """Flat index into the (C, side, side) image of every entry of cols (C*k*k, h*h), in
    cols' order; ``side = s*(h-1) + k`` (padding 0, batch 1)."""
    side = transposed_output_size(h, k, s, 0)
    reach = np.arange(k)[:, None] + s * np.arange(h)[None, :]  # (k, h): image row of (tap, pixel)
    pixel = reach[:, None, :, None] * side + reach[None, :, None, :]  # (k, k, h, h)
    plane = (np.arange(c) * side * side)[:, None, None, None, None]  # (C, 1, 1, 1, 1)
    return (plane + pixel).ravel()  # (C*k*k*h*h,)


def col2im_add_at(cols, shape, index):
    x = np.zeros(int(np.prod(shape)), dtype=cols.dtype)
    np.add.at(x, index, cols.ravel())
    return x.reshape(shape)  # (N, C, H, W)


def col2im_bincount(cols, shape, index):
    # bincount always sums in float64: cast back to the columns' dtype
    x = np.bincount(index, weights=cols.ravel(), minlength=int(np.prod(shape)))
    return x.astype(cols.dtype, copy=False).reshape(shape)  # (N, C, H, W)


def col2im_phases(cols, shape, k, s):
    return _col2im_phases(cols, shape, _windows(shape[2], shape[3], k, s, 0), None)


def best_of(fn, args, repeat, sync=lambda: None):
    """Best wall time of ``fn(*args)`` in ms, after one warm-up call."""
    fn(*args)  # warm-up: first-touch page faults, caches, kernel compilation
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        sync()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


def run_numpy(dtype, repeat):
    rng = np.random.default_rng(0)
    print(f"NumPy {np.__version__}, {dtype}, batch 1, best of {repeat}, ms")
    print("| case | cols entries | slice | add.at | bincount | phases | col2im "
          "| index build, size |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, c, h, k, s in CASES:
        side = transposed_output_size(h, k, s, 0)
        shape = (1, c, side, side)
        cols = rng.standard_normal((1, c * k * k, h * h)).astype(dtype)  # (N, C*k*k, H_in*W_in)
        t0 = time.perf_counter()
        index = flat_index(c, h, k, s)
        build = 1e3 * (time.perf_counter() - t0)
        ref = slice_loop(cols, shape, k, s)
        for other in (col2im_add_at(cols, shape, index), col2im_bincount(cols, shape, index),
                      col2im_phases(cols, shape, k, s), col2im(cols, shape, k, s)):
            np.testing.assert_allclose(other, ref, rtol=1e-4, atol=1e-4)
        times = [best_of(slice_loop, (cols, shape, k, s), repeat),
                 best_of(col2im_add_at, (cols, shape, index), repeat),
                 best_of(col2im_bincount, (cols, shape, index), repeat),
                 best_of(col2im_phases, (cols, shape, k, s), repeat),
                 best_of(col2im, (cols, shape, k, s), repeat)]
        cells = " | ".join(f"{t:.1f}" for t in times)
        index_cost = f"{build:.0f} ms, {index.nbytes / 2**20:.0f} MiB"
        print(f"| {label} | {cols.size:,} | {cells} | {index_cost} |")


def run_cupy(cupy, dtype, repeat):
    sync = cupy.cuda.Device().synchronize
    rng = np.random.default_rng(0)
    print(f"\nCuPy {cupy.__version__}, {dtype}, batch 1, best of {repeat}, ms")
    print("| case | slice loop (kh*kw launches) | gather kernel (1 launch) |")
    print("|---|---:|---:|")
    for label, c, h, k, s in CASES:
        side = transposed_output_size(h, k, s, 0)
        shape = (1, c, side, side)
        cols = cupy.asarray(rng.standard_normal((1, c * k * k, h * h)).astype(dtype))
        np.testing.assert_allclose(cupy.asnumpy(col2im(cols, shape, k, s)),
                                   cupy.asnumpy(slice_loop(cols, shape, k, s)),
                                   rtol=1e-4, atol=1e-4)
        slow = best_of(slice_loop, (cols, shape, k, s), repeat, sync)
        fast = best_of(col2im, (cols, shape, k, s), repeat, sync)
        print(f"| {label} | {slow:.2f} | {fast:.2f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    run_numpy(np.dtype(args.dtype), args.repeat)
    cupy = cupy_or_none()
    if cupy is not None:
        run_cupy(cupy, np.dtype(args.dtype), args.repeat)


if __name__ == "__main__":
    main()

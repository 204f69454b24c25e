"""Memory-bound NumPy work on several CPU cores: the engine's thread splitting.

OpenBLAS runs every matrix product on all cores, but NumPy's copies and element-wise loops
(im2col's slices, col2im's adds, ReLU, pooling) run on one. On a 2-core machine that leaves
half the machine idle for a fifth of a forward pass. NumPy releases the GIL inside those loops,
so plain Python threads, each given its own block of channels, run them side by side. The
book's ops (:mod:`minifcn.ops`) run those loops on one core; the engine's versions hand them
to :func:`split_work` (im2col of a 64-channel band 11.4 to 7.8 ms, col2im 8.9 to 5.2 ms on two
threads: ``docs/performance.md``, item 6).

Only work that splits into disjoint pieces is split (no sums across pieces), so the results are
bit-for-bit the same for any number of threads. CuPy arrays never take this path: the GPU
already runs each of these as one parallel kernel.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Below this many bytes, handing work to a thread costs more than it saves (measured: about
# 20 microseconds per hand-off).
MIN_BYTES = 2 * 2**20

_pool = None


def num_threads():
    """Threads for element-wise work: ``MINIFCN_NUM_THREADS``, else the BLAS/OpenMP setting
    (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``), else every core."""
    for var in ("MINIFCN_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value:
            try:
                return max(1, int(value))
            except ValueError:
                raise ValueError(f"{var}={value!r}: expected a whole number of threads") from None
    return os.cpu_count() or 1


def split_work(fn, count, nbytes, xp=np):
    """Call ``fn(start, stop)`` over blocks covering ``range(count)``, in parallel when worth it.

    Parameters
    ----------
    fn : callable
        Does the work for items ``start:stop`` (typically channels); blocks never overlap.
    count : int
        Number of items.
    nbytes : int
        Bytes the whole job touches; small jobs run inline.
    xp : module
        The array module; only NumPy work is threaded.
    """
    threads = min(num_threads(), count) if xp is np and nbytes >= MIN_BYTES else 1
    if threads <= 1:
        fn(0, count)
        return
    global _pool
    if _pool is None or _pool._max_workers < threads - 1:
        _pool = ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="minifcn")
    bounds = [count * k // threads for k in range(threads + 1)]
    # the first block runs here, in the calling thread, while the pool's threads run the rest
    futures = [_pool.submit(fn, a, b) for a, b in zip(bounds[1:-1], bounds[2:])]
    try:
        fn(bounds[0], bounds[1])
    finally:
        for future in futures:
            future.result()  # re-raises a worker's exception here

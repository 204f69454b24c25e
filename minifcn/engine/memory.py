"""Memory and thread settings of the engine: scratch buffers, the allocator, thread counts.

None of this changes a result; all of it changes how often fresh memory is faulted in or
how many cores work. The book's ops (:mod:`minifcn.ops`) allocate what they need, call by
call, and leave the process's allocator and thread counts alone.
"""
from __future__ import annotations

import contextlib
import math
import os
import threading

SCRATCH_MAX_BYTES = 64 * 2**20  # larger band buffers are allocated afresh, not kept
_scratch_buffers = threading.local()


def scratch(name, shape, dtype, xp):
    """A C-contiguous array of ``shape`` for temporary band data, kept from call to call.

    The engine's convolutions need a few MB of columns per band, and a fresh allocation of
    that size is often fresh memory from the kernel, faulted in page by page (about 1,000
    faults per 4 MB): more than half of the narrow training step's faults under glibc's
    defaults. So each thread keeps one flat buffer per ``name`` (and array module and dtype),
    grown when too small, as Caffe keeps one column buffer. Its contents are garbage and valid
    only until the next call with the same ``name`` in the same thread. Buffers over
    ``SCRATCH_MAX_BYTES`` are not kept.

    Measured (``docs/performance.md``, item 19): page faults per narrow training step 7,200
    to 3,100; narrow step 89.4 to 86.2 ms; ``conv1_2``'s backward 11.7 to 9.6 ms.
    """
    size = math.prod(shape)
    if size * xp.dtype(dtype).itemsize > SCRATCH_MAX_BYTES:
        return xp.empty(shape, dtype=dtype)
    buffers = _scratch_buffers.__dict__
    key = (name, xp.__name__, xp.dtype(dtype).str)
    buffer = buffers.get(key)
    if buffer is None or buffer.size < size:
        buffer = buffers[key] = xp.empty(size, dtype=dtype)
    return buffer[:size].reshape(shape)


@contextlib.contextmanager
def cpu_threads(n):
    """Run the block with ``n`` BLAS threads and ``n`` threads for the engine's element-wise work.

    Small networks (the demo's: 4 to 256 channels on 96x96 images) make hundreds of small
    matrix products per step, and a second thread gains nothing on them: a training step of
    the demo took 90-94 ms with two threads and 92 ms with one on a 2-core machine (156 and
    126 ms before the allocator setting of :func:`keep_freed_memory`), and one thread leaves
    the other core to the rest of the machine. Full-size networks want every core; leave
    them alone.
    """
    from threadpoolctl import threadpool_limits

    previous = os.environ.get("MINIFCN_NUM_THREADS")
    os.environ["MINIFCN_NUM_THREADS"] = str(n)
    try:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        if previous is None:
            os.environ.pop("MINIFCN_NUM_THREADS", None)
        else:
            os.environ["MINIFCN_NUM_THREADS"] = previous


def keep_freed_memory():
    """Ask glibc's ``malloc`` to keep freed memory for reuse instead of handing it back.

    A training step allocates and frees hundreds of buffers of a few MB (bands of columns,
    activations, their gradients). By default glibc returns freed blocks to the kernel and
    maps fresh pages for the next allocation, which the kernel must fault in and zero: a
    step of the demo took 124 ms with the defaults and 92 ms with this, on one thread of a
    2-core Xeon (PyTorch gains as much; see docs/performance.md, item 10). The setting is
    the process's, so the ``minifcn`` command applies it, not ``import minifcn``.

    Sets ``M_MMAP_THRESHOLD`` to 32 MB (glibc's largest: bigger blocks are still mapped
    afresh) and ``M_TRIM_THRESHOLD`` to 2 GB. Returns True where applied, False elsewhere
    (no glibc: macOS, Windows, musl).
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's <malloc.h>
    mapped = mallopt(m_mmap_threshold, 32 * 2**20)
    return bool(mapped and mallopt(m_trim_threshold, 2**31 - 1))

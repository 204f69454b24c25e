"""What every reader must do with a damaged or hostile file, checked in one place.

A reader given any file either refuses it with one of the project's own errors whose message
names the file, or returns finite arrays. Never a crash, a hang, another library's exception,
or an allocation out of proportion to the file. The fuzz tests of every reader (weights,
models, images, labels) call :func:`read_or_refuse` on each case they make.
"""
from __future__ import annotations

import contextlib
import signal
import tracemalloc
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from minifcn.errors import MinifcnError

# No reader may allocate more than this while reading a small fuzzed file; the files the
# fuzz tests write are a few hundred kB, so a reader that trusts a size field in them trips it.
ALLOCATION_BOUND = 64 << 20
SECONDS = 10  # per call: a reader that loops on a crafted length field fails here, not in CI


class ReaderHung(AssertionError):
    pass


@contextlib.contextmanager
def _time_limit(seconds):
    def _raise(signum, frame):
        raise ReaderHung(f"the reader ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def read_or_refuse(read, path, *, bound=ALLOCATION_BOUND, seconds=SECONDS):
    """``read(path)``'s result, or ``None`` when it refused the file the project's way.

    Fails the calling test when ``read`` raises anything but a
    :class:`~minifcn.errors.MinifcnError`, when the error does not name the file, when it
    runs longer than ``seconds``, or when its peak traced allocation reaches ``bound`` bytes.
    """
    path = Path(path)
    tracemalloc.start()
    try:
        with _time_limit(seconds):
            try:
                result = read(path)
            except MinifcnError as exc:
                message = str(exc)
                assert str(path) in message or path.name in message, (
                    f"the error does not name the file {path.name}: {message!r}")
                assert "\n" not in message.strip(), f"a user error is one line: {message!r}"
                result = None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < bound, f"reading {path.name} allocated {peak / 2**20:.1f} MiB"
    return result


def assert_finite_arrays(arrays, context=""):
    """Every array in a mapping (or one array) is a finite real NumPy array."""
    items = arrays.items() if isinstance(arrays, dict) else [("array", arrays)]
    for key, value in items:
        value = np.asarray(value)
        assert value.dtype.kind in "biuf", f"{context}{key}: dtype {value.dtype}"
        if value.dtype.kind == "f":
            assert np.isfinite(value).all(), f"{context}{key}: non-finite values"


def bit_flips(max_size=4):
    """A hypothesis strategy: 1..``max_size`` flips, each (where in 0..1, which bit 0..7)."""
    return st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
                    min_size=1, max_size=max_size)


def flip_bits(data, flips, start=0, end=None):
    """``data`` with each flip of :func:`bit_flips` applied, placed within ``data[start:end]``."""
    data = bytearray(data)
    end = len(data) if end is None else end
    for where, bit in flips:
        data[start + int(where * (end - start))] ^= 1 << bit
    return bytes(data)

"""Shared fixtures: seeded generators, the two op sets, and helpers that every test file uses."""
import numpy as np
import pytest

from minifcn.layers import op_set


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(params=["book", "engine"])
def ops(request):
    """Each op set in turn: the book (``minifcn.ops``) and the engine (``minifcn.engine``)."""
    return op_set(request.param)


def random_geometries(seed, count):
    """Seeded random conv/pool geometries: odd and non-square images and kernels,
    stride 1-3, padding 0-2, batch 1-3, several channel counts. Yields dicts."""
    g = np.random.default_rng(seed)
    made = 0
    while made < count:
        kh, kw = int(g.integers(1, 5)), int(g.integers(1, 5))
        sh, sw = int(g.integers(1, 4)), int(g.integers(1, 4))
        ph, pw = int(g.integers(0, 3)), int(g.integers(0, 3))
        h, w = int(g.integers(3, 12)), int(g.integers(3, 12))
        if kh > h + 2 * ph or kw > w + 2 * pw:
            continue
        made += 1
        yield dict(n=int(g.integers(1, 4)), c_in=int(g.integers(1, 5)), c_out=int(g.integers(1, 5)),
                   h=h, w=w, kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw))

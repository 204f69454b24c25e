import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minifcn.ops import col2im, col2im_naive, im2col, im2col_naive
from tests.conftest import random_geometries


@pytest.mark.parametrize("geo", list(random_geometries(seed=1, count=25)), ids=str)
def test_im2col_matches_loop_twin(geo):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((geo["n"], geo["c_in"], geo["h"], geo["w"]))
    fast = im2col(x, geo["kernel"], geo["stride"], geo["padding"])
    slow = im2col_naive(x, geo["kernel"], geo["stride"], geo["padding"])
    assert fast.shape == slow.shape
    np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize("geo", list(random_geometries(seed=2, count=25)), ids=str)
def test_col2im_matches_loop_twin(geo):
    rng = np.random.default_rng(0)
    shape = (geo["n"], geo["c_in"], geo["h"], geo["w"])
    cols_shape = im2col(np.zeros(shape), geo["kernel"], geo["stride"], geo["padding"]).shape
    cols = rng.standard_normal(cols_shape)
    fast = col2im(cols, shape, geo["kernel"], geo["stride"], geo["padding"])
    slow = col2im_naive(cols, shape, geo["kernel"], geo["stride"], geo["padding"])
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)


def test_im2col_known_numbers():
    # a 3x3 image, 2x2 kernel, stride 1: four windows, written out by hand
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    cols = im2col(x, 2)
    expected = np.array([[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]], dtype=float)
    np.testing.assert_array_equal(cols[0], expected)


def test_col2im_counts_overlaps():
    # folding all-ones columns back counts how many windows cover each pixel
    cols = np.ones((1, 4, 4))
    counts = col2im(cols, (1, 1, 3, 3), 2)
    np.testing.assert_array_equal(counts[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       ph=st.integers(0, 2), pw=st.integers(0, 2), seed=st.integers(0, 2**31 - 1))
def test_col2im_is_the_adjoint_of_im2col(n, c, h, w, kh, kw, sh, sw, ph, pw, seed):
    if kh > h + 2 * ph or kw > w + 2 * pw:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    cols = im2col(x, (kh, kw), (sh, sw), (ph, pw))
    y = rng.standard_normal(cols.shape)
    lhs = np.vdot(cols, y)  # <im2col(x), y>
    rhs = np.vdot(x, col2im(y, x.shape, (kh, kw), (sh, sw), (ph, pw)))  # <x, col2im(y)>
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)

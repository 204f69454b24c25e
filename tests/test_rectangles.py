"""The convolution on rectangles of its output (minifcn.engine.rectangles) against the book's.

The oracle is the book's im2col convolution (itself checked against its loop twin in
test_conv.py). FCN's layers are all square (kernel, stride, padding), so the whole-network
tests cannot tell a transposed rectangle's stride or padding from the untransposed ones:
these tests use non-square kernels, strides and paddings, and rectangles of every form (wide,
tall and thin, which the engine computes transposed, single positions), in float64 to 1e-10.
"""
import numpy as np
import pytest

from minifcn import ops as book
from minifcn.engine import rectangles
from minifcn.engine.bands import multiply_into
from minifcn.engine.border import Region, Span
from minifcn.engine.bordered import rectangle_weight_grad
from tests.test_engine_equivalence import assert_same

# (kernel, stride, padding), all non-square
GEOMETRIES = [((3, 2), (1, 2), (2, 1)), ((2, 3), (2, 1), (0, 2)), ((3, 3), (1, 1), (1, 0)),
              ((1, 3), (1, 1), (0, 1))]


def case(geometry, n=2, c_in=3, c_out=4, h=13, w=11, seed=0):
    (kh, kw), stride, padding = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c_in, h, w))
    weight = rng.standard_normal((c_out, c_in, kh, kw))
    ref = book.conv2d_forward(x, weight, None, stride, padding)[0]
    return x, weight, stride, padding, ref


def some_rectangles(out_h, out_w):
    """Tall and thin ones (computed transposed), wide ones, a square, a single position."""
    tall = [(slice(1, out_h - 1), slice(0, 1)), (slice(0, out_h), slice(out_w - 2, out_w)),
            (slice(2, out_h), slice(1, 4))]
    other = [(slice(0, 1), slice(0, out_w)), (slice(out_h - 2, out_h), slice(2, out_w)),
             (slice(1, 4), slice(1, 4)), (slice(3, 4), slice(2, 3))]
    assert all(rectangles.is_tall(r, c) for r, c in tall)
    assert not any(rectangles.is_tall(r, c) for r, c in other)
    return tall + other


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_each_rectangle_equals_the_books_output_there(geometry, with_bias):
    x, weight, stride, padding, ref = case(geometry)
    bias = None
    if with_bias:  # added as the product is copied out
        bias = np.random.default_rng(4).standard_normal(weight.shape[0])
        ref = book.conv2d_forward(x, weight, bias, stride, padding)[0]
    for rows, cols in some_rectangles(*ref.shape[2:]):
        out = np.full_like(ref, np.nan)
        rectangles.convolve_rectangles(out, x, weight, stride, padding, [(rows, cols)],
                                       bias=bias)
        assert_same(out[:, :, rows, cols], ref[:, :, rows, cols])
        out[:, :, rows, cols] = np.nan
        assert np.isnan(out).all(), "written outside its rectangle"


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_each_rectangles_weight_gradient_is_the_books_of_its_dout_alone(geometry):
    x, weight, stride, padding, ref = case(geometry, seed=1)
    rng = np.random.default_rng(2)
    dout = rng.standard_normal(ref.shape)
    cache = book.conv2d_forward(x, weight, None, stride, padding)[1]
    for rows, cols in some_rectangles(*ref.shape[2:]):
        only = np.zeros_like(dout)
        only[:, :, rows, cols] = dout[:, :, rows, cols]
        expected = book.conv2d_backward(only, cache, input_grad=False)[1]
        dweight, sums = rectangle_weight_grad(None, dout, x, weight, stride, padding, rows,
                                              cols)
        assert_same(dweight.reshape(weight.shape), expected)
        assert_same(sums, only.sum(axis=(0, 2, 3)))
        # and added onto a running sum
        start = rng.standard_normal((weight.shape[0], weight[0].size))
        total = rectangle_weight_grad(start.copy(), dout, x, weight, stride, padding, rows,
                                      cols)[0]
        assert_same(total, start + expected.reshape(start.shape))


def test_a_batch_of_one_lands_in_a_transposed_output_too():
    # the direct product into the output's rows needs them contiguous; on a transposed view
    # a reshape would copy, and the product would be lost
    rng = np.random.default_rng(3)
    w2d, cols = rng.standard_normal((4, 6)), rng.standard_normal((1, 6, 2 * 5))
    out = np.zeros((1, 4, 5, 7))
    multiply_into(rectangles.transposed(out), slice(0, 2), w2d, cols)
    expected = (w2d @ cols[0]).reshape(4, 2, 5)
    np.testing.assert_array_equal(out[0, :, :, 0:2], expected.transpose(0, 2, 1))


def test_frames_are_whole_strips_around_a_box_in_the_middle():
    span = Span(20, 8, 12, top=2, bottom=3)
    region = Region(span, Span(16, 5, 9, top=1, bottom=2))
    pieces = region.pieces()
    assert len(pieces) == 5  # top, bottom, left, right, box (nine as runs of rows)
    tiled = np.zeros(region.shape, int)
    for rows, cols in pieces:
        tiled[rows, cols] += 1
    expected = np.zeros(region.shape, int)
    expected[:2], expected[-3:], expected[:, :1], expected[:, -2:] = 1, 1, 1, 1
    expected[8:12, 5:9] = 1
    np.testing.assert_array_equal(tiled, expected)

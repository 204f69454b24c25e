"""Checkerboard artifacts (minifcn.viz.checkerboard) and the figures notebook 03 puts under
sliders: each measure against a count done by loops, each picture's numbers against the ops'
independent oracles."""
import numpy as np
import pytest

from minifcn.init import bilinear_kernel
from minifcn.ops import conv2d_naive, conv_transpose2d_naive, transposed_output_size
from minifcn.ops._util import pair
from minifcn.ops.conv_matrix import conv_matrix, conv_transpose_matrix
from minifcn.viz.checkerboard import (KERNELS, checkerboard_figure, constant_response,
                                      constant_response_figure, example_kernel, fit_upsampler,
                                      interior, phase_sums, resize_then_convolve, unevenness)
from minifcn.viz.conv_figures import conv_matrices, conv_matrix_figure, zero_insertion_figure

GEOMETRIES = [(size, k, s, p) for size in (4, 5) for k in range(1, 7) for s in range(1, 4)
              for p in range(0, 3) if s * (size - 1) + k - 2 * p >= 1]


def copies_by_loops(size, k, s, p, images=range(-50, 50)):
    """How many input rows' copies reach each output row, counting only ``images`` rows."""
    out = s * (size - 1) + k - 2 * p
    return np.array([sum(1 for m in images if s * m <= q + p < s * m + k) for q in range(out)])


@pytest.mark.parametrize("size, k, s, p", GEOMETRIES)
def test_interior_is_where_no_copy_is_missing(size, k, s, p):
    # away from the border: the rows that get every copy an endless input would give them
    complete = copies_by_loops(size, k, s, p, range(size)) == copies_by_loops(size, k, s, p)
    rows = interior(size, k, s, p)
    inside = np.zeros(len(complete), dtype=bool)
    inside[rows] = True
    assert np.array_equal(inside, complete), (rows, complete)


@pytest.mark.parametrize("k, s", [(k, s) for k in range(1, 9) for s in range(1, 5)])
def test_phase_sums_are_what_a_constant_input_gives_away_from_the_border(k, s):
    kernel = np.random.default_rng(k * 10 + s).uniform(0.5, 1.5, size=(k, k))
    y = conv_transpose2d_naive(np.ones((1, 1, 9, 9)), kernel[None, None], None, s)[0, 0]
    sums = phase_sums(kernel, s)
    rows = interior(9, k, s)
    for q in range(rows.start, rows.stop):
        for r in range(rows.start, rows.stop):
            assert np.isclose(y[q, r], sums[q % s, r % s])


@pytest.mark.parametrize("k, s", [(k, s) for k in range(1, 9) for s in range(1, 5)])
def test_ones_overlap_evenly_exactly_when_the_stride_divides_the_kernel(k, s):
    y = constant_response(np.ones((k, k)), s, size=9)
    rows = interior(9, k, s)
    even = unevenness(y[rows, rows]) == 0
    assert even == (k % s == 0), unevenness(y[rows, rows])


@pytest.mark.parametrize("s", [1, 2, 3, 4, 8])
def test_bilinear_k_2s_is_one_away_from_the_border_and_less_on_it(s):
    y = constant_response(bilinear_kernel(2 * s), s, size=5)
    rows = interior(5, 2 * s, s)
    assert rows.start == s and rows.stop == y.shape[0] - s  # k - s = s rows at each end
    np.testing.assert_allclose(y[rows, rows], 1)
    border = np.ones(y.shape, dtype=bool)
    border[rows, rows] = False
    assert (y[border] < 1 - 1e-9).all()  # every border pixel misses a tap


def test_unevenness_measures_away_from_the_margin():
    stripes = np.tile([1.0, 2.0], (6, 3))  # (6, 6): columns 1 2 1 2 1 2
    assert unevenness(stripes) == pytest.approx(1 / 1.5)
    framed = np.pad(np.full((4, 4), 3.0), 1)  # zeros around a constant
    assert unevenness(framed) > 1
    assert unevenness(framed, margin=1) == 0
    assert unevenness(np.full((1, 1, 5, 5), 2.0), margin=0) == 0


def test_resize_then_convolve_is_a_nearest_resize_then_the_loop_convolution():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 3, 3))
    resized = np.kron(x, np.ones((2, 2)))  # (2, 3, 8, 10): each pixel a 2x2 block
    np.testing.assert_allclose(resize_then_convolve(x, 2, w), conv2d_naive(resized, w, None, 1, 1))
    flat = resize_then_convolve(np.ones((1, 1, 5, 5)), 3, w[:1, :1])  # any weights: even inside
    assert unevenness(flat, margin=1) < 1e-12


def test_a_learned_upsampler_drifts_off_even_phase_sums():
    rng = np.random.default_rng(0)
    smooth = np.cumsum(np.cumsum(rng.standard_normal((64, 64)), 0), 1)  # a rough landscape
    image = (smooth - smooth.min()) / np.ptp(smooth)
    weight, losses = fit_upsampler(image, 4, steps=10, lr=20.0)
    assert weight.shape == (1, 1, 8, 8) and len(losses) == 10
    assert losses[-1] < losses[0]  # it learns
    sums = phase_sums(weight[0, 0], 4)
    assert np.ptp(sums) > 1e-3  # and the phases no longer agree
    assert np.allclose(phase_sums(bilinear_kernel(8), 4), 1)  # where it started


def test_example_kernels_and_an_unknown_name():
    assert np.array_equal(example_kernel("ones", 3), np.ones((3, 3)))
    assert np.array_equal(example_kernel("bilinear", 4), bilinear_kernel(4))
    noisy = example_kernel("bilinear + noise", 4, seed=1)
    assert 0 < np.abs(noisy - bilinear_kernel(4)).max() < 0.5
    with pytest.raises(ValueError, match="'box' is not one of"):
        example_kernel("box", 3)
    assert set(KERNELS) == {"ones", "bilinear", "bilinear + noise"}


@pytest.mark.parametrize("k, s, p, a, hw", [(3, 1, 0, 0, (2, 2)), (4, 2, 1, 1, (3, 2)),
                                            ((1, 3), (1, 2), (0, 1), (0, 1), (1, 4)),
                                            (2, 3, 0, 2, (2, 3))])
def test_the_matrix_figure_reads_c_and_its_transpose_off_the_ops(k, s, p, a, hw):
    C, CT, weight = conv_matrices(k, s, p, a, hw)
    np.testing.assert_array_equal(CT, C.T)
    np.testing.assert_array_equal(CT, conv_transpose_matrix(weight, hw, s, p, a))  # the oracle
    (kh, kw), (sh, sw), (ph, pw), (ah, aw) = pair(k), pair(s), pair(p), pair(a)
    out_hw = (transposed_output_size(hw[0], kh, sh, ph, ah),
              transposed_output_size(hw[1], kw, sw, pw, aw))
    np.testing.assert_array_equal(C, conv_matrix(weight, out_hw, s, p))


def test_settings_no_layer_accepts_raise_the_ops_message(tmp_path):
    with pytest.raises(ValueError, match="output_padding"):
        conv_matrix_figure(tmp_path / "c.png", kernel_size=3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="output would be"):
        zero_insertion_figure(tmp_path / "z.png", kernel_size=1, stride=1, padding=2)


def test_the_slider_figures_are_written(tmp_path):
    paths = [conv_matrix_figure(tmp_path / "c.png", (1, 5), (1, 3), (0, 2), (0, 2), (1, 4)),
             zero_insertion_figure(tmp_path / "z.png", (3, 3), 2, 3, 2, 1),
             constant_response_figure(tmp_path / "r.png", 8, 4, "bilinear + noise"),
             constant_response_figure(tmp_path / "r1.png", 8, 1, "ones"),  # input grows to 10
             checkerboard_figure(tmp_path / "cb.png")]
    for path in paths:
        assert 5_000 < path.stat().st_size < 200_000, path

"""Winograd's F(2x2, 3x3) convolution (minifcn.engine.winograd) against the book's.

The oracle is the book's im2col convolution (itself checked against its loop twin in
test_conv.py): whole outputs and every sub-rectangle, odd and non-square sizes, paddings 0-2,
batch 1-3, several bands and threads, float64 to 1e-10 and float32 to 1e-5 relative to the
largest entry; then the places the engine takes the route (a plain forward, FCN's bordered
forward, whole or in pieces, and the stride-1 input gradient), and which layers take it.
"""
import numpy as np
import pytest

from minifcn import engine
from minifcn import ops as book
from minifcn.engine import winograd
from minifcn.engine.border import ConvBorder, Region, Span
from minifcn.engine import bordered, stride1
from minifcn.engine import rectangles as rectangles_module
from minifcn.engine.bordered import bordered_forward
from minifcn.models.spec import network_specs
from tests.test_engine_equivalence import assert_same


def case(n, c_in, c_out, h, w, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    weight = rng.standard_normal((c_out, c_in, 3, 3)).astype(dtype)
    return x, weight


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n,c_in,c_out,h,w,pad", [
    (1, 3, 5, 7, 9, 1), (2, 4, 3, 1, 1, 1), (2, 5, 6, 8, 3, 2), (1, 2, 2, 3, 3, 0),
    (3, 6, 4, 12, 13, 1), (1, 2, 3, 2, 5, 2), (2, 3, 4, 10, 11, 0), (1, 1, 1, 4, 4, 1),
])
def test_whole_output_equals_the_books(n, c_in, c_out, h, w, pad, dtype):
    x, weight = case(n, c_in, c_out, h, w, dtype)
    ref = book.conv2d_forward(x, weight, None, 1, pad)[0]
    out = np.full_like(ref, np.nan)
    winograd.winograd_conv(x, weight, (pad, pad), out)
    assert_same(out, ref)


@pytest.mark.parametrize("pad", [0, 1, 2])
def test_every_rectangle_and_nothing_outside_it(pad):
    x, weight = case(2, 3, 4, 6, 7, seed=pad)
    ref = book.conv2d_forward(x, weight, None, 1, pad)[0]
    out_h, out_w = ref.shape[2:]
    for r0 in range(out_h):
        for r1 in range(r0 + 1, out_h + 1):
            for c0 in range(out_w):
                for c1 in (c0 + 1, c0 + 2, out_w):
                    if c1 > out_w:
                        continue
                    out = np.full_like(ref, np.nan)
                    winograd.winograd_conv(x, weight, (pad, pad), out, slice(r0, r1), slice(c0, c1))
                    inside = np.zeros(ref.shape, bool)
                    inside[:, :, r0:r1, c0:c1] = True
                    assert np.isnan(out[~inside]).all(), (r0, r1, c0, c1)
                    np.testing.assert_allclose(out[inside], ref[inside], rtol=0, atol=1e-12)


def test_several_bands_on_several_threads(monkeypatch):
    # 256 channels in, 8 out, of 2 images 60 wide: about 2 MB of mixed inputs and products
    # per row of blocks in float64, so a 70-row output takes several bands of BAND_BYTES;
    # 3 threads split 256 and 8 channels unevenly
    monkeypatch.setenv("MINIFCN_NUM_THREADS", "3")
    x, weight = case(2, 256, 8, 70, 60)
    per_block_row = 16 * (256 + 8) * 2 * 30 * 8
    assert 35 * per_block_row > 2 * winograd.BAND_BYTES  # more than two bands
    ref = book.conv2d_forward(x, weight, None, 1, 1)[0]
    out = np.empty_like(ref)
    winograd.winograd_conv(x, weight, (1, 1), out)
    assert_same(out, ref)
    x32, w32 = x.astype(np.float32), weight.astype(np.float32)
    out32 = np.empty(ref.shape, np.float32)
    winograd.winograd_conv(x32, w32, (1, 1), out32)
    assert_same(out32, book.conv2d_forward(x32, w32, None, 1, 1)[0])


def test_the_mixed_kernel_is_g_g_gt():
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((5, 4, 3, 3))
    g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])  # Lavin and Gray's G
    mixed = winograd.mix_kernel(weight)
    assert mixed.shape == (4, 4, 5, 4)
    for o in range(5):
        for i in range(4):
            np.testing.assert_allclose(mixed[:, :, o, i], g @ weight[o, i] @ g.T, atol=1e-14)


def test_one_block_by_hand():
    # a 4x4 input, a 3x3 kernel, no padding: the 2x2 output, summed by hand
    d = np.arange(16.0).reshape(1, 1, 4, 4) ** 1.5
    g = np.array([[1.0, -2, 0.5], [3, 0, -1], [0.25, 1, 2]]).reshape(1, 1, 3, 3)
    expected = np.array([[sum(d[0, 0, y + i, x + j] * g[0, 0, i, j]
                              for i in range(3) for j in range(3))
                          for x in range(2)] for y in range(2)])
    out = np.empty((1, 1, 2, 2))
    winograd.winograd_conv(d, g, (0, 0), out)
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-13)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_engines_forward_takes_it_and_equals_the_book(dtype):
    x, weight = case(1, 256, 256, 9, 11, dtype, seed=4)
    bias = np.random.default_rng(5).standard_normal(256).astype(dtype)
    assert winograd.winograd_pays(weight, (1, 1), (1, 1))
    got = engine.conv2d_forward(x, weight, bias, 1, 1)[0]
    assert_same(got, book.conv2d_forward(x, weight, bias, 1, 1)[0])


def bordered_case(rows, cols, dtype, seed=6):
    """A 256 -> 256 layer on a 19x21 input that is one value per channel outside ``region``'s
    box and one-pixel frames (``rows`` and ``cols``: the box's spans), and its border."""
    rng = np.random.default_rng(seed)
    c_in, c_out, h, w = 256, 256, 19, 21
    region = Region(Span(h, *rows, 1, 1), Span(w, *cols, 1, 1))
    constant = rng.standard_normal(c_in).astype(dtype)
    x = np.broadcast_to(constant[None, :, None, None], (2, c_in, h, w)).copy()
    for r, c in region.pieces():
        x[:, :, r, c] = rng.standard_normal((2, c_in, r.stop - r.start, c.stop - c.start))
    weight = (rng.standard_normal((c_out, c_in, 3, 3)) / 30).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype)
    out_constant = bias + weight.sum(axis=(2, 3)) @ constant
    border = ConvBorder(region, region.after_conv(3, 1, 1), constant, out_constant)
    return x, weight, bias, border


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_bordered_forward_takes_it_on_the_box_and_the_banded_route_on_the_frames(dtype):
    # rows 5-13 and columns 4-15 are the box: the output's box piece is wide enough for
    # Winograd, its frames are not, and a quarter of it is constant: pieces, not the whole map
    x, weight, bias, border = bordered_case((5, 14), (4, 16), dtype)
    sides = [min(r.stop - r.start, c.stop - c.start) for r, c in border.out.pieces()]
    assert max(sides) >= 4 > min(sides)  # both routes are taken
    assert border.out.varying_fraction() < bordered.WHOLE_SHARE
    got = bordered_forward(x, weight, bias, (1, 1), (1, 1), border)
    assert_same(got, book.conv2d_forward(x, weight, bias, 1, 1)[0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rows,cols", [((4, 15), (4, 17)), ((3, 16), (4, 17))])
def test_the_bordered_forward_of_a_mostly_varying_map_computes_it_whole(rows, cols, dtype,
                                                                       monkeypatch):
    # 85 and 92 % of the output varies: one Winograd call over the whole map, constant included
    x, weight, bias, border = bordered_case(rows, cols, dtype, seed=7)
    share = border.out.varying_fraction()
    assert bordered.WHOLE_SHARE <= share < 1
    calls = []
    real = bordered.winograd_conv
    monkeypatch.setattr(bordered, "winograd_conv",
                        lambda *a, **k: calls.append((a, k)) or real(*a, **k))
    got = bordered_forward(x, weight, bias, (1, 1), (1, 1), border)
    assert len(calls) == 1  # x, weight, padding, out: no rows or columns, positional or not
    (args, kwargs), = calls
    assert len(args) == 4 and not {"rows", "cols"} & set(kwargs)
    ref = book.conv2d_forward(x, weight, bias, 1, 1)[0]
    assert_same(got, ref)
    for r, c in border.out.pieces(constant=True):  # the computed constant is the constant
        assert_same(got[:, :, r, c], np.broadcast_to(border.out_constant[:, None, None],
                                                     got[:, :, r, c].shape))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("pad", [0, 1, 2])
def test_the_input_gradient_takes_it_on_wide_rectangles_and_the_bands_on_thin_ones(pad, dtype,
                                                                                  monkeypatch):
    # the stride-1 input gradient is a convolution of dout with the rotated kernel: 256 -> 256
    # channels take Winograd on a rectangle 4 or more on each side, the bands on a thinner one
    x, weight = case(2, 256, 256, 11, 13, dtype, seed=8)
    weight = weight / 30
    ref_out, cache = book.conv2d_forward(x, weight, None, 1, pad)
    dout = np.random.default_rng(9).standard_normal(ref_out.shape).astype(dtype)
    ref = book.conv2d_backward(dout, cache)[0]
    rotated = stride1.rotated_kernel(weight)
    rectangles = [(slice(0, 11), slice(0, 2)), (slice(1, 9), slice(3, 12)),
                  (slice(9, 11), slice(12, 13))]
    calls = []  # the rectangles Winograd computes: the wide one only

    def spy(module):
        real = module.winograd_conv
        monkeypatch.setattr(module, "winograd_conv",
                            lambda *a, **k: calls.append(a[4:6] or (None, None)) or real(*a, **k))

    spy(rectangles_module)
    dx = np.full_like(x, np.nan)
    stride1.input_grad_into(dx, dout, rotated, (pad, pad), rectangles)
    assert calls == [rectangles[1]]
    written = np.zeros(x.shape[2:], bool)
    for rows, cols in rectangles:
        assert_same(dx[:, :, rows, cols], ref[:, :, rows, cols])
        written[rows, cols] = True
    assert np.isnan(dx[:, :, ~written]).all()
    # and the whole gradient of a layer that does not widen, with and without its weight
    # gradient: Winograd once more, on the whole map
    spy(stride1)
    for weight_grad in (True, False):
        calls.clear()
        got = stride1.stride1_backward(dout, x, weight, (pad, pad), weight_grad)
        assert calls == [(None, None)]
        want = book.conv2d_backward(dout, cache)[:2]
        assert_same(got[0], want[0])
        assert_same(got[1], want[1] if weight_grad else None)


def test_which_layers_take_it():
    taking = []
    for spec in network_specs("fcn8s", num_classes=21, width=1.0, pad=100):
        if spec.op == "conv":
            weight = np.empty((spec.out_channels, spec.in_channels, spec.kernel, spec.kernel))
            if winograd.winograd_pays(weight, (spec.stride,) * 2, (spec.padding,) * 2):
                taking.append(spec.name)
    assert taking == ["conv3_2", "conv3_3", "conv4_1", "conv4_2", "conv4_3",
                      "conv5_1", "conv5_2", "conv5_3"]
    assert not winograd.winograd_pays(np.empty((256, 256, 3, 3)), (2, 2), (1, 1))
    assert not winograd.winograd_pays(np.empty((256, 256, 3, 3)), (1, 1), (3, 3))
    assert not winograd.winograd_pays(np.empty((256, 128, 3, 3)), (1, 1), (1, 1))  # conv3_1

import numpy as np
import pytest

from minifcn.gradcheck import numerical_gradient, rel_error, well_separated
from minifcn.models.coords import blob_sides
from minifcn.models.spec import LayerSpec
from minifcn import engine
from minifcn.gradcheck_pins import read_winners
from minifcn.ops import (conv_output_size, max_pool2d_backward, max_pool2d_backward_naive,
                         max_pool2d_forward, max_pool2d_naive)

CONFIGS = [  # (shape, kernel, stride, padding, ceil_mode)
    ((2, 3, 7, 9), 2, 2, 0, True),
    ((2, 3, 7, 9), 2, 2, 0, False),
    ((1, 2, 8, 5), 3, 2, 1, True),
    ((3, 1, 9, 11), 3, 2, 1, False),
    ((2, 2, 10, 7), (3, 2), (2, 3), (1, 0), True),
    ((1, 3, 5, 5), 3, 1, 1, False),
    ((2, 2, 1, 1), 2, 2, 0, True),  # a 1x1 map: ceil keeps one window
    ((1, 1, 13, 6), 2, 2, 0, True),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
def test_pool_matches_loop_twin(cfg):
    shape, k, s, p, ceil = cfg
    x = np.random.default_rng(0).standard_normal(shape)
    out, cache = max_pool2d_forward(x, k, s, p, ceil)
    np.testing.assert_array_equal(out, max_pool2d_naive(x, k, s, p, ceil))
    dout = np.random.default_rng(1).standard_normal(out.shape)
    np.testing.assert_allclose(max_pool2d_backward(dout, cache),
                               max_pool2d_backward_naive(dout, x, k, s, p, ceil), atol=1e-14)


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
def test_pool_gradient_float64(cfg, ops):
    shape, k, s, p, ceil = cfg
    x = well_separated(np.random.default_rng(2), shape)  # no near-ties for the step to cross
    out, cache = ops.max_pool2d_forward(x, k, s, p, ceil)
    dout = np.random.default_rng(3).standard_normal(out.shape)
    numeric = numerical_gradient(lambda: ops.max_pool2d_forward(x, k, s, p, ceil)[0], x, dout)
    assert rel_error(numeric, ops.max_pool2d_backward(dout, cache)) < 1e-7


def test_ceil_rounding_pools_the_overhang():
    # 5 columns, 2x2 stride 2: floor gives 2 windows, ceil 3; the third pools column 4 alone
    x = np.array([[[[1.0, 2, 3, 4, 9], [5, 6, 7, 8, -1]]]])
    floor_out, _ = max_pool2d_forward(x, 2, 2, 0, ceil_mode=False)
    ceil_out, _ = max_pool2d_forward(x, 2, 2, 0, ceil_mode=True)
    np.testing.assert_array_equal(floor_out[0, 0], [[6, 8]])
    np.testing.assert_array_equal(ceil_out[0, 0], [[6, 8, 9]])


def test_fcn_pool_sizes_for_500():
    # REFERENCE.md section 1: conv1 698 -> pool1 349 -> 175 -> 88 -> 44 -> 22
    size, seen = 698, []
    for _ in range(5):
        size = conv_output_size(size, 2, 2, 0, ceil_mode=True)
        seen.append(size)
    assert seen == [349, 175, 88, 44, 22]


def test_caffe_drops_a_window_that_starts_in_the_padding():
    # H=5, k=3, s=2, p=1: ceil((5+2-3)/2)+1 = 3 windows; starts at -1, 1, 3: all inside
    assert conv_output_size(5, 3, 2, 1, ceil_mode=True) == 3
    # H=6, k=2, s=2, p=1: ceil((6+2-2)/2)+1 = 4; the 4th window starts at 3*2-1 = 5 < H: kept
    assert conv_output_size(6, 2, 2, 1, ceil_mode=True) == 4
    # H=4, k=3, s=3, p=1: ceil((4+2-3)/3)+1 = 2; 2nd window starts at 3*1-1 = 2 < 4: kept
    assert conv_output_size(4, 3, 3, 1, ceil_mode=True) == 2
    # H=3, k=2, s=2, p=1: ceil(3/2)+1 = 3; 3rd starts at 4-1 = 3 = H: only padding -> dropped
    assert conv_output_size(3, 2, 2, 1, ceil_mode=True) == 2


def test_tie_rule_first_in_row_major_order_wins(ops):
    x = np.array([[[[1.0, 3.0], [3.0, 3.0]]]])
    out, cache = ops.max_pool2d_forward(x, 2, 2)
    dx = ops.max_pool2d_backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(dx[0, 0], [[0, 1], [0, 0]])


def test_the_cache_keeps_each_windows_winner():
    # the book's pooling keeps the argmax: the tap i*kw + j that won each window
    x = np.array([[[[1.0, 5.0, 2.0], [4.0, 3.0, 9.0]]]])  # 2x3, 2x2 windows, ceil: 1x2 windows
    out, cache = max_pool2d_forward(x, 2, 2, ceil_mode=True)
    np.testing.assert_array_equal(out[0, 0], [[5.0, 9.0]])
    np.testing.assert_array_equal(cache[2][0, 0], [[1, 2]])  # tap (0, 1), then tap (1, 0)


def test_overlapping_windows_accumulate_gradient(ops):
    # 3x3 stride 1 over a 4x4 map whose maximum is in the middle of all four windows
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 1] = 5.0
    out, cache = ops.max_pool2d_forward(x, 3, 1)
    dx = ops.max_pool2d_backward(np.ones_like(out), cache)
    assert dx[0, 0, 1, 1] == 4.0 and dx.sum() == 4.0


# --- ceil rounding never pools an empty window --------------------------------------------
# A window of a ceil-mode pooling that would hold no pixel (it starts in the padding, or past
# the input when the kernel is smaller than the stride) is dropped, as PyTorch does.

SWEEP = [(h, w, k, s, p) for h in range(1, 7) for w in (1, 4, 7) for k in range(1, 5)
         for s in range(1, 5) for p in range(k // 2 + 1)]  # 576 geometries


def _distinct(shape, seed):
    """Values all different (no ties to decide), in a random order."""
    return np.random.default_rng(seed).permutation(np.arange(np.prod(shape), dtype=np.float64)
                                                   ).reshape(shape)


def test_a_kernel_smaller_than_the_stride_emits_no_empty_window():
    # 4 pixels, kernel 1, stride 2: windows start at 0 and 2; ceil((4-1)/2)+1 = 3 would add a
    # third at 4, past the input, where there is nothing to take the maximum of
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    out, cache = max_pool2d_forward(x, 1, 2, 0, ceil_mode=True)
    np.testing.assert_array_equal(out[0, 0], [[0, 2], [8, 10]])
    np.testing.assert_array_equal(max_pool2d_naive(x, 1, 2, 0, ceil_mode=True)[0, 0], out[0, 0])
    dx = max_pool2d_backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(np.argwhere(dx[0, 0]), [[0, 0], [0, 2], [2, 0], [2, 2]])
    # 5 pixels, kernel 2, stride 4, pad 1: windows start at -1 and 3; a third at 7 is dropped
    assert conv_output_size(5, 2, 4, 1, ceil_mode=True) == 2
    assert conv_output_size(7, 2, 3, 0, ceil_mode=True) == 3  # starts 0, 3, 6: 6 < 7, kept


def test_ceil_pooling_matches_torch_and_the_loop_twin_over_a_sweep():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only cost time here
    try:
        checked, refused = _sweep_against(torch)
    finally:
        torch.set_num_threads(threads)
    assert checked > 400 and refused > 0  # the sweep reached both kinds of case


def _sweep_against(torch):
    checked = refused = 0
    for h, w, k, s, p in SWEEP:
        x = _distinct((1, 2, h, w), seed=h * 10 + w)
        tx = torch.tensor(x, requires_grad=True)
        try:
            tout = torch.nn.functional.max_pool2d(tx, k, s, p, ceil_mode=True)
        except RuntimeError:  # torch finds no window (a kernel larger than the padded input)
            with pytest.raises(ValueError, match="larger than the padded input"):
                max_pool2d_forward(x, k, s, p, ceil_mode=True)
            refused += 1
            continue
        case = f"{h}x{w} k{k} s{s} p{p}"
        out, cache = max_pool2d_forward(x, k, s, p, ceil_mode=True)
        assert np.isfinite(out).all(), case
        np.testing.assert_array_equal(out, tout.detach().numpy(), err_msg=case)
        np.testing.assert_array_equal(max_pool2d_naive(x, k, s, p, True), out, err_msg=case)
        dout = _distinct(out.shape, seed=1) + 1
        tout.backward(torch.tensor(dout))
        dx = max_pool2d_backward(dout, cache)
        np.testing.assert_array_equal(dx, tx.grad.numpy(), err_msg=case)
        np.testing.assert_array_equal(max_pool2d_backward_naive(dout, x, k, s, p, True), dx,
                                      err_msg=case)
        np.testing.assert_array_equal(read_winners(x, cache), out, err_msg=case)
        fast, fast_cache = engine.max_pool2d_forward(x, k, s, p, ceil_mode=True)  # the engine too
        np.testing.assert_array_equal(fast, out, err_msg=case)
        np.testing.assert_array_equal(engine.max_pool2d_backward(dout, fast_cache), dx, err_msg=case)
        checked += 1
    return checked, refused


def test_every_pooling_path_takes_one_output_size():
    # the size arithmetic of describe and of the crops' geometry is the ops' own
    for h, w, k, s, p in SWEEP:
        try:
            out, _ = max_pool2d_forward(np.zeros((1, 1, h, w)), k, s, p, ceil_mode=True)
        except ValueError:
            continue
        assert out.shape[2:] == (conv_output_size(h, k, s, p, True),
                                 conv_output_size(w, k, s, p, True))
        spec = [LayerSpec("pool", "pool", ("data",), kernel=k, stride=s, padding=p)]
        assert blob_sides(spec, h)[0]["pool"] == out.shape[2]

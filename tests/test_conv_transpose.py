"""conv_transpose2d: loop twin, gradients (book and engine), PyTorch, bilinear upsampling,
the layer, errors. The engine's routes against the book: tests/test_engine_equivalence.py."""
import numpy as np
import pytest

from minifcn.gradcheck import numerical_gradient, rel_error
from minifcn.init import bilinear_kernel, bilinear_upsampling_weight
from minifcn.layers import ConvTranspose2d
from minifcn.ops import conv_transpose2d_backward, conv_transpose2d_forward, conv_transpose2d_naive
from tests.conftest import random_geometries

GEOMETRIES = list(random_geometries(seed=41, count=20))


def case(geo, seed, dtype=np.float64):
    """x (N, C_in, H, W), weight (C_in, C_out, kh, kw), bias (C_out,), output_padding."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((geo["n"], geo["c_in"], geo["h"], geo["w"])).astype(dtype)
    weight = rng.standard_normal((geo["c_in"], geo["c_out"], *geo["kernel"])).astype(dtype)
    bias = rng.standard_normal(geo["c_out"]).astype(dtype)
    output_padding = tuple(int(rng.integers(0, s)) for s in geo["stride"])
    return x, weight, bias, output_padding


@pytest.mark.parametrize("geo", GEOMETRIES, ids=str)
def test_matches_loop_twin(geo):
    x, weight, bias, op = case(geo, seed=1)
    out, _ = conv_transpose2d_forward(x, weight, bias, geo["stride"], geo["padding"], op)
    slow = conv_transpose2d_naive(x, weight, bias, geo["stride"], geo["padding"], op)
    assert out.shape == slow.shape
    np.testing.assert_allclose(out, slow, rtol=1e-12, atol=1e-12)


def test_output_padding_only_appends():
    # output_padding adds rows/columns at the bottom/right; everything else is unchanged
    x, weight, _, _ = case(dict(n=2, c_in=2, c_out=3, h=4, w=5, kernel=(3, 2), stride=(1, 1)),
                          seed=2)
    plain, _ = conv_transpose2d_forward(x, weight, None, (3, 2), 1)
    padded, _ = conv_transpose2d_forward(x, weight, None, (3, 2), 1, (2, 1))
    assert plain.shape == (2, 3, 10, 8) and padded.shape == (2, 3, 12, 9)
    np.testing.assert_array_equal(padded[:, :, :10, :8], plain)
    # with padding 1, the first extra row is the one the crop would otherwise have cut off
    assert np.abs(padded[:, :, 10]).max() > 0
    np.testing.assert_array_equal(padded[:, :, 11], 0)


GRAD_CASES = [
    dict(n=2, c_in=2, c_out=3, h=3, w=4, kernel=(3, 3), stride=(2, 2), padding=(1, 1)),
    dict(n=1, c_in=3, c_out=2, h=4, w=3, kernel=(2, 3), stride=(1, 3), padding=(0, 1)),
    dict(n=2, c_in=1, c_out=2, h=2, w=2, kernel=(4, 4), stride=(2, 2), padding=(0, 0)),
]


@pytest.mark.parametrize("geo", GRAD_CASES, ids=str)
def test_gradients_numerically(geo, ops):
    x, weight, bias, op = case(geo, seed=3)
    args = (geo["stride"], geo["padding"], op)
    out, cache = ops.conv_transpose2d_forward(x, weight, bias, *args)
    dout = np.random.default_rng(4).standard_normal(out.shape)
    dx, dweight, dbias = ops.conv_transpose2d_backward(dout, cache)

    def f():
        return ops.conv_transpose2d_forward(x, weight, bias, *args)[0]

    for analytic, wrt in [(dx, x), (dweight, weight), (dbias, bias)]:
        numeric = numerical_gradient(f, wrt, dout)
        assert rel_error(numeric, analytic) < 1e-7


def test_matches_pytorch_forward_and_gradients(ops):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for k, geo in enumerate(GEOMETRIES[:12]):
        x, weight, bias, op = case(geo, seed=10 + k, dtype=np.float32)
        args = (geo["stride"], geo["padding"], op)
        out, cache = ops.conv_transpose2d_forward(x, weight, bias, *args)
        dout = np.random.default_rng(k).standard_normal(out.shape).astype(np.float32)
        grads = ops.conv_transpose2d_backward(dout, cache)
        tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
        tout = F.conv_transpose2d(tx, tw, tb, stride=args[0], padding=args[1], output_padding=op)
        tout.backward(torch.tensor(dout))
        np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-4, atol=1e-4)
        for mine, theirs in zip(grads, (tx.grad, tw.grad, tb.grad)):
            np.testing.assert_allclose(mine, theirs.numpy(), rtol=1e-4, atol=1e-4)


# ---- bilinear upsampling ---------------------------------------------------------------

def test_bilinear_kernel_profiles():
    # the 2-D kernel is the outer product of a 1-D profile t with itself: t = sqrt(diagonal)
    np.testing.assert_allclose(np.sqrt(np.diag(bilinear_kernel(4))), [0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(bilinear_kernel(4), np.outer(*2 * [[0.25, 0.75, 0.75, 0.25]]))
    np.testing.assert_allclose(bilinear_kernel(3), np.outer(*2 * [[0.5, 1, 0.5]]))
    np.testing.assert_allclose(bilinear_kernel(5)[2], [1 / 3, 2 / 3, 1, 2 / 3, 1 / 3])
    np.testing.assert_array_equal(bilinear_kernel(1), [[1.0]])
    # even k = 2s: the taps s apart sum to 1 (each output pixel's weights are a partition of 1)
    for s in (1, 2, 8, 32):
        tent = np.sqrt(np.diag(bilinear_kernel(2 * s)))
        np.testing.assert_allclose(tent[:s] + tent[s:], 1.0)


def test_bilinear_weight_fills_only_the_channel_diagonal():
    weight = bilinear_upsampling_weight(5, 4)
    assert weight.shape == (5, 5, 4, 4) and weight.dtype == np.float32
    for c in range(5):
        for d in range(5):
            expected = bilinear_kernel(4) if c == d else np.zeros((4, 4))
            np.testing.assert_allclose(weight[c, d], expected)


def interp2d(image, u_rows, u_cols):
    """Independent bilinear interpolation: ``np.interp`` along rows, then along columns."""
    h, w = image.shape
    along_w = np.stack([np.interp(u_cols, np.arange(w), row) for row in image])  # (h, W_out)
    return np.stack([np.interp(u_rows, np.arange(h), col) for col in along_w.T], axis=1)


@pytest.mark.parametrize("factor", [2, 8])
@pytest.mark.parametrize("padding", ["half", "zero"])
def test_bilinear_upsampling_is_linear_interpolation(factor, padding):
    # Kernel k = 2s, centre s - 1/2. Input pixel m reaches output q through tap q + p - m*s with
    # weight 1 - |q + p + 1/2 - s - m*s| / s = 1 - |u - m|, u = (q + p + 1/2)/s - 1. So output q
    # samples the input at u; with p = s/2 that is u = (q + 1/2)/s - 1/2 (half-pixel centres).
    # Where 0 <= u <= H-1 both neighbours exist and the result is exact linear interpolation.
    rng = np.random.default_rng(factor)
    image = rng.standard_normal((5, 7))
    p = factor // 2 if padding == "half" else 0
    weight = bilinear_upsampling_weight(1, 2 * factor, np.float64)
    out, _ = conv_transpose2d_forward(image[None, None], weight, None, factor, p)
    out = out[0, 0]
    if padding == "half":
        assert out.shape == (5 * factor, 7 * factor)
    u_rows = (np.arange(out.shape[0]) + p + 0.5) / factor - 1
    u_cols = (np.arange(out.shape[1]) + p + 0.5) / factor - 1
    inside = np.ix_((u_rows >= 0) & (u_rows <= 4), (u_cols >= 0) & (u_cols <= 6))
    assert out[inside].size >= (4 * factor) * (6 * factor)
    np.testing.assert_allclose(out[inside], interp2d(image, u_rows, u_cols)[inside], atol=1e-12)


@pytest.mark.parametrize("f", [2, 3])
def test_odd_bilinear_kernel_interpolates_with_aligned_corners(f):
    # k = 2f - 1, stride f, padding f - 1: output q samples u = q / f, every q inside
    image = np.random.default_rng(f).standard_normal((4, 6))
    weight = bilinear_upsampling_weight(1, 2 * f - 1, np.float64)
    out, _ = conv_transpose2d_forward(image[None, None], weight, None, f, f - 1)
    assert out.shape == (1, 1, 3 * f + 1, 5 * f + 1)
    u_rows, u_cols = np.arange(3 * f + 1) / f, np.arange(5 * f + 1) / f
    np.testing.assert_allclose(out[0, 0], interp2d(image, u_rows, u_cols), atol=1e-12)


# ---- the layer object and its errors ---------------------------------------------------

def test_layer_forward_backward():
    x, weight, bias, _ = case(dict(n=2, c_in=3, c_out=2, h=4, w=5, kernel=(4, 4), stride=(1, 1)),
                          seed=5)
    layer = ConvTranspose2d("upscore2", weight, bias, stride=2, padding=1)
    with pytest.raises(RuntimeError, match="upscore2"):
        layer.backward(np.zeros((2, 2, 8, 10)))
    out = layer(x)
    expected, cache = conv_transpose2d_forward(x, weight, bias, 2, 1)
    np.testing.assert_array_equal(out, expected)
    dout = np.ones_like(out)
    dx = layer.backward(dout)
    dx_ref, dw_ref, db_ref = conv_transpose2d_backward(dout, cache)
    np.testing.assert_array_equal(dx, dx_ref)
    np.testing.assert_array_equal(layer.weight.grad, dw_ref)
    np.testing.assert_array_equal(layer.bias.grad, db_ref)
    assert set(layer.parameters()) == {"weight", "bias"}
    frozen = ConvTranspose2d("upscore8", weight, stride=2)
    frozen.weight.requires_grad = False
    frozen.backward(np.ones_like(frozen(x)))
    assert frozen.weight.grad is None and set(frozen.parameters()) == {"weight"}


def test_bad_inputs_name_the_layer_and_shapes():
    w = np.zeros((3, 2, 4, 4))
    with pytest.raises(ValueError, match=r"upscore2.*4-D.*\(3, 5, 5\)"):
        conv_transpose2d_forward(np.zeros((3, 5, 5)), w, name="upscore2")
    with pytest.raises(ValueError, match=r"upscore2.*\(1, 2, 5, 5\).*2 channels.*\(3, 2, 4, 4\)"):
        conv_transpose2d_forward(np.zeros((1, 2, 5, 5)), w, name="upscore2")
    with pytest.raises(TypeError, match="upscore2.*floating point.*int64"):
        conv_transpose2d_forward(np.zeros((1, 3, 5, 5), dtype=np.int64), w, name="upscore2")
    with pytest.raises(TypeError, match="upscore2.*dtypes differ"):
        conv_transpose2d_forward(np.zeros((1, 3, 5, 5), np.float32), w, name="upscore2")
    with pytest.raises(ValueError, match=r"upscore2.*bias shape \(3,\).*\(2,\)"):
        conv_transpose2d_forward(np.zeros((1, 3, 5, 5)), w, np.zeros(3), name="upscore2")
    with pytest.raises(ValueError, match="upscore2.*output_padding"):
        conv_transpose2d_forward(np.zeros((1, 3, 5, 5)), w, None, 2, 0, 2, name="upscore2")
    layer = ConvTranspose2d("upscore_pool4", w)
    with pytest.raises(ValueError, match="upscore_pool4"):
        layer(np.zeros((1, 4, 5, 5)))

"""Forward and every gradient against PyTorch (float32), over seeded random geometries, for
the book's ops and the engine's."""
import numpy as np
import pytest

from tests.conftest import random_geometries

torch = pytest.importorskip("torch")
F = torch.nn.functional
RTOL, ATOL = 1e-4, 1e-4


def _t(a):
    return torch.tensor(a, requires_grad=True)


def close(ours, theirs):
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("geo", list(random_geometries(seed=11, count=20)), ids=str)
def test_conv2d_matches_torch(geo, ops):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((geo["n"], geo["c_in"], geo["h"], geo["w"])).astype(np.float32)
    w = rng.standard_normal((geo["c_out"], geo["c_in"]) + geo["kernel"]).astype(np.float32)
    b = rng.standard_normal(geo["c_out"]).astype(np.float32)
    out, cache = ops.conv2d_forward(x, w, b, geo["stride"], geo["padding"])
    tx, tw, tb = _t(x), _t(w), _t(b)
    tout = F.conv2d(tx, tw, tb, stride=geo["stride"], padding=geo["padding"])
    close(out, tout)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    tout.backward(torch.tensor(dout))
    dx, dw, db = ops.conv2d_backward(dout, cache)
    close(dx, tx.grad)
    close(dw, tw.grad)
    close(db, tb.grad)


POOLS = [((2, 3, 7, 9), 2, 2, 0), ((1, 4, 11, 6), 3, 2, 1), ((2, 2, 10, 13), (3, 2), (2, 1), (1, 1)),
         ((1, 3, 5, 8), 3, 3, 0), ((1, 2, 1, 3), 2, 2, 0)]


# floor mode needs the window to fit: the 1x3 map is pooled in ceil mode only
POOL_CASES = [(cfg, ceil) for cfg in POOLS for ceil in (True, False) if ceil or min(cfg[0][2:]) >= 2]


@pytest.mark.parametrize("cfg,ceil_mode", POOL_CASES, ids=str)
def test_max_pool2d_matches_torch(cfg, ceil_mode, ops):
    shape, k, s, p = cfg
    x = np.random.default_rng(1).permutation(np.prod(shape)).reshape(shape).astype(np.float32)
    out, cache = ops.max_pool2d_forward(x, k, s, p, ceil_mode)
    tx = _t(x)
    tout = F.max_pool2d(tx, k, s, p, ceil_mode=ceil_mode)
    close(out, tout)
    dout = np.random.default_rng(2).standard_normal(out.shape).astype(np.float32)
    tout.backward(torch.tensor(dout))
    close(ops.max_pool2d_backward(dout, cache), tx.grad)


def test_relu_and_loss_match_torch(ops):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 7, 6)).astype(np.float32)
    labels = rng.integers(0, 5, size=(2, 7, 6))
    labels[:, :2, :3] = 255
    weight = rng.uniform(0.5, 2.0, 5).astype(np.float32)
    relu_out, relu_cache = ops.relu_forward(x)
    for reduction, cw in [("mean", None), ("sum", None), ("mean", weight)]:
        loss, cache = ops.softmax_cross_entropy_forward(relu_out, labels, 255, cw, reduction)
        tx = _t(x)
        tloss = F.cross_entropy(F.relu(tx), torch.tensor(labels), ignore_index=255, reduction=reduction,
                                weight=None if cw is None else torch.tensor(cw))
        assert loss == pytest.approx(tloss.item(), rel=RTOL)
        tloss.backward()
        dx = ops.relu_backward(ops.softmax_cross_entropy_backward(1.0, cache), relu_cache)
        close(dx, tx.grad)

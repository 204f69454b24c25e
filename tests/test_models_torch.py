"""FCN parity with a PyTorch network built from the same state dict: scores and every
gradient after one backward of the loss, float32, non-square inputs: the book's network on one
size, the engine's on another (each equals the other: tests/test_engine_equivalence.py)."""
import numpy as np
import pytest

from minifcn.models import MODELS
from minifcn.models.gradcheck_cases import randomise
from minifcn.ops import softmax_cross_entropy_backward, softmax_cross_entropy_forward

torch = pytest.importorskip("torch")
from tests.torch_fcn import torch_fcn_forward  # noqa: E402


def close(ours, theirs, what):
    theirs = theirs.detach().numpy()
    scale = float(np.abs(theirs).max()) or 1.0
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * scale, err_msg=what)


@pytest.mark.parametrize("variant", list(MODELS))
@pytest.mark.parametrize("hw,ops", [((33, 20), "book"), ((45, 61), "engine")], ids=str)
def test_fcn_matches_pytorch(variant, hw, ops):
    rng = np.random.default_rng(0)
    model = MODELS[variant](num_classes=5, width=1 / 16, learn_upsampling=True, ops=ops).eval()
    randomise(model, rng)
    for p in model.parameters():
        p.data = p.data.astype(np.float32)
    x = rng.standard_normal((2, 3) + hw).astype(np.float32)
    labels = rng.integers(0, 5, (2,) + hw)
    labels[1, :3] = 255
    scores = model(x)
    loss, cache = softmax_cross_entropy_forward(scores, labels)
    dx = model.backward(softmax_cross_entropy_backward(1.0, cache))

    state = {k: torch.tensor(v, requires_grad=True) for k, v in model.state_dict().items()}
    tx = torch.tensor(x, requires_grad=True)
    tscores = torch_fcn_forward(state, tx, variant)
    tloss = torch.nn.functional.cross_entropy(tscores, torch.tensor(labels), ignore_index=255)
    tloss.backward()

    close(scores, tscores, "scores")
    assert loss == pytest.approx(tloss.item(), rel=1e-4)
    close(dx, tx.grad, "input gradient")
    for name, p in model.named_parameters():
        close(p.grad, state[name].grad, name)

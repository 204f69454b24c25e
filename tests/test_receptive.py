"""Receptive fields: the window walked back through the layers agrees with the receptive-field
recurrence and the coordinate maps, the gradient of one unit is PyTorch's, and nothing outside
the window reaches the unit."""
import numpy as np
import pytest

from minifcn.models import FCN8s, coordinate_maps, network_specs, receptive_fields
from minifcn.models.gradcheck_cases import randomise
from minifcn.models.receptive import centred_extent, field_interval, unit_input_gradient


@pytest.mark.parametrize("variant,pad", [("fcn8s", 100), ("fcn32s", 81), ("fcn16s", 137)])
def test_the_window_has_the_receptive_field_and_is_centred_on_the_coordinate_map(variant, pad):
    # two derivations: the recurrence rf' = rf + (k - 1) jump with the affine maps (coords),
    # and the interval walked back layer by layer (receptive); they must agree everywhere
    specs = network_specs(variant, pad=pad)
    fields, maps = receptive_fields(specs), coordinate_maps(specs)
    trunk = [s.name for s in specs if s.trunk]
    for blob in trunk:
        rf = fields[blob][0]
        for index in (0, 1, 5, 17):
            first, last = field_interval(specs, blob, index)
            assert last - first + 1 == rf, (blob, index)
            assert (first + last) / 2 == maps[blob].scale * index + maps[blob].shift, (blob, index)


def test_score_fr_sees_404_pixels_and_pool3_44():
    # the numbers the notebook and docs/model.md quote
    specs = network_specs("fcn8s")
    assert field_interval(specs, "score_fr", 0) == (-189, 214)
    assert field_interval(specs, "pool3", 0) == (-117, -74)


def test_a_blob_off_the_trunk_is_refused_by_name():
    with pytest.raises(ValueError, match="'upscore2' is not a trunk blob"):
        field_interval(network_specs("fcn8s"), "upscore2", 0)


def small_model(pad=100):
    model = FCN8s(num_classes=3, width=1 / 64, pad=pad, dtype=np.float64)
    randomise(model, np.random.default_rng(0))
    return model


def test_nothing_outside_the_window_reaches_the_unit():
    # score_fr row 0 sees input rows -189 .. 214: rows 215 .. 229 of a 230-row image must
    # get exactly zero gradient, and the window's rows must get some
    model = small_model()
    x = np.random.default_rng(1).standard_normal((2, 3, 230, 9))
    first, last = field_interval(model.specs, "score_fr", 0)
    assert (first, last) == (-189, 214)
    dx = unit_input_gradient(model, x, "score_fr", 1, 0, 0)
    reached = np.abs(dx).sum(axis=(0, 1, 3))  # (200,) per input row
    assert np.all(reached[last + 1:] == 0)
    assert reached[: last + 1].min() > 0


def test_the_window_of_a_convolution_only_blob_is_reached_exactly():
    # no pooling between input and conv1_2: every pixel of the 5x5 window reaches the unit
    model = small_model()
    x = np.random.default_rng(2).standard_normal((3, 3, 9, 11)) + 1.0
    row, col = 103, 104  # inside the image (pad 100)
    (r0, r1), (c0, c1) = field_interval(model.specs, "conv1_2", row), field_interval(
        model.specs, "conv1_2", col)
    reached = np.abs(unit_input_gradient(model, x, "conv1_2", 0, row, col)).sum(axis=(0, 1))
    rows, cols = np.nonzero(reached)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (r0, r1, c0, c1) == (2, 6, 3, 7)


def test_the_model_is_left_as_it_was():
    model = small_model().train()
    model.upscore2.weight.requires_grad = True
    before = {name: (p.requires_grad, p.grad) for name, p in model.named_parameters()}
    unit_input_gradient(model, np.zeros((1, 3, 5, 7)), "score", 0, 2, 3)
    assert model.training
    assert {name: (p.requires_grad, p.grad) for name, p in model.named_parameters()} == before


torch = pytest.importorskip("torch")


def torch_trunk(state, x, pad):
    """score_fr of the FCN trunk in PyTorch (REFERENCE.md section 1), dropout off."""
    F = torch.nn.functional
    h = x
    for b, n in enumerate((2, 2, 3, 3, 3), start=1):
        for i in range(1, n + 1):
            h = F.relu(F.conv2d(h, state[f"conv{b}_{i}.weight"], state[f"conv{b}_{i}.bias"],
                                padding=pad if (b, i) == (1, 1) else 1))
        h = F.max_pool2d(h, 2, 2, ceil_mode=True)
    for name in ("fc6", "fc7"):
        h = F.relu(F.conv2d(h, state[f"{name}.weight"], state[f"{name}.bias"]))
    return F.conv2d(h, state["score_fr.weight"], state["score_fr.bias"])


@pytest.mark.parametrize("blob,unit", [("score_fr", (2, 1, 2)), ("score", (1, 31, 50))])
def test_the_unit_gradient_is_pytorchs(blob, unit):
    from tests.torch_fcn import torch_fcn_forward

    model = small_model()
    x = np.random.default_rng(3).standard_normal((2, 3, 40, 70))  # score_fr 2x3
    dx = unit_input_gradient(model, x, blob, *unit)
    state = {k: torch.tensor(v) for k, v in model.state_dict().items()}
    tx = torch.tensor(x, requires_grad=True)
    out = torch_trunk(state, tx, 100) if blob == "score_fr" else torch_fcn_forward(state, tx, "fcn8s")
    c, r, q = unit
    out[:, c, r, q].sum().backward()  # the images are independent: one pass gives each its own
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert np.abs(dx).max() > 0


def slow_extent(weight, centre, fraction):
    """The oracle of centred_extent: grow the square one pixel at a time."""
    rows, cols = np.arange(weight.shape[0]), np.arange(weight.shape[1])
    for side in range(1, 2 * max(weight.shape) + 2):
        half = (side - 1) / 2
        inside = (np.abs(rows - centre[0]) <= half)[:, None] & (np.abs(cols - centre[1]) <= half)
        if weight[inside].sum() >= fraction * weight.sum() * (1 - 1e-12):
            return side
    raise AssertionError("unreachable")


def test_centred_extent_on_hand_made_and_random_weights():
    delta = np.zeros((7, 9))
    delta[3, 4] = 1
    assert centred_extent(delta, (3, 4)) == 1
    block = np.zeros((8, 8))
    block[3:5, 3:5] = 1  # a 2x2 block, centred on a corner between pixels
    assert centred_extent(block, (3.5, 3.5), 1.0) == 2
    block[0, 7] = 0.1  # far away and under 5 % of the total: left out at 95 %
    assert centred_extent(block, (3.5, 3.5), 0.95) == 2
    assert centred_extent(block, (3.5, 3.5), 1.0) == 8
    rng = np.random.default_rng(4)
    for _ in range(20):
        w = rng.random((int(rng.integers(3, 12)), int(rng.integers(3, 12)))) ** 4
        centre = (rng.integers(0, w.shape[0]) + rng.choice([0, 0.5]),
                  rng.integers(0, w.shape[1]) + rng.choice([0, 0.5]))
        fraction = float(rng.choice([0.5, 0.9, 0.95, 1.0]))
        assert centred_extent(w, centre, fraction) == slow_extent(w, centre, fraction)

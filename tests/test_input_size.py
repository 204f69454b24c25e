"""The smallest image a network accepts, derived from its geometry and said in the user's terms."""
import numpy as np
import pytest

from minifcn.errors import MinifcnError, UsageError
from minifcn.models import MODELS, FCN8s, network_specs
from minifcn.models.coords import smallest_input
from minifcn.models.describe import blob_rows
from minifcn.models.fcn import ImageTooSmallError

NARROW = dict(num_classes=3, width=1 / 64)


@pytest.mark.parametrize("variant", list(MODELS))
def test_the_reference_pad_accepts_every_size_from_1x1(variant):
    # REFERENCE.md: with conv1_1 pad 100 and ceil pooling, every input size from 1x1 up fits
    assert smallest_input(network_specs(variant)) == 1
    model = MODELS[variant](**NARROW).eval()
    assert all(model.accepts(side, side + 5) and model.accepts(side + 5, side)
               for side in range(1, 600))
    for hw in [(1, 1), (1, 4), (3, 1)]:
        assert model(np.zeros((1, 3) + hw, np.float32)).shape == (1, 3) + hw


def test_the_demo_pad_69_needs_57_pixels_a_side():
    # by hand: conv1_1 makes H + 2*69 - 2 rows, five ceil poolings divide by 32 rounding up,
    # and fc6's 7x7 window needs 7 rows of pool5: ceil((H + 136) / 32) >= 7 <=> H >= 57
    assert smallest_input(network_specs("fcn8s", pad=69)) == 57
    model = FCN8s(pad=69, **NARROW).eval()
    for hw in [(57, 57), (57, 90), (90, 57)]:  # the boundary, run for real
        assert model(np.zeros((1, 3) + hw, np.float32)).shape == (1, 3) + hw
    x = np.zeros((1, 3, 56, 57), np.float32)
    with pytest.raises(ImageTooSmallError) as info:
        model(x)
    message = str(info.value)
    assert "\n" not in message
    for part in ["input 56x57", "conv1_1 pad 69", "at least 57x57", "fc6", "larger image",
                 "conv1_1 pad is at least 70"]:
        assert part in message, (part, message)
    assert isinstance(info.value, MinifcnError) and isinstance(info.value, ValueError)
    # one row less, and the ops themselves find no room: fc6 gets a 6-row pool5
    with pytest.raises(ValueError, match=r"fc6: kernel 7x7 is larger than the padded input 6x7"):
        for name in model.trunk_names:
            x = model.layers[name](x)
    # and the pad the message names is enough
    wider = FCN8s(pad=70, **NARROW).eval()
    assert wider(np.zeros((1, 3, 56, 57), np.float32)).shape == (1, 3, 56, 57)


def test_segment_says_the_image_is_too_small():
    from minifcn.models.segment import segment

    with pytest.raises(ImageTooSmallError, match=r"input 20x30 .* at least 57x57"):
        segment(FCN8s(pad=69, **NARROW), np.zeros((20, 30, 3), np.uint8))


def test_describe_names_the_least_size_and_pad():
    with pytest.raises(UsageError, match=r"--size 5x60 is too small for fcn8s with conv1_1 pad 69: "
                                         r"it needs at least 57x57"):
        blob_rows("fcn8s", 5, 60, pad=69)
    # FCN-8s' final crop starts at pad - 69 (31 at pad 100): below 69 it would be negative
    with pytest.raises(UsageError, match=r"--pad 68 is too small for fcn8s: its crops need "
                                         r"conv1_1 pad >= 69"):
        blob_rows("fcn8s", 100, 100, pad=68)

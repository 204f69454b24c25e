"""The network figures: each crop keeps exactly the input span of the blob it is cropped to,
at every input size, and the receptive-field picture shows the window the layers imply."""
import numpy as np
import pytest
from matplotlib.figure import Figure

from minifcn.models import VARIANTS
from minifcn.viz.net_figures import draw_crop_extents, effective_field


def bars(ax):
    """(left, width) of the three bars of a crop panel: the whole blob, the part kept, the
    reference blob."""
    rects = [p for p in ax.patches if p.get_height() == 0.5]
    return [(p.get_x(), p.get_width()) for p in rects]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("size", [1, 2, 31, 32, 33, 97, 500])
def test_the_part_a_crop_keeps_sits_where_its_reference_does(variant, size):
    fig = draw_crop_extents(Figure(), variant, size)
    axes = [ax for ax in fig.axes if ax.patches]
    assert len(axes) == {"fcn32s": 1, "fcn16s": 2}.get(variant, 3)
    for ax in axes:
        (whole_x, whole_w), (kept_x, kept_w), (ref_x, ref_w) = bars(ax)
        assert kept_x == pytest.approx(ref_x) and kept_w == pytest.approx(ref_w)
        assert whole_x <= kept_x and kept_x + kept_w <= whole_x + whole_w
    # the last crop's reference is the image itself: pixel centres 0 .. size-1
    assert (ref_x, ref_w) == (pytest.approx(-0.5), pytest.approx(size))


def test_the_effective_field_of_a_pool1_unit():
    # pool1 row 51 of a pad-100 net: conv1_2 rows 102 .. 103, conv1_1 rows 101 .. 104,
    # input rows 101 - 100 = 1 .. 104 - 100 + 2 = 6; column 52 likewise 3 .. 8. Nothing
    # outside that window gets any energy
    from minifcn.models import FCN8s
    from minifcn.models.gradcheck_cases import randomise

    model = FCN8s(num_classes=3, width=1 / 64, dtype=np.float64)
    randomise(model, np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((2, 3, 12, 13)) + 1.0
    field = effective_field(model, x, 0, 51, 52, blob="pool1", fraction=1.0)
    assert field["window"] == ((1, 6), (3, 8))
    assert field["centre"] == (3.5, 5.5)
    outside = np.ones((12, 13), bool)
    outside[1:7, 3:9] = False
    assert field["energy"][outside].sum() == 0 and field["energy"].sum() > 0
    assert field["side"] <= 6

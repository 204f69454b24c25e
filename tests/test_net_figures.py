"""The network figures: each crop keeps exactly the input span of the blob it is cropped to,
at every input size, and the receptive-field picture shows the window the layers imply."""
import numpy as np
import pytest
from matplotlib.figure import Figure

from minifcn.models import VARIANTS
from minifcn.viz.net_figures import draw_crop_extents, receptive_field_example


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


def test_the_receptive_field_picture_of_the_shipped_model():
    # what notebook 05 and docs/model.md say about it: the gradient reaches exactly the
    # theoretical window (zero outside, something on each of its four edges), and most of it
    # lies in a much smaller square
    image, energy, window, side = receptive_field_example()
    (top, bottom), (left, right) = window
    assert image.shape == (448, 448, 3) and energy.shape == (448, 448)
    assert bottom - top + 1 == right - left + 1 == 404
    assert 0 <= top and bottom < 448 and 0 <= left and right < 448  # inside the image
    outside = np.ones(energy.shape, bool)
    outside[top:bottom + 1, left:right + 1] = False
    assert energy[outside].sum() == 0
    for edge in (energy[top], energy[bottom], energy[:, left], energy[:, right]):
        assert edge.max() > 0
    assert side < 404 * 2 / 3

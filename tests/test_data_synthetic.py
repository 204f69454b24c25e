"""The synthetic shapes set: determinism, label content, void borders, colour independence."""
import numpy as np
import pytest

from minifcn.data.shapes import sdf_circle, sdf_ring, sdf_square, sdf_triangle, window
from minifcn.data.synthetic import SYNTHETIC_CLASSES, SyntheticShapes, make_sample, sample_batch


def test_dtypes_shapes_and_label_values():
    ds = SyntheticShapes(6, size=(64, 80), seed=1)
    assert len(ds) == 6 and ds.num_classes == 5 and ds.class_names == SYNTHETIC_CLASSES
    assert len(ds.ids) == 6
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.shape == (64, 80, 3) and image.dtype == np.uint8
        assert label.shape == (64, 80) and label.dtype == np.uint8
        assert set(np.unique(label)) <= {0, 1, 2, 3, 4, 255}
        assert ((label >= 1) & (label <= 4)).any()  # at least one visible object
    with pytest.raises(IndexError):
        ds[6]


def test_deterministic_per_seed_and_index():
    a, b = SyntheticShapes(5, seed=7), SyntheticShapes(5, seed=7)
    for i in (3, 0, 4):  # any order: each index has its own generator
        for x, y in zip(a[i], b[i]):
            np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a[2][0], a[2][0])
    assert not np.array_equal(a[0][0], SyntheticShapes(5, seed=8)[0][0])
    assert not np.array_equal(a[0][0], a[1][0])
    first = make_sample(np.random.default_rng(11), 48, 48)
    second = make_sample(np.random.default_rng(11), 48, 48)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_sample_batch():
    images, labels = sample_batch(np.random.default_rng(0), 3, 40)
    assert images.shape == (3, 40, 40, 3) and images.dtype == np.uint8
    assert labels.shape == (3, 40, 40) and labels.dtype == np.uint8
    again, _ = sample_batch(np.random.default_rng(0), 3, (40, 40))
    np.testing.assert_array_equal(images, again)


def test_variable_size_mode():
    ds = SyntheticShapes(8, seed=2, size_range=(40, 72))
    sizes = {ds[i][1].shape for i in range(len(ds))}
    assert len(sizes) > 1
    assert all(40 <= h <= 72 and 40 <= w <= 72 for h, w in sizes)
    assert ds[5][1].shape == ds[5][1].shape


def test_every_class_appears():
    ds = SyntheticShapes(30, size=64, seed=0)
    seen = set()
    for i in range(len(ds)):
        seen |= set(np.unique(ds[i][1]).tolist())
    assert seen == {0, 1, 2, 3, 4, 255}


def test_void_band_separates_every_pair_of_classes():
    # Wherever two 4-neighbours carry different labels, one of them must be void: objects never
    # touch the background or each other directly, as in VOC's annotations.
    for i in range(20):
        _, label = make_sample(np.random.default_rng(i), 96, 96)
        for a, b in ((label[1:], label[:-1]), (label[:, 1:], label[:, :-1])):
            differ = a != b
            assert ((a == 255) | (b == 255))[differ].all()
        assert (label == 255).any()


def test_void_band_is_thin():
    # ~1.5 px wide at 96 px: void is a small share of the pixels, well below the objects'.
    voids, objects = 0, 0
    for i in range(20):
        _, label = make_sample(np.random.default_rng(i), 96, 96)
        voids += (label == 255).sum()
        objects += ((label >= 1) & (label <= 4)).sum()
    assert 0 < voids < 0.6 * objects


def test_object_colour_does_not_reveal_the_class():
    # Mean colour of each class's pixels, collected over many images. Were colours tied to
    # classes (say, circles red), the per-class averages would sit far apart; drawn
    # independently they all estimate the same mean (SE about 3.5 grey levels per channel here).
    per_class = {k: [] for k in range(1, 5)}
    rng = np.random.default_rng(123)
    for _ in range(800):
        image, label = make_sample(rng, 32, 32)
        for k in range(1, 5):
            mask = label == k
            if mask.sum() >= 3:
                per_class[k].append(image[mask].mean(axis=0))
    means = np.array([np.mean(per_class[k], axis=0) for k in range(1, 5)])  # (4, 3)
    spreads = np.array([np.std(per_class[k], axis=0) for k in range(1, 5)])  # (4, 3)
    assert min(len(v) for v in per_class.values()) > 300
    assert np.ptp(means, axis=0).max() < 30
    assert spreads.min() > 40  # each class shows a wide range of colours


@pytest.mark.parametrize("theta", [0.0, 0.4, 1.1])
def test_shape_areas(theta):
    # Pixel counts of sdf < 0 against the textbook areas, on a fine enough grid.
    # An off-grid centre, so that no edge runs exactly through a row of pixel centres.
    sl, dy, dx = window(200, 200, 100.37, 99.71, 90)
    r, side = 40.0, 60.0
    cases = {
        "circle": (sdf_circle(dy, dx, r), np.pi * r * r),
        "ring": (sdf_ring(dy, dx, r, 25.0), np.pi * (r * r - 25.0 * 25.0)),
        "square": (sdf_square(dy, dx, side / 2, theta), side * side),
        "triangle": (sdf_triangle(dy, dx, side, theta), np.sqrt(3) / 4 * side * side),
    }
    for name, (sdf, area) in cases.items():
        assert (sdf < 0).sum() == pytest.approx(area, rel=0.02), name
    # The SDF is a distance: at the square's centre it is minus half the side.
    assert sdf_square(np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32), 30.0,
                      theta)[0, 0] == pytest.approx(-30.0)

"""Crops, flips and the batch loader: sizes, void padding, pairing, determinism per epoch."""
import numpy as np
import pytest

from minifcn.data.loader import BatchLoader
from minifcn.data.synthetic import SyntheticShapes
from minifcn.data.transforms import center_crop, crop_or_pad, random_crop, random_flip


def _sample(height, width):
    """An image whose every pixel encodes its position, and a label that does too."""
    ys, xs = np.mgrid[:height, :width]
    image = np.stack([ys, xs, (ys + xs) % 7], axis=-1).astype(np.uint8)  # (H, W, 3)
    label = (ys * width + xs).astype(np.int64) % 200  # never 255
    return image, label


def test_crop_or_pad_by_hand():
    image, label = _sample(4, 5)
    out_image, out_label = crop_or_pad(image, label, (2, 3), top=1, left=2)
    np.testing.assert_array_equal(out_label, [[7, 8, 9], [12, 13, 14]])
    np.testing.assert_array_equal(out_image[..., 0], [[1, 1, 1], [2, 2, 2]])
    # Larger than the sample: the sample sits at (top, left) inside void / fill padding.
    out_image, out_label = crop_or_pad(image, label, (6, 5), top=1, left=0, fill_image=9)
    assert (out_label[0] == 255).all() and (out_label[5] == 255).all()
    np.testing.assert_array_equal(out_label[1:5], label)
    assert (out_image[0] == 9).all()
    with pytest.raises(ValueError):
        crop_or_pad(image, label, (2, 3), top=3, left=0)


def test_random_crop_sizes_and_alignment():
    rng = np.random.default_rng(0)
    image, label = _sample(30, 40)
    for _ in range(10):
        out_image, out_label = random_crop(image, label, (16, 24), rng)
        assert out_image.shape == (16, 24, 3) and out_label.shape == (16, 24)
        assert out_image.dtype == np.uint8 and out_label.dtype == label.dtype
        # The label under each image pixel is still that pixel's own label.
        np.testing.assert_array_equal(
            out_label, (out_image[..., 0].astype(np.int64) * 40 + out_image[..., 1]) % 200)


def test_random_crop_pads_with_void_and_mean():
    rng = np.random.default_rng(1)
    image, label = _sample(10, 50)
    mean = (123.68, 116.78, 103.94)
    out_image, out_label = random_crop(image, label, 32, rng, fill_image=mean)
    assert out_label.shape == (32, 32)
    padded = out_label == 255
    assert padded.sum() == (32 - 10) * 32  # only the rows: the width is cropped
    np.testing.assert_array_equal(out_image[padded], np.tile([124, 117, 104], (padded.sum(), 1)))


def test_center_crop():
    image, label = _sample(6, 6)
    _, out_label = center_crop(image, label, 2)
    np.testing.assert_array_equal(out_label, [[14, 15], [20, 21]])


def test_flip_moves_image_and_label_together():
    image, label = _sample(5, 7)
    flipped = [random_flip(image, label, np.random.default_rng(s)) for s in range(8)]
    assert any(f[1][0, 0] != 0 for f in flipped) and any(f[1][0, 0] == 0 for f in flipped)
    for out_image, out_label in flipped:
        np.testing.assert_array_equal(
            out_label, (out_image[..., 0].astype(np.int64) * 7 + out_image[..., 1]) % 200)


def test_loader_fixed_size_batches_are_deterministic():
    ds = SyntheticShapes(10, size=(40, 48), seed=3)
    make = lambda: BatchLoader(ds, batch_size=4, crop_size=32, flip=True, seed=5)  # noqa: E731
    loader = make()
    assert len(loader) == 3 and len(BatchLoader(ds, 4, 32, drop_last=True)) == 2
    batches = list(loader.epoch(2))
    assert [b[0].shape for b in batches] == [(4, 32, 32, 3)] * 2 + [(2, 32, 32, 3)]
    assert batches[0][0].dtype == np.uint8 and batches[0][1].dtype == np.int64
    # Same (seed, epoch): identical, also from a fresh loader and when resuming mid-epoch.
    for a, b in zip(batches, make().epoch(2)):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    resumed = list(make().epoch(2, start_batch=1))
    np.testing.assert_array_equal(resumed[0][1], batches[1][1])
    # Another epoch or seed: another order.
    assert not np.array_equal(loader.order(2), loader.order(3))
    assert not np.array_equal(loader.order(2), BatchLoader(ds, 4, seed=6).order(2))
    assert sorted(loader.order(2)) == list(range(10))


def test_loader_whole_images():
    ds = SyntheticShapes(5, seed=0, size_range=(30, 50))
    loader = BatchLoader(ds, batch_size=1, shuffle=False)
    for n, (images, labels) in enumerate(loader.epoch(0)):
        image, label = ds[n]
        np.testing.assert_array_equal(images[0], image)
        np.testing.assert_array_equal(labels[0], label)
        assert labels.dtype == np.int64
    with pytest.raises(ValueError, match="batch_size=1"):
        list(BatchLoader(ds, batch_size=5).epoch(0))

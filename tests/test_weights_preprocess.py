"""Input conventions: hand-computed pixel values for each preset, conversions, round trips."""
import json

import numpy as np
import pytest

from minifcn.preprocess import (CAFFE_FCN, CAFFE_VGG, KERAS, PRESETS, TORCHVISION, Preprocessing,
                                deprocess, get_preset, preprocess)

# One pixel, R=255 G=128 B=0.
PIXEL = np.array([[[255, 128, 0]]], dtype=np.uint8)


def test_caffe_vgg_is_bgr_0_255_minus_mean():
    x = preprocess(PIXEL, CAFFE_VGG)
    assert x.shape == (1, 3, 1, 1) and x.dtype == np.float32
    # channels are B, G, R: 0 - 103.939, 128 - 116.779, 255 - 123.68
    np.testing.assert_allclose(x[0, :, 0, 0], [-103.939, 11.221, 131.32], rtol=1e-6)


def test_caffe_fcn_mean():
    x = preprocess(PIXEL, CAFFE_FCN)
    np.testing.assert_allclose(x[0, :, 0, 0], [-104.00698793, 11.33123238, 132.32108566],
                               rtol=1e-6)


def test_torchvision_is_rgb_0_1_normalised():
    x = preprocess(PIXEL, TORCHVISION)
    # (1 - .485) / .229, (128/255 - .456) / .224, (0 - .406) / .225
    np.testing.assert_allclose(x[0, :, 0, 0], [2.2489083, 0.2051821, -1.8044444], rtol=1e-5)


def test_keras_uses_caffe_vgg_numbers():
    assert KERAS == CAFFE_VGG
    assert set(PRESETS) == {"caffe-fcn", "caffe-vgg", "keras", "torchvision"}


def test_batch_layout_is_nchw(rng):
    images = rng.integers(0, 256, size=(2, 5, 7, 3), dtype=np.uint8)
    x = preprocess(images, TORCHVISION)
    assert x.shape == (2, 3, 5, 7) and x.flags.c_contiguous
    # pixel (1, 4, 6), green channel
    expected = (images[1, 4, 6, 1] / 255 - 0.456) / 0.224
    np.testing.assert_allclose(x[1, 1, 4, 6], expected, rtol=1e-5)


def test_grayscale_and_rgba_become_rgb():
    gray = np.array([[10, 200]], dtype=np.uint8)              # (H, W) = (1, 2)
    x = preprocess(gray, CAFFE_VGG)
    assert x.shape == (1, 3, 1, 2)
    np.testing.assert_allclose(x[0, :, 0, 1], [200 - 103.939, 200 - 116.779, 200 - 123.68],
                               rtol=1e-6)
    rgba = np.concatenate([PIXEL, np.full((1, 1, 1), 7, np.uint8)], axis=-1)
    np.testing.assert_array_equal(preprocess(rgba, CAFFE_VGG), preprocess(PIXEL, CAFFE_VGG))


def test_rejects_float_and_bad_shapes():
    with pytest.raises(TypeError, match="uint8"):
        preprocess(PIXEL.astype(np.float32), CAFFE_VGG)
    with pytest.raises(ValueError, match="shape"):
        preprocess(np.zeros((2, 2, 5), np.uint8), CAFFE_VGG)


@pytest.mark.parametrize("spec", [CAFFE_FCN, CAFFE_VGG, TORCHVISION])
def test_deprocess_inverts_preprocess(spec, rng):
    image = rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    back = deprocess(preprocess(image, spec), spec)
    assert back.shape == (4, 6, 3) and back.dtype == np.uint8
    np.testing.assert_array_equal(back, image)
    batch = rng.integers(0, 256, size=(2, 3, 3, 3), dtype=np.uint8)
    np.testing.assert_array_equal(deprocess(preprocess(batch, spec), spec), batch)


def test_dict_round_trip_through_json():
    for spec in PRESETS.values():
        again = Preprocessing.from_dict(json.loads(json.dumps(spec.to_dict())))
        assert again == spec
    assert get_preset("torchvision") is TORCHVISION
    assert get_preset(CAFFE_FCN.to_dict()) == CAFFE_FCN
    with pytest.raises(ValueError, match="unknown preprocessing"):
        get_preset("imagenet")
    with pytest.raises(ValueError, match="channel_order"):
        Preprocessing("GBR", 255.0, (0, 0, 0))


def test_mean_and_std_need_one_value_per_channel():
    # A scalar mean or std is refused by name (not broadcast, not a TypeError from len()).
    with pytest.raises(ValueError, match=r"^mean: expected one value per channel \(3\), "
                                         r"got a scalar 0\.5$"):
        Preprocessing("RGB", 1.0, 0.5, (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match=r"^std: expected one value per channel \(3\), "
                                         r"got a scalar 0\.5$"):
        Preprocessing("RGB", 1.0, (0.5, 0.5, 0.5), 0.5)
    with pytest.raises(ValueError, match=r"^mean: .*got shape \(2,\)$"):
        Preprocessing("RGB", 1.0, (0.5, 0.5))
    assert Preprocessing("RGB", 1.0, (0.5, 0.5, 0.5), None).std is None


def test_mixing_conventions_changes_the_input_a_lot():
    # The same image under two conventions: conv1_1 would see numbers of a different scale
    # and channel order -- the point of recording the convention with the weights.
    image = np.full((2, 2, 3), 200, np.uint8)
    image[..., 2] = 20
    caffe = preprocess(image, CAFFE_VGG)
    torchv = preprocess(image, TORCHVISION)
    assert np.abs(caffe).max() > 50 * np.abs(torchv).max()
    assert caffe[0, 0, 0, 0] < 0 < torchv[0, 0, 0, 0]  # first channel: blue vs red


def test_cupy_matches_numpy(rng):
    from minifcn.backend import cupy_or_none, to_host
    cupy = cupy_or_none()
    if cupy is None:
        pytest.skip("needs CuPy and a GPU")
    images = rng.integers(0, 256, size=(2, 5, 4, 3), dtype=np.uint8)
    for spec in PRESETS.values():
        on_gpu = preprocess(images, spec, xp=cupy)
        assert type(on_gpu).__module__.startswith("cupy")
        np.testing.assert_allclose(to_host(on_gpu), preprocess(images, spec), rtol=1e-6)
        np.testing.assert_array_equal(deprocess(on_gpu, spec), images)

"""Notebook 00's photograph: the trunk's features, upsampling, and the released-weights branch.

The released FCN-8s (540 MB) is not needed: a narrow random FCN-8s with 21 classes and the
Caffe input convention, saved where ``minifcn download fcn8s-heavy-pascal`` puts its
conversion, takes the same code path as the real weights.
"""
import numpy as np
import pytest

from minifcn.data import VOC_CLASSES, overlay, sample_photo
from minifcn.models import load_model
from minifcn.models.fcn import FCN8s
from minifcn.models.gradcheck_cases import randomise
from minifcn.npzio import save_npz
from minifcn.ops import conv2d_forward
from minifcn.preprocess import get_preset
from minifcn.viz.photo_figures import (BLOCK_ENDS, block_mean, features_figure,
                                       released_weights, segmentation_figure, trunk_features,
                                       upsampling_figure)

PAD = 69  # the least conv1_1 padding of FCN-8s, as the shipped model


@pytest.fixture(scope="module")
def photo():
    return sample_photo()  # (300, 256, 3) uint8


def narrow_model(num_classes, pad=PAD, seed=0):
    model = FCN8s(num_classes=num_classes, width=1 / 16, pad=pad, seed=seed)
    randomise(model, np.random.default_rng(seed))  # the scorers too: not all background
    for _, p in model.named_parameters():
        p.data = p.data.astype(np.float32)
    return model


def test_released_weights_are_found_only_where_download_leaves_them(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIFCN_HOME", str(tmp_path))
    assert released_weights() is None
    (tmp_path / "fcn8s-heavy-pascal.caffemodel").write_bytes(b"not converted yet")
    assert released_weights() is None  # the original alone is not loadable
    (tmp_path / "fcn8s-heavy-pascal.npz").write_bytes(b"")
    assert released_weights() == tmp_path / "fcn8s-heavy-pascal.npz"


def test_the_weights_present_branch_segments_the_photo(tmp_path, monkeypatch, photo):
    # what notebook 00 runs when the converted FCN-8s is in the cache; the file is written
    # with the metadata minifcn.weights.convert gives a converted caffemodel (no pad: 100)
    model = narrow_model(len(VOC_CLASSES), pad=100)
    monkeypatch.setenv("MINIFCN_HOME", str(tmp_path))
    save_npz(tmp_path / "fcn8s-heavy-pascal.npz", model.state_dict(), {
        "minifcn_weights": 1, "kind": "fcn8s", "num_classes": 21, "width": 1 / 16,
        "preprocessing": get_preset("caffe-fcn").to_dict(),
        "source": {"file": "fcn8s-heavy-pascal.caffemodel", "format": "caffe", "sha256": "0"}})
    loaded = load_model(released_weights(), ops="engine")
    assert loaded.pad == 100
    fig, label = segmentation_figure(loaded, photo, VOC_CLASSES)

    # the label map: Caffe's convention applied by hand, the book's forward, argmax
    mean_bgr = np.array(get_preset("caffe-fcn").mean, np.float32)
    x = (photo[:, :, ::-1].astype(np.float32) - mean_bgr).transpose(2, 0, 1)[None]  # (1, 3, H, W)
    scores = model.eval()(np.ascontiguousarray(x))[0]  # (21, H, W)
    top_two = np.sort(scores, axis=0)[-2:]
    clear = top_two[1] - top_two[0] > 1e-3  # near-ties may go either way in float32
    assert label.shape == photo.shape[:2]
    assert clear.mean() > 0.99
    assert np.array_equal(label[clear], scores.argmax(axis=0)[clear])
    present = np.unique(label)
    assert len(present) >= 2, "the random scorers should give more than one class"

    overlay_panel = fig.axes[2]  # photo, label map, overlay
    assert np.array_equal(overlay_panel.images[0].get_array(), overlay(photo, label))
    legend = [t.get_text().rsplit(" ", 1)[0] for t in fig.legends[0].get_texts()]
    assert legend == [VOC_CLASSES[c] for c in present]


def test_segmentation_figure_refuses_names_that_do_not_fit_the_model(photo):
    with pytest.raises(ValueError, match="3 class names for a model with 5 classes"):
        segmentation_figure(narrow_model(5), photo, ("a", "b", "c"))


def test_trunk_features_keep_the_blobs_over_the_photo(photo):
    model = narrow_model(5)
    model.train()
    features = trunk_features(model, photo)
    assert list(features) == list(BLOCK_ENDS)
    assert model.training, "the model's mode is given back"
    # stride 1, 2, 4, 8, 16: about the photo's size divided by it
    assert [f.shape for f in features.values()] == [
        (4, 300, 256), (8, 150, 128), (16, 75, 64), (32, 37, 31), (32, 19, 16)]

    # block 1 by the ops themselves: conv1_1 (pad 69) and conv1_2 (pad 1) put image pixel 0
    # at blob pixel 69 - 1 = 68
    x = ((photo / 255 - 0.5) / 0.25).astype(np.float32).transpose(2, 0, 1)[None]
    layer = model.layers
    blob = np.maximum(conv2d_forward(x, layer["conv1_1"].weight.data, layer["conv1_1"].bias.data,
                                     1, PAD)[0], 0)
    blob = np.maximum(conv2d_forward(blob, layer["conv1_2"].weight.data,
                                     layer["conv1_2"].bias.data, 1, 1)[0], 0)
    assert np.allclose(features["relu1_2"], blob[0, :, 68:368, 68:324], atol=1e-5)


def test_trunk_features_name_what_is_not_a_trunk_blob(photo):
    with pytest.raises(ValueError, match=r"\['upscore2'\] are not trunk blobs"):
        trunk_features(narrow_model(5), photo, names=("relu1_2", "upscore2"))


def test_features_figure_shows_the_most_active_channels_first():
    blob = np.zeros((3, 4, 5))
    blob[2] = 2.0
    blob[0] = 1.0  # channel 1 stays zero: a ReLU that never fired
    fig = features_figure({"relu1_2": blob}, channels=3)
    assert [ax.get_title() for ax in fig.axes] == [
        "relu1_2 ch 2", "relu1_2 ch 0", "relu1_2 ch 1 (all 0)"]


def test_block_mean_averages_each_block():
    image = np.random.default_rng(0).integers(0, 256, (13, 10, 3), dtype=np.uint8)
    means = block_mean(image, 3)
    assert means.shape == (4, 3, 3)
    for i in range(4):
        for j in range(3):
            block = image[3 * i:3 * i + 3, 3 * j:3 * j + 3].reshape(-1, 3)
            assert np.allclose(means[i, j], block.mean(axis=0))


def test_bilinear_upsampling_of_block_means_restores_a_ramp():
    # the mean of a block of a linear ramp is the ramp at the block's centre, and bilinear
    # interpolation between those centres is the ramp again: exact away from the border, if
    # the upsampled pixels land where the blocks were. Nearest neighbour is off by steps.
    rows, cols = np.mgrid[0:64, 0:48]
    ramp = np.stack([2 * rows + cols, rows + 2 * cols, 100 + rows], axis=-1).astype(np.uint8)
    fig, errors = upsampling_figure(ramp, factor=8)
    assert errors["bilinear"] < 1e-9
    assert errors["nearest"] > 2
    assert len(fig.axes) == 3

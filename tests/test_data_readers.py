"""Dataset readers on small fixture sets written in each dataset's exact layout."""
import sys

import numpy as np
import pytest
from PIL import Image

from minifcn.data.folders import FolderPairs
from minifcn.data.palette import save_palette_png
from minifcn.data.pet import OxfordPet
from minifcn.data.voc import SBDSegmentation, VOCSegmentation

SIZES = {"2007_000032": (20, 30), "2007_000039": (25, 18), "2008_000002": (16, 16)}


def _write_jpg(path, height, width, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)


def _label(height, width, num_classes, seed):
    label = np.random.default_rng(seed).integers(0, num_classes, size=(height, width))
    label[0, :] = 255  # a void stripe, as VOC draws around objects
    return label.astype(np.uint8)


@pytest.fixture
def voc(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    labels = {}
    for n, (name, (h, w)) in enumerate(SIZES.items()):
        _write_jpg(root / "JPEGImages" / f"{name}.jpg", h, w, n)
        labels[name] = _label(h, w, 21, n)
        save_palette_png(root / "SegmentationClass" / f"{name}.png", labels[name])
    names = list(SIZES)
    splits = {"train": names[:2], "val": names[2:], "trainval": names}
    for split, ids in splits.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return tmp_path, root, labels


def test_voc_reads_palette_indices(voc):
    tmp_path, root, labels = voc
    for where in (tmp_path, tmp_path / "VOCdevkit", root):  # any of the three roots
        ds = VOCSegmentation(where, "train")
        assert ds.ids == ["2007_000032", "2007_000039"]
        assert ds.num_classes == 21 and len(ds.class_names) == 21
    ds = VOCSegmentation(root, "trainval")
    assert len(ds) == 3
    for i, name in enumerate(ds.ids):
        image, label = ds[i]
        assert image.shape == SIZES[name] + (3,) and image.dtype == np.uint8
        assert label.dtype == np.uint8
        np.testing.assert_array_equal(label, labels[name])


def test_voc_split_file(voc, tmp_path):
    _, root, _ = voc
    split = tmp_path / "seg11valid.txt"
    split.write_text("2008_000002\n")
    assert VOCSegmentation(root, split_file=split).ids == ["2008_000002"]


def test_voc_errors(voc, tmp_path):
    _, root, _ = voc
    with pytest.raises(FileNotFoundError, match="nowhere"):
        VOCSegmentation(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="test.txt"):
        VOCSegmentation(root, "test")
    (root / "SegmentationClass" / "2008_000002.png").unlink()
    with pytest.raises(FileNotFoundError, match="2008_000002.png"):
        VOCSegmentation(root, "val")
    save_palette_png(root / "SegmentationClass" / "2008_000002.png", np.zeros((16, 15)))
    ds = VOCSegmentation(root, "val")
    with pytest.raises(ValueError, match=r"2008_000002\.png is 16x15 .* is 16x16"):
        ds[0]


def test_colour_label_is_rejected(voc):
    _, root, _ = voc
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[..., 0] = 100  # a colour, and not one of VOC's class colours (those are read back)
    Image.fromarray(rgb).save(root / "SegmentationClass" / "2008_000002.png")
    with pytest.raises(ValueError, match=r"colour \(100, 0, 0\) .* not one of the 22 label"):
        VOCSegmentation(root, "val")[0]


@pytest.fixture
def sbd(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    root = tmp_path / "benchmark_RELEASE" / "dataset"
    (root / "img").mkdir(parents=True)
    (root / "cls").mkdir()
    labels = {}
    for n, (name, (h, w)) in enumerate(SIZES.items()):
        _write_jpg(root / "img" / f"{name}.jpg", h, w, n)
        labels[name] = _label(h, w, 21, n + 10)
        labels[name][0, :] = 0  # SBD has no void border
        present = np.unique(labels[name]).astype(np.uint8)
        # The struct layout of SBD's cls/*.mat: GTcls with Segmentation (and more fields).
        scipy_io.savemat(root / "cls" / f"{name}.mat",
                         {"GTcls": {"Segmentation": labels[name], "CategoriesPresent": present}})
    (root / "train.txt").write_text("2007_000032\n2007_000039\n")
    (root / "val.txt").write_text("2008_000002\n")
    return root, labels


def test_sbd_reads_mat_labels(sbd):
    root, labels = sbd
    for where in (root, root.parent):
        assert SBDSegmentation(where, "train").ids == ["2007_000032", "2007_000039"]
    ds = SBDSegmentation(root, "val")
    image, label = ds[0]
    assert image.shape == (16, 16, 3) and label.dtype == np.uint8
    np.testing.assert_array_equal(label, labels["2008_000002"])
    assert ds.num_classes == 21


def test_sbd_errors(sbd, tmp_path, monkeypatch):
    root, _ = sbd
    with pytest.raises(FileNotFoundError, match="img"):
        SBDSegmentation(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="test.txt"):
        SBDSegmentation(root, "test")
    (root / "cls" / "2008_000002.mat").unlink()
    with pytest.raises(FileNotFoundError, match="2008_000002.mat"):
        SBDSegmentation(root, "val")
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # as if SciPy were not installed
    with pytest.raises(ImportError, match="pip install"):
        SBDSegmentation(root, "train")[0]


@pytest.fixture
def pet(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations" / "trimaps").mkdir(parents=True)
    trimaps = {}
    for n, name in enumerate(["Abyssinian_1", "beagle_12", "yorkshire_terrier_3"]):
        h, w = 12 + n, 14
        _write_jpg(tmp_path / "images" / f"{name}.jpg", h, w, n)
        trimaps[name] = np.random.default_rng(n).integers(1, 4, size=(h, w)).astype(np.uint8)
        Image.fromarray(trimaps[name]).save(tmp_path / "annotations" / "trimaps" / f"{name}.png")
    (tmp_path / "annotations" / "trainval.txt").write_text(
        "#Image CLASS-ID SPECIES BREED ID\nAbyssinian_1 1 1 1\nbeagle_12 3 2 1\n")
    return tmp_path, trimaps


def test_pet_maps_trimaps(pet):
    root, trimaps = pet
    ds = OxfordPet(root)
    assert ds.ids == ["Abyssinian_1", "beagle_12", "yorkshire_terrier_3"]
    assert ds.num_classes == 2 and ds.class_names == ("background", "pet")
    assert OxfordPet(root, "trainval").ids == ["Abyssinian_1", "beagle_12"]
    for i, name in enumerate(ds.ids):
        image, label = ds[i]
        assert image.shape[:2] == label.shape
        trimap = trimaps[name]
        # 1 = pet -> 1, 2 = background -> 0, 3 = border -> 255
        np.testing.assert_array_equal(label[trimap == 1], 1)
        np.testing.assert_array_equal(label[trimap == 2], 0)
        np.testing.assert_array_equal(label[trimap == 3], 255)


def test_pet_errors(pet, tmp_path):
    root, _ = pet
    with pytest.raises(FileNotFoundError, match="test.txt"):
        OxfordPet(root, "test")
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        OxfordPet(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(FileNotFoundError, match="images"):
        OxfordPet(tmp_path / "elsewhere")
    Image.fromarray(np.full((12, 14), 7, np.uint8)).save(
        root / "annotations" / "trimaps" / "Abyssinian_1.png")
    with pytest.raises(ValueError, match=r"\[7\]"):
        OxfordPet(root)[0]


@pytest.fixture
def camvid(tmp_path):
    images, labels = tmp_path / "images_prepped_train", tmp_path / "annotations_prepped_train"
    images.mkdir()
    labels.mkdir()
    written = {}
    for n, name in enumerate(["0001TP_006690", "0001TP_006720"]):
        Image.fromarray(np.full((10, 12, 3), 40 * n, np.uint8)).save(images / f"{name}.png")
        written[name] = np.random.default_rng(n).integers(0, 12, size=(10, 12)).astype(np.uint8)
        written[name][0, 0] = 11  # so the largest index is seen
        Image.fromarray(written[name]).save(labels / f"{name}.png")
    return images, labels, written


def test_folder_pairs(camvid):
    images, labels, written = camvid
    ds = FolderPairs(images, labels)
    assert ds.ids == ["0001TP_006690", "0001TP_006720"]
    assert ds.num_classes == 12 and ds.class_names[11] == "class 11"
    for i, name in enumerate(ds.ids):
        image, label = ds[i]
        assert image.shape == (10, 12, 3)
        np.testing.assert_array_equal(label, written[name])
    named = FolderPairs(images, labels, class_names=[f"c{i}" for i in range(12)])
    assert named.num_classes == 12 and named.class_names[0] == "c0"
    assert FolderPairs(images, labels, num_classes=15).num_classes == 15


def test_folder_pairs_accepts_grey_rgb_labels(camvid):
    images, labels, written = camvid
    name = "0001TP_006690"
    Image.fromarray(np.repeat(written[name][..., None], 3, axis=2)).save(labels / f"{name}.png")
    np.testing.assert_array_equal(FolderPairs(images, labels)[0][1], written[name])


def test_folder_pairs_errors(camvid, tmp_path):
    images, labels, _ = camvid
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        FolderPairs(tmp_path / "missing_dir", labels)
    with pytest.raises(ValueError, match="3 class names for 12"):
        FolderPairs(images, labels, num_classes=12, class_names=["a", "b", "c"])
    Image.fromarray(np.zeros((10, 11), np.uint8)).save(labels / "0001TP_006720.png")
    with pytest.raises(ValueError, match=r"is 10x11 .* is 10x12"):
        FolderPairs(images, labels, num_classes=12)[1]
    (labels / "0001TP_006720.png").unlink()
    with pytest.raises(FileNotFoundError, match="0001TP_006720"):
        FolderPairs(images, labels)

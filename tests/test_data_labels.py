"""Label files: read as the indices that were written, or refused naming the file and the value.

Each case is a small dataset in its real layout with one label written the way the case
describes; the expected indices are the ones written, never the reader's own output.
"""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from images_testutil import PNG_SIGNATURE, png_bytes, png_chunk
from minifcn.data import FolderPairs, ImageFileError, OxfordPet, VOCSegmentation, decode_label
from minifcn.data.palette import save_palette_png, voc_colormap
from minifcn.data.voc import SBDSegmentation


def _voc(tmp_path, label, size=None, image_name="2007_000032"):
    """A VOC2012 folder with one image (``size`` = (H, W), default the label's) and label."""
    root = tmp_path / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    h, w = size if size is not None else np.asarray(label).shape[:2]
    image = root / "JPEGImages" / f"{image_name}.jpg"
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(image)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text(f"{image_name}\n")
    return root, root / "SegmentationClass" / f"{image_name}.png"


def _camvid(tmp_path, image, label_bytes=None, label=None, num_classes=12):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    if isinstance(image, np.ndarray):
        Image.fromarray(image).save(images / "0001TP_006690.png")
    else:
        (images / "0001TP_006690.jpg").write_bytes(image)
    path = labels / "0001TP_006690.png"
    if label_bytes is not None:
        path.write_bytes(label_bytes)
    else:
        Image.fromarray(label).save(path)
    return FolderPairs(images, labels, num_classes=num_classes), path


def _refused(read, *parts):
    with pytest.raises(ImageFileError) as info:
        read()
    message = str(info.value)
    assert "\n" not in message
    for part in parts:
        assert str(part) in message, message
    return message


def test_16bit_label_above_255_is_refused_not_wrapped(tmp_path):
    label = np.zeros((6, 8), np.uint16)
    label[2, 5] = 300  # 300 mod 256 = 44, which would pass for a class
    ds, path = _camvid(tmp_path, np.zeros((6, 8, 3), np.uint8), png_bytes(label), num_classes=50)
    _refused(lambda: ds[0], path, "300", "row 2, column 5")
    _refused(lambda: decode_label(path), path, "300")


def test_16bit_label_within_range_reads_exactly(tmp_path):
    label = np.array([[0, 1, 11, 255]], np.uint16)
    ds, _ = _camvid(tmp_path, np.zeros((1, 4, 3), np.uint8), png_bytes(label))
    np.testing.assert_array_equal(ds[0][1], [[0, 1, 11, 255]])


def test_value_outside_the_classes_names_file_value_and_count(tmp_path):
    label = np.zeros((5, 7), np.uint8)
    label[1, 1] = 255  # void is not a class but is allowed
    label[3, 4] = 25   # VOC has 21 classes, 0..20
    root, path = _voc(tmp_path, label)
    save_palette_png(path, label)
    _refused(lambda: VOCSegmentation(root)[0], path, "25", "21 classes", "row 3, column 4")
    label[3, 4] = 20  # the last class is fine
    save_palette_png(path, label)
    np.testing.assert_array_equal(VOCSegmentation(root)[0][1], label)


def test_size_mismatch_names_both_files(tmp_path):
    root, path = _voc(tmp_path, np.zeros((5, 7), np.uint8), size=(5, 8))
    save_palette_png(path, np.zeros((5, 7), np.uint8))
    image = root / "JPEGImages" / "2007_000032.jpg"
    _refused(lambda: VOCSegmentation(root)[0], path, image, "5x7", "5x8")


def test_voc_reads_labels_saved_as_colours(tmp_path):
    indices = np.array([[0, 1, 15], [20, 255, 7]], np.uint8)
    cmap = voc_colormap(256)
    root, path = _voc(tmp_path, indices)
    Image.fromarray(cmap[indices]).save(path)  # RGB: each pixel its class colour
    np.testing.assert_array_equal(VOCSegmentation(root)[0][1], indices)
    colours = cmap[indices].copy()
    colours[1, 2] = (1, 2, 3)  # no VOC class has this colour
    Image.fromarray(colours).save(path)
    _refused(lambda: VOCSegmentation(root)[0], path, "(1, 2, 3)", "row 1, column 2")


def test_colour_label_without_a_colour_table_is_refused(tmp_path):
    label = np.zeros((4, 4, 3), np.uint8)
    label[2, 1] = (128, 64, 128)  # CamVid's road colour: this reader has no colour table
    ds, path = _camvid(tmp_path, np.zeros((4, 4, 3), np.uint8), label=label)
    _refused(lambda: ds[0], path, "(128, 64, 128)", "row 2, column 1", "grey")


def _exif_jpeg(pixels, orientation):
    exif = Image.Exif()
    exif[274] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", [6, 8])
def test_label_turns_with_its_exif_rotated_image(tmp_path, orientation):
    # Stored 16 rows x 24 columns: the left half red with class 1, the right half blue with 2.
    pixels = np.zeros((16, 24, 3), np.uint8)
    pixels[:, :12] = (255, 0, 0)
    pixels[:, 12:] = (0, 0, 255)
    label = np.ones((16, 24), np.uint8)
    label[:, 12:] = 2
    ds, _ = _camvid(tmp_path, _exif_jpeg(pixels, orientation), label=label, num_classes=3)
    image, turned = ds[0]
    assert image.shape == (24, 16, 3) and turned.shape == (24, 16)
    # 6 turns clockwise: the stored left (red) half comes to the top; 8 (anticlockwise)
    # brings the stored right (blue) half to the top.
    top_class, top_colour = (1, (255, 0, 0)) if orientation == 6 else (2, (0, 0, 255))
    np.testing.assert_array_equal(turned[:12], top_class)
    np.testing.assert_array_equal(turned[12:], 3 - top_class)
    assert np.abs(image[:10].astype(int) - top_colour).max() < 40


def test_label_with_its_own_different_orientation_is_refused(tmp_path):
    pixels = np.zeros((4, 6, 3), np.uint8)
    ds, path = _camvid(tmp_path, _exif_jpeg(pixels, 6), label=np.zeros((4, 6), np.uint8))
    exif = Image.Exif()
    exif[274] = 3
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(path, exif=exif.tobytes())
    image = tmp_path / "images" / "0001TP_006690.jpg"
    _refused(lambda: ds[0], path, image, "orientation 3", "has 6")


@pytest.mark.parametrize("case", ["jpeg", "4-bit", "white-is-zero", "transparent", "float",
                                  "16-bit rgb"])
def test_labels_that_cannot_hold_indices_exactly_are_refused(tmp_path, case):
    path = tmp_path / "label.png"
    if case == "jpeg":  # lossy: edges get values between the classes
        path = tmp_path / "label.jpg"
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(path, "JPEG")
        expected = "JPEG"
    elif case == "4-bit":  # Pillow widens a stored 1 to 17
        path.write_bytes(_four_bit_grey_png())
        expected = "L;4"
    elif case == "white-is-zero":  # TIFF photometric 0: Pillow inverts, 1 reads as 254
        path = tmp_path / "label.tif"
        path.write_bytes(_white_is_zero_tiff(np.array([[0, 1, 2]], np.uint8)))
        expected = "L;I"
    elif case == "transparent":
        Image.fromarray(np.array([[[0, 0, 0, 0]]], np.uint8), "RGBA").save(path)
        expected = "transparent"
    elif case == "float":
        path = tmp_path / "label.tif"
        Image.fromarray(np.zeros((2, 2), np.float32)).save(path)
        expected = "F image"
    else:  # Pillow keeps only the high byte of 16-bit RGB
        path.write_bytes(png_bytes(np.full((1, 2, 3), 300, np.uint16)))
        expected = "RGB;16B"
    _refused(lambda: decode_label(path), path, expected)


def _white_is_zero_tiff(pixels):
    """An 8-bit greyscale TIFF whose PhotometricInterpretation (tag 262) is 0, white is zero."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "TIFF")
    data = bytearray(buffer.getvalue())
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        if struct.unpack_from("<H", data, entry)[0] == 262:
            struct.pack_into("<H", data, entry + 8, 0)
    return bytes(data)


def _four_bit_grey_png():
    header = struct.pack(">IIBBBBB", 2, 1, 4, 0, 0, 0, 0)  # 2x1, 4 bits, greyscale
    row = b"\x00" + bytes([0x01 << 4 | 0x02])                # samples 1 and 2
    return (PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(row))
            + png_chunk(b"IEND", b""))


def test_pet_trimap_with_other_values_is_refused(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations" / "trimaps").mkdir(parents=True)
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(tmp_path / "images" / "cat_1.jpg")
    trimap = tmp_path / "annotations" / "trimaps" / "cat_1.png"
    Image.fromarray(np.array([[1, 2, 3, 4]] * 3, np.uint8)).save(trimap)
    _refused(lambda: OxfordPet(tmp_path)[0], trimap, "[4]")


@pytest.fixture
def sbd_root(tmp_path):
    pytest.importorskip("scipy.io")
    root = tmp_path / "dataset"
    (root / "img").mkdir(parents=True)
    (root / "cls").mkdir()
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(root / "img" / "2008_000002.jpg")
    (root / "train.txt").write_text("2008_000002\n")
    return root


def test_sbd_value_above_255_is_refused_not_wrapped(sbd_root):
    from scipy.io import savemat

    label = np.zeros((3, 4), np.uint16)
    label[1, 2] = 300
    path = sbd_root / "cls" / "2008_000002.mat"
    savemat(path, {"GTcls": {"Segmentation": label}})
    _refused(lambda: SBDSegmentation(sbd_root)[0], path, "300", "row 1, column 2")
    label[1, 2] = 21  # fits in uint8, but VOC has 21 classes
    savemat(path, {"GTcls": {"Segmentation": label}})
    _refused(lambda: SBDSegmentation(sbd_root)[0], path, "21 classes")
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    _refused(lambda: SBDSegmentation(sbd_root)[0], path, "MATLAB")

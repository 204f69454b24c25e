"""Image files: deep and float pixels scaled by their bit depth, EXIF orientation applied,
transparency composited, and damaged files or bombs refused with one line naming the file.

Expected values come from the file formats' definitions (a 16-bit sample v is v / 65535 of
full scale; EXIF orientation 6 means "turn 90 degrees clockwise to show"), not from the code.
"""
import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from images_testutil import png_bytes
from minifcn.data import ImageFileError, read_image
from minifcn.data.imagefile import orient
from minifcn.errors import FileFormatError


def _write(path, data):
    path.write_bytes(data)
    return path


def _grey(image):
    """The single grey channel of an (H, W, 3) image whose channels must agree."""
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    np.testing.assert_array_equal(image[..., 0], image[..., 1])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    return image[..., 0]


# 16-bit v is v / 65535 of full scale: 65535 -> 255, 32768 -> 127.5 -> 128, 300 -> 1.17 -> 1.
SIXTEEN_BIT = np.array([[0, 300, 32768, 65535]], dtype=np.uint16)
SCALED = [[0, 1, 128, 255]]


def test_16bit_grey_png_is_scaled_not_clipped(tmp_path):
    path = _write(tmp_path / "grey16.png", png_bytes(SIXTEEN_BIT))  # Pillow opens it as I;16
    np.testing.assert_array_equal(_grey(read_image(path)), SCALED)


def test_16bit_big_endian_tiff_and_pgm_are_scaled(tmp_path):
    tiff = tmp_path / "grey16b.tif"
    big_endian = SIXTEEN_BIT.astype(">u2")
    Image.frombytes("I;16B", (4, 1), big_endian.tobytes()).save(tiff)  # opens as I;16B
    np.testing.assert_array_equal(_grey(read_image(tiff)), SCALED)
    # PGM with maxval 65535: Pillow opens it in mode "I".
    pgm = _write(tmp_path / "grey16.pgm", b"P5\n4 1\n65535\n" + big_endian.tobytes())
    np.testing.assert_array_equal(_grey(read_image(pgm)), SCALED)


def test_32bit_signed_tiff_is_scaled_by_its_bit_depth(tmp_path):
    path = tmp_path / "grey32.tif"  # mode "I", BitsPerSample 32, SampleFormat 2 (signed)
    top = 2**31 - 1
    Image.fromarray(np.array([[0, 2**30, top]], dtype=np.int32)).save(path)
    np.testing.assert_array_equal(_grey(read_image(path)), [[0, 128, 255]])


def test_16bit_rgb_png_keeps_its_full_range(tmp_path):
    pixels = np.array([[[65535, 32768, 0], [0, 65535, 32768]]], dtype=np.uint16)
    path = _write(tmp_path / "rgb16.png", png_bytes(pixels))
    np.testing.assert_array_equal(read_image(path), [[[255, 128, 0], [0, 255, 128]]])


def test_float_tiff_is_read_as_0_to_1(tmp_path):
    path = tmp_path / "float.tif"  # mode "F", SampleFormat 3
    Image.fromarray(np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32)).save(path)
    np.testing.assert_array_equal(_grey(read_image(path)), [[0, 64, 128, 255]])


@pytest.mark.parametrize("values, found", [([0.0, 2.0], "2"), ([-0.5, 1.0], "-0.5"),
                                           ([0.0, np.nan], "nan"), ([0.0, 255.0], "255")])
def test_float_tiff_outside_0_to_1_is_refused(tmp_path, values, found):
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([values], dtype=np.float32)).save(path)
    with pytest.raises(ImageFileError, match=rf"float\.tif .*{found}.*outside 0\.\.1"):
        read_image(path)


def _quadrants(width, height):
    """(height, width, 3) uint8: red top-left, green top-right, blue bottom-left, white
    bottom-right; large flat areas so that JPEG keeps each colour."""
    image = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    image[:h, :w] = (255, 0, 0)
    image[:h, w:] = (0, 255, 0)
    image[h:, :w] = (0, 0, 255)
    image[h:, w:] = (255, 255, 255)
    return image


def _save_jpeg(path, pixels, orientation):
    exif = Image.Exif()
    exif[274] = orientation  # Orientation
    Image.fromarray(pixels).save(path, quality=95, exif=exif.tobytes())


def _corner_colours(image):
    """The colour of each quadrant's centre: top-left, top-right, bottom-left, bottom-right."""
    h, w = image.shape[0] // 4, image.shape[1] // 4
    return [tuple(int(round(c / 255)) * 255 for c in image[y, x])
            for y, x in [(h, w), (h, 3 * w), (3 * h, w), (3 * h, 3 * w)]]


RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


@pytest.mark.parametrize("orientation, corners", [
    # 6: turn the stored image 90 degrees clockwise: its bottom-left comes to the top-left.
    (6, [BLUE, RED, WHITE, GREEN]),
    # 8: turn it 90 degrees anticlockwise: its top-right comes to the top-left.
    (8, [GREEN, WHITE, RED, BLUE]),
    (3, [WHITE, BLUE, GREEN, RED]),  # 180 degrees
    (1, [RED, GREEN, BLUE, WHITE]),
])
def test_exif_orientation_is_applied(tmp_path, orientation, corners):
    path = tmp_path / f"o{orientation}.jpg"
    _save_jpeg(path, _quadrants(48, 32), orientation)  # stored 32 rows x 48 columns
    image = read_image(path)
    assert image.shape == ((48, 32, 3) if orientation in (6, 8) else (32, 48, 3))
    assert _corner_colours(image) == corners


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_pillow_exif_transpose(orientation):
    stored = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)  # every pixel distinct
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[274] = orientation
    img.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(img))
    np.testing.assert_array_equal(orient(stored, orientation), expected)
    np.testing.assert_array_equal(orient(stored[..., 0], orientation), expected[..., 0])


def test_transparency_is_composited_over_black(tmp_path):
    rgba = np.array([[[200, 100, 50, 0], [200, 100, 50, 255], [200, 100, 50, 128]]], np.uint8)
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    # alpha 0 -> black; 255 -> the colour; 128 -> the colour times 128/255
    np.testing.assert_array_equal(read_image(path),
                                  [[[0, 0, 0], [200, 100, 50], [100, 50, 25]]])
    la = tmp_path / "la.png"
    Image.fromarray(np.array([[[90, 0], [90, 255]]], np.uint8), "LA").save(la)
    np.testing.assert_array_equal(_grey(read_image(la)), [[0, 90]])
    palette = Image.frombytes("P", (2, 1), bytes([0, 1]))
    palette.putpalette([10, 20, 30, 40, 50, 60])
    palette.info["transparency"] = 0  # index 0 fully transparent
    palette.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), [[[0, 0, 0], [40, 50, 60]]])


def test_other_modes_become_rgb(tmp_path):
    Image.fromarray(np.array([[0, 77, 255]], np.uint8), "L").save(tmp_path / "l.png")
    np.testing.assert_array_equal(_grey(read_image(tmp_path / "l.png")), [[0, 77, 255]])
    Image.fromarray(np.array([[False, True]])).save(tmp_path / "bw.png")  # mode "1"
    np.testing.assert_array_equal(_grey(read_image(tmp_path / "bw.png")), [[0, 255]])
    # CMYK: no ink is white, full cyan is (0, 255, 255).
    cmyk = Image.frombytes("CMYK", (2, 1), bytes([0, 0, 0, 0, 255, 0, 0, 0]))
    cmyk.save(tmp_path / "cmyk.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "cmyk.tif"),
                                  [[[255, 255, 255], [0, 255, 255]]])


def _png(tmp_path, name="x.png", size=(12, 10)):
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return _write(tmp_path / name, buffer.getvalue())


def _refused(path, *patterns):
    with pytest.raises(FileFormatError) as info:
        read_image(path)
    message = str(info.value)
    assert isinstance(info.value, ImageFileError) and str(path) in message and "\n" not in message
    for pattern in patterns:
        assert pattern in message, message
    return message


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_png_and_jpeg_are_refused(tmp_path, keep):
    png = _png(tmp_path).read_bytes()
    _refused(_write(tmp_path / "cut.png", png[:int(len(png) * keep)]))
    buffer = io.BytesIO()
    Image.fromarray(_quadrants(64, 48)).save(buffer, "JPEG", quality=90)
    jpeg = buffer.getvalue()
    _refused(_write(tmp_path / "cut.jpg", jpeg[:int(len(jpeg) * keep)]))


def test_corrupt_and_foreign_files_are_refused(tmp_path):
    png = bytearray(_png(tmp_path).read_bytes())
    png[60] ^= 0xFF  # inside IDAT: its CRC no longer matches
    _refused(_write(tmp_path / "flipped.png", bytes(png)), "corrupt")
    _refused(_write(tmp_path / "notes.png", b"not an image at all\n"), "not an image")
    # An EPS file is an image to Pillow, which would run Ghostscript on it: never opened.
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 1 1\nshowpage\n"
    _refused(_write(tmp_path / "drawing.eps", eps), "not an image")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")


def test_decompression_bombs_are_refused(tmp_path):
    pixels = np.zeros((2, 2), np.uint8)
    limit = Image.MAX_IMAGE_PIXELS
    assert limit == 89_478_485  # the documented bound: Pillow's default
    # Past twice the bound Pillow raises; between one and two times it only warns.
    huge = _write(tmp_path / "huge.png", png_bytes(pixels, size=(100_000, 100_000)))
    _refused(huge, "decompression bomb", "MAX_IMAGE_PIXELS")
    warned = _write(tmp_path / "warned.png", png_bytes(pixels, size=(10_000, 10_000)))
    _refused(warned, "decompression bomb", "MAX_IMAGE_PIXELS")


def test_the_bound_is_pillows_setting(tmp_path, monkeypatch):
    path = _png(tmp_path, size=(20, 20))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 400 pixels: the warning range
    _refused(path, "decompression bomb")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)
    assert read_image(path).shape == (20, 20, 3)


def test_the_shipped_photograph_is_a_real_colour_image():
    from minifcn.data import sample_photo

    photo = sample_photo()
    assert photo.shape == (300, 256, 3) and photo.dtype == np.uint8
    # a photograph, not a flat or synthetic picture: many distinct colours, full range used
    assert len(np.unique(photo.reshape(-1, 3), axis=0)) > 5000
    assert photo.min() < 30 and photo.max() > 220

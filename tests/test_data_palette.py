"""The VOC colour map and the label drawing helpers."""
import numpy as np
from PIL import Image

from minifcn.data.palette import VOC_CLASSES, colorize, overlay, save_palette_png, voc_colormap


def test_voc_classes():
    assert len(VOC_CLASSES) == 21
    assert VOC_CLASSES[0] == "background" and VOC_CLASSES[15] == "person"
    assert VOC_CLASSES[-1] == "tvmonitor"


def test_colormap_known_entries():
    cmap = voc_colormap()
    assert cmap.shape == (256, 3) and cmap.dtype == np.uint8
    # Bits of k, three at a time, set bit 7, then 6, then 5 of (R, G, B):
    # 1 = 0b001 -> R 128; 2 -> G 128; 4 -> B 128; 8 = 0b001000 -> R 64; 9 -> R 128+64;
    # 15 = 0b001111 -> R 128+64, G 128, B 128; 20 = 0b010100 -> G 64, B 128;
    # 255 = 0b11111111 -> R, G 128+64+32 = 224, B 128+64 = 192.
    expected = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128),
                8: (64, 0, 0), 9: (192, 0, 0), 15: (192, 128, 128), 20: (0, 64, 128),
                255: (224, 224, 192)}
    for k, rgb in expected.items():
        assert tuple(cmap[k]) == rgb, k
    assert len({tuple(c) for c in cmap}) == 256  # every label its own colour
    np.testing.assert_array_equal(voc_colormap(21), cmap[:21])


def test_colorize_and_overlay():
    label = np.array([[0, 1], [2, 255]])
    rgb = colorize(label)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 1]) == (128, 0, 0) and tuple(rgb[1, 1]) == (224, 224, 192)
    image = np.full((2, 2, 3), 100, dtype=np.uint8)
    out = overlay(image, label, alpha=0.5)
    assert out.dtype == np.uint8
    assert tuple(out[0, 0]) == (100, 100, 100)  # background shows the image
    assert tuple(out[0, 1]) == (114, 50, 50)  # (100 + 128) / 2, 100 / 2, 100 / 2


def test_palette_png_round_trip(tmp_path):
    label = np.random.default_rng(0).integers(0, 21, size=(7, 9)).astype(np.uint8)
    label[0, :3] = 255
    path = tmp_path / "label.png"
    save_palette_png(path, label)
    with Image.open(path) as img:
        assert img.mode == "P"
        np.testing.assert_array_equal(np.asarray(img), label)
        palette = np.array(img.getpalette()[:768]).reshape(256, 3)
    np.testing.assert_array_equal(palette, voc_colormap())

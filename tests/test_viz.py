"""The figures: written, small, animated as intended, and drawn from the real ops."""
import argparse

import numpy as np
import pytest
from PIL import Image

from minifcn.figures import FIGURES, add_figures_parser, make_figures
from minifcn.ops import conv2d_forward, conv_transpose2d_forward
from minifcn.ops.conv_matrix import conv_matrix
from minifcn.viz import bilinear_upsample, demo_picture
from minifcn.viz.conv_animations import TOY_SEED, toy_arrays
from minifcn.viz.conv_figures import op_matrix


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    return out, make_figures(out)


def test_every_figure_is_written_and_small(figures):
    out, paths = figures
    assert [p.name for p in paths] == list(FIGURES)
    for path in paths:
        assert path.parent == out
        with Image.open(path) as image:
            assert image.width > 200 and image.height > 150
        limit = 200_000 if path.suffix == ".gif" else 150_000
        assert 2_000 < path.stat().st_size < limit, path.name


@pytest.mark.parametrize("name, frames", [("conv2d_k3_s1_p0.gif", 4 + 1),
                                          ("conv2d_k3_s2_p1.gif", 9 + 1),
                                          ("conv_transpose2d_k3_s1_p0.gif", 4 + 1),
                                          ("conv_transpose2d_k3_s2_p1.gif", 9 + 1)])
def test_animations_have_one_frame_per_step_and_loop(figures, name, frames):
    # one frame per output pixel (conv) or per input pixel (transposed), then the result
    with Image.open(figures[0] / name) as gif:
        assert gif.n_frames == frames
        assert gif.info.get("loop") == 0
        gif.seek(0)
        first = np.asarray(gif.convert("RGB"))
        gif.seek(frames - 1)
        last = np.asarray(gif.convert("RGB"))
    assert first.shape == last.shape and (first != last).any()


def test_matrix_figure_reads_the_ops_and_matches_the_oracle():
    # the figure's C and C^T come from the fast ops on one-hot images; the independent
    # conv_matrix must agree, and the two must be transposes of each other
    _, weight = toy_arrays((4, 4), 3, TOY_SEED)
    C = op_matrix(lambda x: conv2d_forward(x, weight)[0], (4, 4))
    CT = op_matrix(lambda y: conv_transpose2d_forward(y, weight)[0], (2, 2))
    assert C.shape == (4, 16) and CT.shape == (16, 4)
    np.testing.assert_array_equal(C, conv_matrix(weight, (4, 4)))
    np.testing.assert_array_equal(CT, C.T)


def test_toy_arrays_share_the_kernel_and_are_small_integers():
    x1, w1 = toy_arrays((4, 4), 3)
    x2, w2 = toy_arrays((2, 2), 3, low=1)
    np.testing.assert_array_equal(w1, w2)
    assert w1.shape == (1, 1, 3, 3) and x2.min() >= 1 and x1.max() <= 3
    assert np.array_equal(x1, np.round(x1))


def test_bilinear_upsample_of_the_demo_picture():
    picture = demo_picture(16)
    assert picture.shape == (3, 16, 16) and 0 <= picture.min() and picture.max() <= 1
    big = bilinear_upsample(picture, 8)
    assert big.shape == (3, 128, 128)
    # away from the border every output is a convex mix of its neighbours: stays in [0, 1]
    inner = big[:, 4:-4, 4:-4]
    assert inner.min() >= -1e-6 and inner.max() <= 1 + 1e-6
    # a constant picture stays constant in the interior (weights sum to 1)
    flat = bilinear_upsample(np.full((1, 6, 6), 0.5), 4)
    np.testing.assert_allclose(flat[:, 2:-2, 2:-2], 0.5)


def test_figures_command(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="minifcn")
    add_figures_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["figures", "--out", str(tmp_path / "f"), "--only", "not_inverse.png"])
    assert args.func(args) == 0
    assert (tmp_path / "f" / "not_inverse.png").exists()
    assert "not_inverse.png" in capsys.readouterr().out
    assert parser.parse_args(["figures"]).out.endswith("figures")
    with pytest.raises(SystemExit):
        parser.parse_args(["figures", "--only", "nope.png"])
    with pytest.raises(ValueError, match="nope.png"):
        make_figures(tmp_path, ["nope.png"])


def test_explore_draws_one_still_figure_at_the_defaults(monkeypatch):
    from minifcn.viz.explore import explore, interactive

    monkeypatch.setenv("MINIFCN_STATIC_FIGURES", "1")
    assert not interactive()
    calls = []
    explore(lambda k, s, mode: calls.append((k, s, mode)), defaults=dict(k=3),
            k=(1, 7), s=(1, 4), mode=["full", "same"])
    assert calls == [(3, 1, "full")]  # k from the defaults, s its lowest, mode its first choice


def test_explore_refuses_a_default_without_a_control(monkeypatch):
    from minifcn.viz.explore import explore

    monkeypatch.setenv("MINIFCN_STATIC_FIGURES", "1")
    with pytest.raises(ValueError, match=r"\['p'\] have no control"):
        explore(lambda k: None, defaults=dict(p=1), k=(1, 3))


def test_error_picture_paints_wrong_pixels_by_where_they_are():
    from minifcn.viz import error_picture

    label = np.array([[0, 0, 1, 1], [0, 0, 1, 255]])
    prediction = np.array([[0, 1, 1, 0], [0, 0, 0, 0]])
    band = np.array([[False, True, True, False], [False, True, True, False]])
    picture = error_picture(prediction, label, band)
    black, dark_red = (0, 0, 0), (128, 0, 0)  # VOC colours of classes 0 and 1
    magenta, cyan = (255, 0, 255), (0, 230, 255)  # wrong in the band, wrong elsewhere
    expected = np.array([[black, magenta, dark_red, cyan],
                         [black, black, magenta, black]], dtype=np.uint8)  # void is never wrong
    assert np.array_equal(picture, expected)


def test_coarse_map_is_score_fr_at_its_own_size():
    from minifcn.models import FCN32s
    from minifcn.models.segment import coarse_segment_batch

    model = FCN32s(5, 1 / 16, pad=81)
    model.score_fr.bias.data[:] = [0, 0, 0, 1, 0]  # its weights start at zero: class 3 wins
    coarse = coarse_segment_batch(model, np.zeros((2, 96, 100, 3), np.uint8))
    # 96 + 2*81 - 2 = 256, pooled with ceil to 128, 64, 32, 16, 8, fc6 (7x7) 2;
    # 100 -> 260 -> 130, 65, 33, 17, 9 -> 3
    assert coarse.shape == (2, 2, 3) and (coarse == 3).all()


def test_skip_figure_draws_each_prediction_over_its_coarse_map():
    from minifcn.data.synthetic import SyntheticShapes
    from minifcn.models import FCN8s, FCN32s
    from minifcn.viz import skip_figure

    data = SyntheticShapes(2, 96, seed=3)
    images, labels = (np.stack(a) for a in zip(data[0], data[1]))
    models = {"a": FCN32s(5, 1 / 32, pad=81), "b": FCN8s(5, 1 / 32, pad=81)}
    fig = skip_figure(models, images, labels)
    axes = np.array(fig.axes).reshape(4, 4)  # two rows per image, input | truth | a | b
    shapes = [[ax.images[0].get_array().shape if ax.images else None for ax in row] for row in axes]
    assert shapes[0] == shapes[2] == [(96, 96, 3)] * 4
    assert shapes[1] == shapes[3] == [None, None, (2, 2, 3), (2, 2, 3)]
    assert [ax.get_title() for ax in axes[0]] == ["input", "ground truth", "a", "b"]

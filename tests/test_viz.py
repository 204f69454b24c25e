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

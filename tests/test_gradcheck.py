"""The gradient checker itself, and the `minifcn gradcheck` command."""
import numpy as np
import pytest

from minifcn.cli import main
from minifcn.gradcheck import directional_check, numerical_gradient, rel_error, sampled_rel_error


def test_numerical_gradient_of_known_function():
    x = np.array([1.0, -2.0, 3.0])
    numeric = numerical_gradient(lambda: (x ** 3).sum(), x)
    np.testing.assert_allclose(numeric, 3 * x ** 2, rtol=1e-8)
    np.testing.assert_array_equal(x, [1.0, -2.0, 3.0])  # restored after perturbation


def test_rel_error_detects_a_wrong_gradient():
    assert rel_error(np.ones(3), np.ones(3)) == 0.0
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.2])) == pytest.approx(0.2 / 2.2)


def test_sampled_and_directional_checks_catch_a_bug(rng):
    x = rng.standard_normal((4, 5))
    dout = rng.standard_normal((4, 5))

    def f():
        return np.sin(x)

    numeric = numerical_gradient(f, x, dout, num_samples=6, rng=rng)
    assert np.isnan(numeric).sum() == 14
    assert sampled_rel_error(numeric, np.cos(x) * dout) < 1e-8
    assert directional_check(f, x, np.cos(x) * dout, dout)[2] < 1e-8
    assert directional_check(f, x, -np.sin(x) * dout, dout)[2] > 1e-2  # a wrong gradient fails


def test_cli_gradcheck_table_passes(capsys):
    assert main(["gradcheck", "--no-models"]) == 0
    out = capsys.readouterr().out
    for op in ["conv2d", "conv_transpose2d", "max_pool2d", "relu", "dropout", "crop", "scale",
               "softmax_cross_entropy", "conv2d (engine)", "conv_transpose2d (engine)",
               "max_pool2d (engine)", "relu (engine)"]:
        assert op in out
    assert "FAIL" not in out and "configurations pass" in out
    assert main(["gradcheck", "--no-models", "--ops", "engine"]) == 0
    assert "dropout" not in capsys.readouterr().out  # the engine's dropout is the book's


def test_pinned_branches_hold_relu_masks_and_pool_winners(rng):
    from minifcn.gradcheck_pins import pinned_branches
    from minifcn.models import FCN32s
    from minifcn.models.gradcheck_cases import randomise

    for ops in ("book", "engine"):
        model = FCN32s(num_classes=3, width=1 / 64, dtype=np.float64, ops=ops).eval()
        randomise(model, np.random.default_rng(0))  # scorers too: scores that are not all zero
        x = rng.standard_normal((1, 3, 9, 7))
        expected = model(x)
        assert np.abs(expected).max() > 1e-3
        unpinned = model(-x) + model(x) - 2 * model(0 * x)
        assert np.abs(unpinned).max() > 1e-2 * np.abs(expected).max()  # ReLU and max are not affine
        with pinned_branches(model, at=lambda: model(x)):
            np.testing.assert_allclose(model(x), expected, rtol=1e-12, atol=1e-12)  # at x0: the net
            # the pinned net is affine in its input, so f(-x) + f(x) = 2 f(0), where the
            # unpinned net (every sign and winner changed) is not
            np.testing.assert_allclose(model(-x) + model(x), 2 * model(0 * x), rtol=1e-9, atol=1e-9)
            pool1 = model.layers["pool1"]
            assert "forward" in vars(pool1)  # a wrapper on the instance, not in the class
        assert "forward" not in vars(model.layers["pool1"]) and "forward" not in vars(model.layers["relu1_1"])
        np.testing.assert_allclose(model(x), expected, rtol=1e-6, atol=1e-7)


def test_pinned_pool_reads_the_winners_of_the_first_input():
    from minifcn.gradcheck_pins import read_winners
    from minifcn.ops import max_pool2d_forward

    x0 = np.array([[[[1.0, 5.0, 2.0], [4.0, 3.0, 9.0]]]])
    _, cache = max_pool2d_forward(x0, 2, 2, ceil_mode=True)
    x = np.array([[[[10.0, 20.0, 30.0], [40.0, 50.0, 60.0]]]])
    # winners at x0: (0, 1) and (1, 2); x's values there, not its maxima (50 and 60)
    np.testing.assert_array_equal(read_winners(x, cache)[0, 0], [[20.0, 60.0]])


def test_cli_gradcheck_says_it_runs_on_the_cpu_when_asked_for_the_gpu(monkeypatch, capsys):
    from minifcn import cli, gradcheck_report

    monkeypatch.setattr(cli, "resolve_device", lambda device: "gpu")  # as on a GPU machine
    first_row = gradcheck_report.cases()[:1]
    monkeypatch.setattr(gradcheck_report, "cases", lambda ops: first_row)
    assert cli.main(["--device", "gpu", "gradcheck", "--no-models"]) == 0
    captured = capsys.readouterr()
    assert "runs on the CPU" in captured.err and "configurations pass" in captured.out


def test_cli_gradcheck_fails_on_a_broken_backward(monkeypatch, capsys):
    from minifcn import ops
    from minifcn import gradcheck_report

    def broken(dout, cache):
        return (ops.relu_backward(dout, cache) * 1.001,)

    case = gradcheck_report._unary("relu", "broken", (1, 2, 3, 3), ops.relu_forward, lambda d, c: broken(d, c)[0])
    monkeypatch.setattr(gradcheck_report, "cases", lambda ops: [case])
    assert main(["gradcheck", "--no-models"]) == 1
    assert "FAIL" in capsys.readouterr().out

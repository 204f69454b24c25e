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
               "softmax_cross_entropy"]:
        assert op in out
    assert "FAIL" not in out and "configurations pass" in out


def test_cli_gradcheck_says_it_runs_on_the_cpu_when_asked_for_the_gpu(monkeypatch, capsys):
    from minifcn import cli, gradcheck_report

    monkeypatch.setattr(cli, "resolve_device", lambda device: "gpu")  # as on a GPU machine
    first_row = gradcheck_report.cases()[:1]
    monkeypatch.setattr(gradcheck_report, "cases", lambda: first_row)
    assert cli.main(["--device", "gpu", "gradcheck", "--no-models"]) == 0
    captured = capsys.readouterr()
    assert "runs on the CPU" in captured.err and "configurations pass" in captured.out


def test_cli_gradcheck_fails_on_a_broken_backward(monkeypatch, capsys):
    from minifcn import ops
    from minifcn import gradcheck_report

    def broken(dout, cache):
        return (ops.relu_backward(dout, cache) * 1.001,)

    case = gradcheck_report._unary("relu", "broken", (1, 2, 3, 3), ops.relu_forward, lambda d, c: broken(d, c)[0])
    monkeypatch.setattr(gradcheck_report, "cases", lambda: [case])
    assert main(["gradcheck", "--no-models"]) == 1
    assert "FAIL" in capsys.readouterr().out

"""Trainer: bit-for-bit resume, NaN handling, atomic checkpoints, optimizer, schedules, CLI."""
import json
import math
import os

import numpy as np
import pytest

from minifcn.cli import main
from minifcn.layers import Parameter
from minifcn.models import FCN8s, load_model
from minifcn.npzio import load_npz
from minifcn.train import SGD, Adam, Trainer, TrainingDiverged, learning_rate, preset
from minifcn.train.optim import cooldown_factor
from minifcn.train.demo import draw_comparison

QUICK = preset("quick").replace(iterations=12, val_every=6, checkpoint_every=6, val_images=4)


def test_learning_rate_schedules():
    assert learning_rate(0.1, 7) == 0.1
    assert learning_rate(0.1, 25, "step", step_size=10, gamma=0.5) == pytest.approx(0.025)
    assert learning_rate(0.1, 50, "poly", max_iter=100, power=1.0) == pytest.approx(0.05)
    assert learning_rate(0.1, 0, warmup=10) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="unknown schedule"):
        learning_rate(0.1, 0, "cosine")


def test_cooldown_takes_the_rate_linearly_to_zero(tmp_path):
    assert cooldown_factor(0.3, 0.0) == 1.0
    assert cooldown_factor(0.5, 0.25) == 1.0
    assert cooldown_factor(0.875, 0.25) == pytest.approx(0.5)
    assert cooldown_factor(1.2, 0.25) == 0.0
    config = QUICK.replace(cooldown=0.5, val_every=0, checkpoint_every=0)
    Trainer(config, tmp_path, progress=False).run()
    rates = [float(r.split(",")[3]) for r in (tmp_path / "log.csv").read_text().splitlines()[1:]]
    base = config.lr
    for k in range(config.warmup, config.iterations):  # after warm-up: fixed rate x cool-down
        assert rates[k] == pytest.approx(base * min(1.0, (1 - k / config.iterations) / 0.5), rel=1e-5)
    assert rates[5] == pytest.approx(base) and rates[-1] < 0.2 * base


def test_sgd_momentum_decay_and_bias_rate():
    model = FCN8s(num_classes=2, width=1 / 64, pad=69)
    w, b = model.fc7.weight, model.fc7.bias
    w.data[:] = 1.0
    b.data[:] = 1.0
    opt = SGD([("fc7.weight", w), ("fc7.bias", b)], lr=0.1, momentum=0.5, weight_decay=0.01, bias_lr_x2=True)
    for _ in range(2):
        w.grad = np.ones_like(w.data)
        b.grad = np.ones_like(b.data)
        opt.step()
    # weight: v1 = 1 + 0.01*1 = 1.01, w1 = 1 - 0.101 = 0.899; v2 = 0.5*1.01 + 1 + 0.00899, w2 = w1 - 0.1*v2
    v2 = 0.5 * 1.01 + 1 + 0.01 * 0.899
    np.testing.assert_allclose(w.data, 0.899 - 0.1 * v2, rtol=1e-6)
    # bias: no decay, doubled rate: v1 = 1, b1 = 0.8; v2 = 1.5, b2 = 0.8 - 0.3
    np.testing.assert_allclose(b.data, 0.5, rtol=1e-6)


def adam_by_hand(w, grads, lr, beta1, beta2, eps, decay):
    """Adam with decoupled weight decay, one scalar at a time, as Kingma and Ba's algorithm 1
    and Loshchilov and Hutter's AdamW write it."""
    w, m, s = float(w), 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        s = beta2 * s + (1 - beta2) * g * g
        m_hat, s_hat = m / (1 - beta1 ** t), s / (1 - beta2 ** t)
        w = w - lr * (m_hat / (math.sqrt(s_hat) + eps) + decay * w)
    return w


def test_adam_against_its_algorithm_by_hand():
    w = Parameter(np.array([0.7, -1.2, 3.0]))
    b = Parameter(np.array([0.5]))
    opt = Adam([("fc7.weight", w), ("fc7.bias", b)], lr=0.1, momentum=0.8, weight_decay=0.05,
               bias_lr_x2=True)
    grads_w = [np.array([1.0, -0.5, 2e-4]), np.array([-3.0, 0.25, 1e-4]), np.array([0.5, 0.5, -1e-4])]
    grads_b = [np.array([2.0]), np.array([-1.0]), np.array([0.0])]
    for gw, gb in zip(grads_w, grads_b):
        w.grad, b.grad = gw.copy(), gb.copy()
        opt.step()
    for i, start in enumerate([0.7, -1.2, 3.0]):  # a tiny gradient still steps about lr
        expected = adam_by_hand(start, [g[i] for g in grads_w], 0.1, 0.8, 0.999, 1e-8, 0.05)
        assert w.data[i] == pytest.approx(expected, rel=1e-12)
    # biases: no decay, twice the rate
    assert b.data[0] == pytest.approx(adam_by_hand(0.5, [2.0, -1.0, 0.0], 0.2, 0.8, 0.999, 1e-8, 0.0),
                                      rel=1e-12)


def test_adam_against_pytorchs_adamw():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w0, b0 = rng.standard_normal((4, 3)), rng.standard_normal(4)
    w, b = Parameter(w0.copy()), Parameter(b0.copy())
    opt = Adam([("conv.weight", w), ("conv.bias", b)], lr=0.01, momentum=0.9, weight_decay=0.1)
    tw = torch.tensor(w0, requires_grad=True)
    tb = torch.tensor(b0, requires_grad=True)
    reference = torch.optim.AdamW([{"params": [tw], "weight_decay": 0.1},
                                   {"params": [tb], "weight_decay": 0.0}],
                                  lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    for step in range(5):
        gw, gb = rng.standard_normal((4, 3)), rng.standard_normal(4)
        w.grad, b.grad = gw.copy(), gb.copy()
        tw.grad, tb.grad = torch.tensor(gw), torch.tensor(gb)
        lr = 0.01 * (step + 1) / 5  # a schedule: the rate passed to each step
        opt.step(lr)
        for group in reference.param_groups:
            group["lr"] = lr
        reference.step()
    np.testing.assert_allclose(w.data, tw.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(b.data, tb.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_optimizer_state_is_checked_on_load():
    w = Parameter(np.zeros((2, 3)))
    opt = Adam([("fc7.weight", w)])
    with pytest.raises(ValueError, match=r"adam.mean.fc7.weight.*\(3,\).*\(2, 3\)"):
        opt.load_state_dict({"adam.mean.fc7.weight": np.zeros(3), "adam.square.fc7.weight": np.zeros(3),
                             "adam.steps": np.array(1)})
    with pytest.raises(ValueError, match="unknown parameter 'fc8.weight'"):
        opt.load_state_dict({"adam.mean.fc8.weight": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="without adam.steps"):
        opt.load_state_dict({"adam.mean.fc7.weight": np.zeros((2, 3)),
                             "adam.square.fc7.weight": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="unknown parameter"):
        SGD([("fc7.weight", w)]).load_state_dict({"momentum.x": np.zeros(1)})


def test_frozen_upsampling_is_not_optimised():
    model = FCN8s(num_classes=2, width=1 / 64, pad=69)
    names = [n for n, _ in SGD(model.named_parameters()).params]
    assert "upscore8.weight" not in names and "fc6.weight" in names


def test_training_writes_its_files_and_learns_something(tmp_path):
    summary = Trainer(QUICK, tmp_path, progress=False).run()
    assert summary["iterations"] == 12
    for name in ["checkpoint.npz", "model.npz", "log.csv", "summary.json", "curves.png"]:
        assert (tmp_path / name).exists(), name
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert len(rows) == 13  # header + one row per iteration
    assert json.loads((tmp_path / "summary.json").read_text())["iterations"] == 12
    model = load_model(tmp_path / "model.npz")
    assert model.variant == "fcn8s" and model.preprocessing is not None


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_continues_bit_for_bit(tmp_path, optimizer):
    config = QUICK.replace(dropout=0.5, optimizer=optimizer, lr=QUICK.lr if optimizer == "sgd" else 3e-3)
    straight = Trainer(config, tmp_path / "a", progress=False)
    straight.run()
    first = Trainer(config.replace(iterations=6), tmp_path / "b", progress=False)
    first.run()
    resumed = Trainer.resume(tmp_path / "b", progress=False, iterations=12)
    assert resumed.iteration == 6
    resumed.run()
    for (name, a), (_, b) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)
    log_a = [r.split(",")[:4] for r in (tmp_path / "a" / "log.csv").read_text().splitlines()]
    log_b = [r.split(",")[:4] for r in (tmp_path / "b" / "log.csv").read_text().splitlines()]
    assert log_a == log_b  # same losses, same order, no duplicated rows


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = Trainer(QUICK.replace(iterations=6, checkpoint_every=3), tmp_path, progress=False)
    trainer.run()
    before = (tmp_path / "checkpoint.npz").read_bytes()
    again = Trainer.resume(tmp_path, progress=False, iterations=12)
    again.model.conv1_1.weight.data[:] = np.nan
    with pytest.raises(TrainingDiverged,
                       match=r"diverged at iteration 7: the loss became nan.*checkpoint\.npz \(iteration 6\)"):
        again.run()
    assert (tmp_path / "checkpoint.npz").read_bytes() == before


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    trainer = Trainer(QUICK.replace(iterations=3, checkpoint_every=0), tmp_path, progress=False)
    trainer.run()
    good = (tmp_path / "checkpoint.npz").read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(OSError, match="No space"):
        trainer.save_checkpoint()
    assert (tmp_path / "checkpoint.npz").read_bytes() == good
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
    arrays, meta = load_npz(tmp_path / "checkpoint.npz")
    assert meta["iteration"] == 3 and any(k.startswith("momentum.") for k in arrays)


def test_interrupt_saves_and_stops(tmp_path):
    trainer = Trainer(QUICK.replace(iterations=50), tmp_path, progress=False)
    original = trainer.step

    def step_then_interrupt():
        result = original()
        if trainer.iteration == 4:
            os.kill(os.getpid(), 2)  # SIGINT, as Ctrl-C sends
        return result

    trainer.step = step_then_interrupt
    summary = trainer.run()
    assert summary["stopped_by"] == "interrupted" and summary["iterations"] == 5
    assert load_npz(tmp_path / "checkpoint.npz")[1]["iteration"] == 5


def test_cli_train_evaluate_predict(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "run"
    assert main(["train", "--preset", "quick", "--out", str(out), "--iterations", "4", "--quiet"]) == 0
    assert main(["train", "--preset", "quick", "--out", str(out), "--quiet"]) == 1  # refuses to overwrite
    assert "--resume" in capsys.readouterr().err
    assert main(["evaluate", "--weights", str(out / "model.npz"), "--images", "3", "--image-size", "64"]) == 0
    assert "mean IU" in capsys.readouterr().out
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 65, 4), dtype=np.uint8), "RGBA").save(rgba)
    gray = tmp_path / "gray.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (59, 81), dtype=np.uint8), "L").save(gray)
    pred = tmp_path / "pred"
    assert main(["predict", str(rgba), str(gray), "--weights", str(out / "model.npz"), "--out", str(pred)]) == 0
    mask = Image.open(pred / "gray_mask.png")
    assert mask.mode == "P" and mask.size == (81, 59)
    assert Image.open(pred / "rgba_overlay.png").size == (65, 70)
    assert main(["predict", str(tmp_path / "missing.png"), "--weights", str(out / "model.npz")]) == 1


def test_demo_quick(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "trained just now" in text and "mean IU" in text and "figure written to" in text
    assert (tmp_path / "demo.png").exists()


def test_comparison_figure(tmp_path):
    from minifcn.data.synthetic import SyntheticShapes

    model = FCN8s(num_classes=5, width=1 / 64, pad=69)
    path = draw_comparison({"a": model, "b": model}, SyntheticShapes(2, 64, seed=1), tmp_path / "f.png", count=2)
    assert path.exists() and path.stat().st_size > 1000


def test_boundary_band_of_the_skip_experiment():
    from minifcn.train.experiment import boundary_band

    label = np.zeros((7, 7), dtype=np.uint8)
    label[2:5, 2:5] = 1
    band = boundary_band(label, width=0)
    # the edge pixels on both sides of the square's outline, nothing in the middle or far away
    assert band[2, 2] and band[1, 2] and not band[3, 3] and not band[0, 0]
    assert boundary_band(label, width=1).sum() > band.sum()
    label[0, 0] = 255
    assert not boundary_band(label, width=3)[0, 0]  # void never counts


"""Nothing lost in training: SIGTERM, run folders, leftovers of crashed writes, divergence."""
import csv
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minifcn.cli import main
from minifcn.errors import UsageError
from minifcn.npzio import atomic_write, load_npz
from minifcn.train import Trainer, TrainingDiverged, preset
from minifcn.train import processes as processes_module  # where a batch is scored
from minifcn.train.guard import DivergenceGuard

ROOT = Path(__file__).resolve().parent.parent
QUICK = preset("quick").replace(iterations=6, val_every=0, checkpoint_every=0)


def log_rows(folder):
    with open(Path(folder) / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def checkpoint_iteration(folder):
    return load_npz(Path(folder) / "checkpoint.npz")[1]["iteration"]


# ---------------------------------------------------------------------- SIGTERM
def test_sigterm_to_a_training_process_saves_a_checkpoint_and_says_so(tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "minifcn.cli", "train", "--preset", "quick", "--out", str(run),
               "--iterations", "100000", "--val-every", "0", "--checkpoint-every", "0", "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not ((run / "log.csv").exists() and len(log_rows(run)) >= 2):  # it is training
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # what kill, a scheduler or a container stop sends
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "--resume" in err and "Traceback" not in err
    done = checkpoint_iteration(run)
    assert done >= 2 and len(log_rows(run)) == done  # the checkpoint holds every logged iteration
    assert (run / "model.npz").exists()


def test_sigterm_stops_like_ctrl_c_and_the_old_handlers_come_back(tmp_path):
    def mine(signum, frame):
        pass

    def mine_too(signum, frame):
        pass

    before = signal.signal(signal.SIGTERM, mine), signal.signal(signal.SIGINT, mine_too)
    try:
        trainer = Trainer(QUICK.replace(iterations=50), tmp_path, progress=False)
        original = trainer.step

        def step_then_terminate():
            result = original()
            if trainer.iteration == 2:
                os.kill(os.getpid(), signal.SIGTERM)
            return result

        trainer.step = step_then_terminate
        summary = trainer.run()
        assert signal.getsignal(signal.SIGTERM) is mine and signal.getsignal(signal.SIGINT) is mine_too
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGINT, before[1])
    assert summary["stopped_by"] == "interrupted" and summary["signal"] == "SIGTERM"
    assert summary["iterations"] == 3 and checkpoint_iteration(tmp_path) == 3


# ---------------------------------------------------------------------- run folders
def test_a_second_run_in_the_same_folder_is_refused(tmp_path, capsys):
    Trainer(QUICK.replace(iterations=2), tmp_path, progress=False).run()
    kept = {name: (tmp_path / name).read_bytes() for name in ("checkpoint.npz", "log.csv", "model.npz")}
    with pytest.raises(UsageError, match="already holds a training run.*--resume.*--overwrite"):
        Trainer(QUICK.replace(iterations=3), tmp_path, progress=False).run()
    assert main(["train", "--preset", "quick", "--out", str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume" in err and "--overwrite" in err
    assert {name: (tmp_path / name).read_bytes() for name in kept} == kept


def test_the_log_of_a_run_killed_before_its_first_checkpoint_is_not_continued(tmp_path):
    # kill -9 before any checkpoint: log.csv is all that is left of that run
    (tmp_path / "log.csv").write_text("iteration,loss\n1,9.9\n2,9.8\n")
    with pytest.raises(UsageError, match="log.csv"):
        Trainer(QUICK.replace(iterations=2), tmp_path, progress=False).run()
    Trainer(QUICK.replace(iterations=2), tmp_path, progress=False, overwrite=True).run()
    rows = log_rows(tmp_path)
    assert [r["iteration"] for r in rows] == ["1", "2"] and "9.9" not in (tmp_path / "log.csv").read_text()


def test_overwrite_replaces_the_run_and_nothing_else(tmp_path, capsys):
    out = str(tmp_path)
    assert main(["train", "--preset", "quick", "--out", out, "--iterations", "5", "--quiet"]) == 0
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["train", "--preset", "quick", "--out", out, "--iterations", "3", "--quiet",
                 "--overwrite"]) == 0
    assert [r["iteration"] for r in log_rows(tmp_path)] == ["1", "2", "3"]
    assert checkpoint_iteration(tmp_path) == 3
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(SystemExit) as exit_info:  # the two contradict each other
        main(["train", "--preset", "quick", "--out", out, "--resume", "--overwrite"])
    assert exit_info.value.code == 2


def leave_temporary(path):
    """What a process killed inside an atomic write leaves behind: the temporary file."""
    def write_half_then_die(tmp):
        Path(tmp).write_bytes(b"half a file")
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "remove", lambda p: None)  # a killed process cleans nothing up
        with pytest.raises(KeyboardInterrupt):
            atomic_write(path, write_half_then_die)
    return [p for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]


def test_temporary_files_of_interrupted_writes_are_removed_at_start_and_resume(tmp_path):
    leftovers = leave_temporary(tmp_path / "checkpoint.npz")
    (tmp_path / ".someone-elses.tmp").write_text("not ours")
    assert len(leftovers) == 1
    Trainer(QUICK.replace(iterations=2), tmp_path, progress=False).run()
    assert not any(p.exists() for p in leftovers)
    leftovers = leave_temporary(tmp_path / "checkpoint.npz") + leave_temporary(tmp_path / "model.npz")
    Trainer.resume(tmp_path, progress=False, iterations=3).run()
    assert not any(p.exists() for p in leftovers)
    assert (tmp_path / ".someone-elses.tmp").exists()


# ---------------------------------------------------------------------- divergence
def test_the_guard_tells_an_exploding_loss_from_a_noisy_one():
    guard = DivergenceGuard()
    rng = np.random.default_rng(0)
    for loss in 1.6 * np.exp(-np.arange(40) / 20) * rng.uniform(0.5, 2, 40):  # falling, noisy
        assert guard.check("loss", loss) is None
        guard.record(loss, rng.uniform(0.5, 5))
    assert guard.check("loss", 8.0) is None  # a hard batch
    assert guard.check("gradient norm", 40.0) is None
    assert "1e+15" in guard.check("loss", 1e15)  # finite, and ruinous
    assert "nan" in guard.check("loss", float("nan"))
    assert "inf" in guard.check("gradient norm", float("inf"))
    assert "gradient norm" in guard.check("gradient norm", 1e6)


def test_a_finite_exploding_loss_stops_the_run_before_it_is_saved(tmp_path, monkeypatch):
    real = processes_module.softmax_cross_entropy_forward
    trainer = Trainer(QUICK.replace(iterations=12, checkpoint_every=2), tmp_path, progress=False)

    def explodes_at_iteration_6(*args, **kwargs):
        loss, cache = real(*args, **kwargs)
        return (1e15 if trainer.iteration == 5 else loss), cache

    monkeypatch.setattr(processes_module, "softmax_cross_entropy_forward", explodes_at_iteration_6)
    with pytest.raises(TrainingDiverged, match=r"iteration 6: the loss 1e\+15"):
        trainer.run()
    assert checkpoint_iteration(tmp_path) == 4  # saved once iteration 5 had passed the guard
    assert not (tmp_path / "model.npz").exists()


def test_a_resumed_run_knows_the_usual_loss_from_its_checkpoint(tmp_path, monkeypatch):
    Trainer(QUICK.replace(iterations=3), tmp_path, progress=False).run()
    resumed = Trainer.resume(tmp_path, progress=False, iterations=6)
    real = processes_module.softmax_cross_entropy_forward
    monkeypatch.setattr(processes_module, "softmax_cross_entropy_forward",
                        lambda *args, **kwargs: (1e15, real(*args, **kwargs)[1]))
    with pytest.raises(TrainingDiverged, match=r"iteration 4: the loss 1e\+15 is over"):
        resumed.run()  # its first iteration already has a scale to compare with
    assert checkpoint_iteration(tmp_path) == 3


def test_divergence_names_a_checkpoint_that_resumes_at_the_lower_rate_it_gives(tmp_path, capsys):
    out = str(tmp_path)
    # lr 1 on the quick net: the loss goes 1.3, 1.9e3, 8.9e10, ... within a dozen iterations;
    # the checkpoint written after the update that ruins the weights must not be the one named
    with np.errstate(over="ignore", invalid="ignore"):
        status = main(["train", "--preset", "quick", "--out", out, "--lr", "1", "--warmup", "1",
                       "--iterations", "60", "--checkpoint-every", "1", "--val-every", "0", "--quiet"])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and "Traceback" not in err
    diverged_at = int(re.search(r"diverged at iteration (\d+)", err).group(1))
    command = shlex.split(re.search(r"with: (minifcn train [^(]*?) \(", err).group(1))
    assert command[:2] == ["minifcn", "train"] and "--resume" in command
    lower = float(command[command.index("--lr") + 1])
    assert lower < 1
    saved = checkpoint_iteration(tmp_path)
    assert saved < diverged_at
    first_loss = float(log_rows(tmp_path)[0]["loss"])
    assert main(command[1:] + ["--iterations", str(saved + 10), "--quiet"]) == 0
    resumed = [float(r["loss"]) for r in log_rows(tmp_path)[saved:]]
    # the guard let all 10 through (status 0), and no loss runs away as lr 1's did (to 1e10 and
    # more), though at this rate on this net one may spike for an iteration
    assert len(resumed) == 10 and np.isfinite(resumed).all() and max(resumed) < 100 * first_loss


def test_an_absurd_learning_rate_ends_in_the_guard_line_without_numpy_warnings(tmp_path, capsys):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = main(["train", "--preset", "quick", "--out", str(tmp_path), "--lr", "1e308",
                       "--iterations", "20", "--val-every", "0", "--quiet"])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and "diverged at iteration" in err
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]


def test_init_weights_are_checked_like_a_model_file(tmp_path, capsys):
    from minifcn.models import FCN8s
    from minifcn.npzio import save_npz

    arrays = {k: np.array(v) for k, v in FCN8s(5, 1 / 16, pad=69).state_dict().items()}
    arrays["conv2_1.weight"][0, 0, 1, 1] = np.nan
    init = save_npz(tmp_path / "nan.npz", arrays, {"kind": "fcn8s"})
    status = main(["train", "--preset", "quick", "--init", str(init), "--out", str(tmp_path / "run"),
                   "--iterations", "2", "--val-every", "0", "--quiet"])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1
    assert "nan.npz" in err and "conv2_1.weight" in err

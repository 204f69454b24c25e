"""Nothing lost in training: SIGTERM, run folders, leftovers of crashed writes."""
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minifcn.cli import main
from minifcn.errors import UsageError
from minifcn.npzio import atomic_write, load_npz
from minifcn.train import Trainer, preset

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
    assert main(["train", "--preset", "quick", "--out", out, "--iterations", "3", "--quiet", "--overwrite"]) == 0
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

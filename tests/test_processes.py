"""A batch shared among CPU processes gives the whole batch's gradient, and the processes are
started, stopped and reported on properly."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minifcn.data.loader import BatchLoader
from minifcn.data.synthetic import make_sample
from minifcn.errors import UsageError, WorkerFailed
from minifcn.npzio import load_npz
from minifcn.ops import softmax_cross_entropy_backward
from minifcn.train import Trainer, preset
from minifcn.train.processes import (ProcessGroup, SharedArrays, _Worker, shares, threads_per_process,
                                     usable_processes)
from minifcn.train.sources import SyntheticSource, make_source

ROOT = Path(__file__).resolve().parent.parent
QUICK = preset("quick").replace(batch_size=3, iterations=4, val_every=0, checkpoint_every=0)

pytestmark = pytest.mark.skipif(os.name != "posix", reason="processes share a batch on POSIX systems only")


def whole_batch_gradient(trainer):
    """The gradient of batch ``trainer.iteration`` computed in one process, as one batch."""
    scores, labels, loss, cache = trainer._forward()
    trainer.model.backward(softmax_cross_entropy_backward(1.0, cache), input_grad=False)
    return loss, {name: p.grad.copy() for name, p in trainer.optimizer.params}


def shared_gradient(trainer):
    loss, valid, correct = trainer._split_pass()
    return loss, {name: p.grad.copy() for name, p in trainer.optimizer.params}


def assert_gradients_close(found, expected):
    for name, g in expected.items():
        scale = float(np.abs(g).max()) or 1.0
        np.testing.assert_allclose(found[name], g, rtol=0, atol=3e-6 * scale, err_msg=name)


# ---------------------------------------------------------------------- shares of a batch
@pytest.mark.parametrize("batch", range(1, 8))
def test_shares_cover_the_batch_once_as_evenly_as_can_be(batch):
    for processes in range(1, batch + 1):
        parts = shares(batch, processes)
        assert len(parts) == processes
        assert [n for a, b in parts for n in range(a, b)] == list(range(batch))
        sizes = [b - a for a, b in parts]
        assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


def test_a_share_of_a_synthetic_batch_is_those_images_of_the_whole_batch():
    source = SyntheticSource(QUICK.replace(batch_size=5, image_size=24))
    images, labels = source.batch(7)
    assert images.shape == (5, 24, 24, 3) and labels.shape == (5, 24, 24) and labels.dtype == np.int64
    for n in range(5):  # image n of batch 7 is drawn from (seed, 7, n) alone
        image, label = make_sample(np.random.default_rng([QUICK.seed, 7, n]), 24, 24)
        np.testing.assert_array_equal(images[n], image)
        np.testing.assert_array_equal(labels[n], label)
    part_images, part_labels = source.batch(7, (2, 4))
    np.testing.assert_array_equal(part_images, images[2:4])
    np.testing.assert_array_equal(part_labels, labels[2:4])
    assert not np.array_equal(source.batch(8)[0], images)


class Numbered:
    """A dataset whose sample ``i`` is filled with ``i``, to see which samples a batch holds."""
    num_classes, class_names = 3, ["a", "b", "c"]

    def __len__(self):
        return 11

    def __getitem__(self, i):
        return np.full((6, 7, 3), i, np.uint8), np.full((6, 7), i % 3, np.uint8)


def test_a_share_of_a_dataset_batch_is_those_samples_of_the_whole_batch():
    loader = BatchLoader(Numbered(), 4, crop_size=5, shuffle=True, flip=True, seed=3, drop_last=True)
    images, labels = loader.batch(2, 1)
    part_images, part_labels = loader.batch(2, 1, share=(1, 3))
    np.testing.assert_array_equal(part_images, images[1:3])
    np.testing.assert_array_equal(part_labels, labels[1:3])


def test_shared_arrays_are_the_same_memory_through_a_second_mapping():
    block = SharedArrays([(2, 3), (4,), ()], np.float64)
    again = SharedArrays(*block.handle())
    block.arrays[0][:] = np.arange(6).reshape(2, 3)
    block.arrays[1][:] = 7
    block.arrays[2][...] = -1
    np.testing.assert_array_equal(again.arrays[0], np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(again.arrays[1], [7, 7, 7, 7])
    assert again.arrays[2] == -1 and again.arrays[2].shape == ()


# ---------------------------------------------------------------------- the gradient
def assert_shared_equals_whole(tmp_path, config, iterations=(0,)):
    """Loss and gradient of each batch of ``iterations`` shared among ``config.processes``
    processes, against one process taking the whole batch."""
    one = Trainer(config.replace(processes=1), tmp_path / "one", progress=False)
    many = Trainer(config, tmp_path / "many", progress=False)
    try:
        for iteration in iterations:
            one.iteration = many.iteration = iteration
            loss, expected = whole_batch_gradient(one)
            shared_loss, found = shared_gradient(many)
            assert shared_loss == pytest.approx(loss, rel=1e-5)
            assert_gradients_close(found, expected)
    finally:
        many.close()


@pytest.mark.parametrize("processes", [2, 3])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_shared_gradient_is_the_whole_batch_gradient(tmp_path, processes, reduction):
    # batch 3: two processes take 1 + 2 images, so a mean of the shares' means would be wrong
    config = QUICK.replace(processes=processes, reduction=reduction)
    assert_shared_equals_whole(tmp_path, config, iterations=(0, 5))


def write_pairs(root, count, size=(70, 66)):
    """Image/label PNG pairs whose labels ignore (255) a different share of each image."""
    rng = np.random.default_rng(4)
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    for n in range(count):
        label = rng.integers(0, 3, size, dtype=np.uint8)
        label[: 10 * (n + 1)] = 255
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(images / f"{n}.png")
        Image.fromarray(label).save(labels / f"{n}.png")
    return f"folders:{images},{labels}"


def test_the_shared_gradient_weighs_each_share_by_its_valid_pixels(tmp_path):
    data = write_pairs(tmp_path / "data", 6)
    config = QUICK.replace(data=data, image_size=64, batch_size=4, processes=2)
    _, labels = make_source(config).batch(0)
    counts = [(labels[a:b] != 255).sum() for a, b in shares(4, 2)]
    assert counts[0] != counts[1]  # the test means something only if the shares differ
    assert_shared_equals_whole(tmp_path, config)


def test_one_update_with_two_processes_is_the_update_with_one(tmp_path):
    config = QUICK.replace(iterations=1, optimizer="sgd")
    one = Trainer(config, tmp_path / "one", progress=False)
    two = Trainer(config.replace(processes=2), tmp_path / "two", progress=False)
    one.run()
    two.run()
    assert two.workers is None  # run() stops its workers
    for (name, a), (_, b) in zip(one.model.named_parameters(), two.model.named_parameters()):
        np.testing.assert_allclose(b.data, a.data, rtol=1e-5, atol=1e-7, err_msg=name)


def test_a_run_with_two_processes_resumes_bit_for_bit(tmp_path):
    config = QUICK.replace(processes=2, optimizer="adam", lr=3e-3, dropout=0.5)
    straight = Trainer(config, tmp_path / "a", progress=False)
    straight.run()
    first = Trainer(config.replace(iterations=2), tmp_path / "b", progress=False)
    first.run()
    resumed = Trainer.resume(tmp_path / "b", progress=False, iterations=4)
    resumed.run()
    for (name, a), (_, b) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)


def test_the_weights_a_worker_reads_are_the_trainers_after_every_change(tmp_path):
    trainer = Trainer(QUICK.replace(processes=2, optimizer="sgd"), tmp_path, progress=False)
    try:
        trainer.step()  # starts the worker; the update changes the shared weights in place
        state = {k: v * 0.5 for k, v in trainer.model.state_dict().items()}
        trainer.model.load_state_dict(state)  # may put new arrays in place of the shared ones
        trainer.iteration = 1
        _, found = shared_gradient(trainer)
        check = Trainer(QUICK.replace(optimizer="sgd"), tmp_path / "check", progress=False)
        check.model.load_state_dict(state)
        check.iteration = 1
        _, expected = whole_batch_gradient(check)
        assert_gradients_close(found, expected)
    finally:
        trainer.close()


# ---------------------------------------------------------------------- settings
def test_more_processes_than_images_are_refused_by_name():
    with pytest.raises(UsageError, match=r"processes \(--processes\): 3 processes cannot share a batch of 2"):
        QUICK.replace(batch_size=2, processes=3)
    with pytest.raises(UsageError, match="whole images: set image_size"):
        QUICK.replace(data="folders:a,b", image_size=0, processes=2)
    with pytest.raises(UsageError, match="processes"):
        QUICK.replace(processes=0)


def test_processes_on_the_gpu_are_refused_before_anything_is_built(tmp_path):
    with pytest.raises(UsageError, match="cannot share a batch on the gpu"):
        Trainer(QUICK.replace(processes=2), tmp_path, device="gpu", progress=False)


def test_the_command_line_refuses_more_processes_than_images_in_one_line(capsys):
    from minifcn.cli import main

    assert main(["train", "--preset", "quick", "--processes", "3", "--out", "unused"]) == 1
    err = capsys.readouterr().err
    assert "--processes" in err and "batch of 2" in err and "Traceback" not in err


# ---------------------------------------------------------------------- failures
def test_a_worker_that_dies_is_named_with_its_signal(tmp_path):
    trainer = Trainer(QUICK.replace(processes=2), tmp_path, progress=False)
    try:
        trainer.step()
        worker = trainer.workers.workers[0]
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait(10)
        trainer.iteration = 1
        with pytest.raises(RuntimeError, match=r"training process 2 \(minifcn-train-2, pid \d+\) "
                                               r"stopped \(signal 9\)"):
            trainer.step()
    finally:
        trainer.close()


def test_a_worker_that_fails_reports_its_error():
    grads, weights = SharedArrays([(2,)], np.float32), SharedArrays([(2,)], np.float32)
    setup = dict(config=QUICK.to_dict(), preprocessing=None, index=1, names=["no.such"], trained=[],
                 weights=weights.handle(), grads=grads.handle(), threads=1)
    worker = _Worker.start(1, grads, setup)
    try:
        with pytest.raises(RuntimeError, match=r"(?s)training process 2 of 2 failed while starting:.*"
                                                r"the worker's model has parameters"):
            worker.receive(2, "starting", timeout=60)
    finally:
        worker.stop()
    assert worker.process.returncode == 0


def test_workers_stop_with_the_group_and_leave_no_process(tmp_path):
    trainer = Trainer(QUICK.replace(processes=3), tmp_path, progress=False)
    try:
        trainer.step()
        processes = [w.process for w in trainer.workers.workers]
        assert len(processes) == 2 and all(p.poll() is None for p in processes)
    finally:
        trainer.close()
    assert all(p.returncode == 0 for p in processes)


def kill_the_worker_at(iteration, monkeypatch):
    """Make the group's step SIGKILL its first worker at ``iteration``; returns the real step."""
    step = ProcessGroup.step

    def killing(self, i):
        if i == iteration:
            os.kill(self.workers[0].process.pid, signal.SIGKILL)
            self.workers[0].process.wait(10)
        return step(self, i)

    monkeypatch.setattr(ProcessGroup, "step", killing)
    return step


def test_a_run_whose_worker_dies_keeps_what_it_trained_and_resumes(tmp_path, monkeypatch):
    step = kill_the_worker_at(2, monkeypatch)
    trainer = Trainer(QUICK.replace(processes=2), tmp_path, progress=False)
    with pytest.raises(WorkerFailed, match=r"(?s)stopped \(signal 9\) while computing its share of "
                                           r"iteration 3.*up to iteration 2 is saved in .*--resume"):
        trainer.run()
    assert trainer.workers is None
    assert load_npz(tmp_path / "checkpoint.npz")[1]["iteration"] == 2
    monkeypatch.setattr(ProcessGroup, "step", step)
    resumed = Trainer.resume(tmp_path, progress=False)
    assert resumed.run()["iterations"] == QUICK.iterations


def test_no_room_for_shared_memory_is_an_error_that_names_the_way_out(monkeypatch):
    if not hasattr(os, "posix_fallocate"):
        pytest.skip("no posix_fallocate here: the block is only made long")
    import errno

    tried, real = [], os.posix_fallocate

    def full(fd, offset, length):
        tried.append(length)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match=r"no room for 4 MB of memory shared between training "
                                      r"processes \(No space left on device\); use --processes 1"):
        SharedArrays([(2**20,)], np.float32)
    assert tried == [2**22] * (2 if os.path.isdir("/dev/shm") else 1)  # /dev/shm, then the temp folder

    calls = []

    def full_once(fd, offset, length):
        calls.append(length)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", full_once)
    block = SharedArrays([(3,)], np.float64)
    block.arrays[0][:] = 5
    np.testing.assert_array_equal(SharedArrays(*block.handle()).arrays[0], [5, 5, 5])


def test_a_script_without_a_main_guard_trains_with_two_processes(tmp_path):
    # workers start a fresh interpreter on minifcn alone, never re-running the user's script
    script = tmp_path / "train_here.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from minifcn.train import Trainer, preset
        config = preset("quick").replace(iterations=2, val_every=0, checkpoint_every=0, processes=2)
        summary = Trainer(config, {str(tmp_path / 'run')!r}, progress=False).run()
        print("trained", summary["iterations"])
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("trained 2") == 1


def test_sigterm_to_a_run_with_two_processes_saves_and_stops_them(tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "minifcn.cli", "train", "--preset", "quick", "--out", str(run),
               "--processes", "2", "--iterations", "100000", "--val-every", "0", "--checkpoint-every", "0",
               "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not ((run / "log.csv").exists() and len((run / "log.csv").read_text().splitlines()) >= 3):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGTERM)  # the whole group, as a terminal or a container stop may
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    assert (run / "checkpoint.npz").exists() and (run / "model.npz").exists()
    with pytest.raises(ProcessLookupError):  # no process of the group is left
        os.killpg(proc.pid, 0)


def test_a_presets_processes_are_as_many_as_the_cores_images_and_device_allow(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert usable_processes(2) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert usable_processes(2) == 2 and usable_processes(3) == 2
    assert usable_processes(2, batch=1) == 1
    assert usable_processes(2, device="gpu") == 1


def test_each_process_gets_its_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert threads_per_process(2) == 4 and threads_per_process(3) == 2 and threads_per_process(16) == 1
    assert threads_per_process(2, current=1) == 1  # never more than the limit in force


def blas_threads():
    from threadpoolctl import threadpool_info

    return {pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"}


def test_the_trainer_keeps_its_share_of_the_threads_while_its_workers_run(tmp_path, monkeypatch):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
        before = os.environ.get("MINIFCN_NUM_THREADS")
        trainer = Trainer(QUICK.replace(processes=2), tmp_path, progress=False)
        try:
            trainer.step()  # two processes on two cores: one thread each, not two
            assert blas_threads() == {1} and os.environ["MINIFCN_NUM_THREADS"] == "1"
        finally:
            trainer.close()
        assert blas_threads() == {2} and os.environ.get("MINIFCN_NUM_THREADS") == before


def test_the_demo_and_train_commands_take_the_presets_processes_where_they_can(tmp_path, capsys):
    from minifcn.cli import main

    # the demo preset's 2 processes on a batch of 1: one process, not an error
    assert main(["train", "--preset", "demo", "--batch-size", "1", "--iterations", "1", "--minutes", "0",
                 "--out", str(tmp_path / "one"), "--quiet"]) == 0
    saved = json.loads((tmp_path / "one" / "summary.json").read_text())["config"]
    assert saved["processes"] == 1
    assert main(["train", "--preset", "demo", "--iterations", "1", "--minutes", "0",
                 "--out", str(tmp_path / "two"), "--quiet"]) == 0
    saved = json.loads((tmp_path / "two" / "summary.json").read_text())["config"]
    assert saved["processes"] == usable_processes(2)


def test_the_command_line_reports_a_dead_worker_without_a_traceback(tmp_path, capsys, monkeypatch):
    from minifcn.cli import main

    kill_the_worker_at(2, monkeypatch)
    assert main(["train", "--preset", "quick", "--processes", "2", "--out", str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minifcn train: error: training process 2 (minifcn-train-2, pid ")
    assert "--resume" in err and "Traceback" not in err and err.count("\n") == 2

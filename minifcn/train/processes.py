"""Data parallelism on one machine: each training batch split across CPU processes.

A narrow network's training step is thousands of small Python and NumPy calls (the demo's,
about 12,700), and one Python process runs one of them at a time (the interpreter lock), so
a second thread gains little on it. A second *process* has an interpreter of its own. With
``processes=2`` and a batch of 4, each process computes the forward and backward of two
images at the same time, and the step takes about as long as one share does.

One step with P processes (the trainer's own, which takes share 0, and P - 1 workers):

1. The trainer sends the iteration number to every worker. Each process makes its own share
   of batch ``i`` (``source.batch(i, share)``: image ``n`` of a batch depends only on the
   seed, ``i`` and ``n``), so no images travel between processes.
2. Every process runs the forward and backward of its share with the same weights: the
   workers' parameters are views of one block of shared memory, which the trainer's own
   parameters also are and which only the trainer's optimiser changes, between steps.
3. Each process sums its share's loss over pixels (``reduction="sum"``). A worker copies its
   gradients into a block of shared memory of its own and answers with the loss and its
   pixel counts.
4. The trainer adds the workers' gradients to its own and divides by the batch's count of
   valid pixels (for the mean loss; the summed loss keeps the sum). That is the whole batch's
   gradient, up to the order of float additions.

With dropout, each share draws its own masks (from the seed, the iteration and the share's
index), so a run with two processes follows another path than a run with one; without
dropout the two differ only by float rounding. Either way a run is reproducible for a given
number of processes, and resumes bit for bit. The worker's side is :mod:`minifcn.train.worker`.
"""
from __future__ import annotations

import contextlib
import math
import mmap
import os
import socket
import subprocess
import sys
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from ..engine.memory import cpu_threads
from ..errors import WorkerFailed
from ..ops import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from ..preprocess import preprocess

IGNORE = 255  # the label of pixels that count for nothing
POLL_SECONDS = 0.5  # how often a trainer waiting for a worker checks that it is still alive
START_SECONDS = 120.0  # the most a worker may take to import, build its model and answer
STOP_SECONDS = 60.0  # the most a worker told to stop may take to finish its share


def shares(batch_size, processes):
    """The images of a batch each process takes: ``[(start, stop), ...]``, as even as can be.

    >>> shares(4, 2)
    [(0, 2), (2, 4)]
    >>> shares(5, 3)
    [(0, 1), (1, 3), (3, 5)]
    """
    return [(k * batch_size // processes, (k + 1) * batch_size // processes)
            for k in range(processes)]


def usable_cores():
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def usable_processes(wanted, device="cpu", batch=None):
    """How many of ``wanted`` processes to share a batch among where the number was not asked
    for by name (a preset's value, a checkpoint's): 1 on a GPU or where processes cannot share
    memory (not POSIX), else at most one per core and one per image of the ``batch``."""
    if device != "cpu" or os.name != "posix":
        return 1
    return max(1, min(wanted, usable_cores(), batch or wanted))


def threads_per_process(processes, current=None):
    """BLAS and engine threads for each of ``processes`` processes: the cores shared out
    (so that two processes on 2 cores do not run four threads), never more than ``current``
    (the limit in force, when known)."""
    share = max(1, usable_cores() // processes)
    return min(share, current) if current else share


def scored_batch(model, source, iteration, share, dropout_key, reduction):
    """The forward and loss of batch ``iteration``, or of its images ``share``.

    Returns
    -------
    scores : (N, K, H, W) array
    labels : (N, H, W) int64 array
    loss : float
        Over the valid pixels, their mean or sum as ``reduction`` says.
    cache
        What the loss's backward needs.
    """
    xp = model.xp
    images, labels = source.batch(iteration, share)
    x = preprocess(images, model.preprocessing, xp=xp).astype(model.dtype, copy=False)
    labels = xp.asarray(labels)
    model.reseed_dropout(*dropout_key)  # the masks depend on the key alone
    scores = model(x)
    loss, cache = softmax_cross_entropy_forward(scores, labels, IGNORE, None, reduction)
    return scores, labels, loss, cache


def pixel_counts(scores, labels):
    """``(valid, correct)``: the pixels not ignored, and those the net classifies right."""
    valid = labels != IGNORE
    return int(valid.sum()), int(((scores.argmax(axis=1) == labels) & valid).sum())


def share_pass(model, source, iteration, share, dropout_key):
    """Forward and backward of one share of batch ``iteration``, with the loss summed over pixels.

    Leaves the gradient of the share's summed loss in the model's parameters.

    Returns
    -------
    loss : float
        The share's loss, summed over its valid pixels.
    valid, correct : int
        Its valid pixels, and those the net classifies right.
    """
    scores, labels, loss, cache = scored_batch(model, source, iteration, share, dropout_key, "sum")
    model.backward(softmax_cross_entropy_backward(1.0, cache), input_grad=False)
    return (float(loss), *pixel_counts(scores, labels))


class SharedArrays:
    """Arrays of the given shapes, end to end in one block of memory that child processes share.

    The block is an unnamed temporary file mapped into memory (in ``/dev/shm`` where there is
    one). A child maps the same file from the descriptor it inherits, so the block has no
    name to clean up after a crash; it is gone once the last process has closed it. No lock:
    the protocol of :class:`ProcessGroup` decides who writes when.
    """

    def __init__(self, shapes, dtype, fd=None):
        self.shapes, self.dtype = [tuple(int(n) for n in s) for s in shapes], np.dtype(dtype)
        sizes = [math.prod(s) for s in self.shapes]
        nbytes = max(1, sum(sizes) * self.dtype.itemsize)
        if fd is None:
            self.file = _allocated_file(nbytes)
            fd = self.file.fileno()
        self.fd = fd
        self.memory = mmap.mmap(fd, nbytes)
        flat = np.frombuffer(self.memory, dtype=self.dtype, count=sum(sizes))
        ends = np.cumsum([0] + sizes)
        self.arrays = [flat[a:b].reshape(s) for a, b, s in zip(ends[:-1], ends[1:], self.shapes)]

    def handle(self):
        """What a child needs to map the same arrays: ``(shapes, dtype name, descriptor)``."""
        return self.shapes, self.dtype.str, self.fd


def _allocated_file(nbytes):
    """An unnamed temporary file of ``nbytes`` whose blocks are reserved now: in ``/dev/shm``
    (memory) where it has room, else in the temporary folder.

    Reserving matters: a file only made long (``truncate``) gets its pages when they are
    first written, and a full ``/dev/shm`` (64 MB in a default Docker container) would then
    end the process with SIGBUS instead of an error here.
    """
    folders = [f for f in ("/dev/shm", None) if f is None or os.path.isdir(f)]
    for folder in folders:
        file = tempfile.TemporaryFile(dir=folder)
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(file.fileno(), 0, nbytes)
            else:  # macOS: no reservation call; the length alone
                file.truncate(nbytes)
            return file
        except OSError as exc:
            file.close()
            error = exc
    raise OSError(error.errno, f"no room for {nbytes / 2**20:.0f} MB of memory shared between "
                               f"training processes ({error.strerror}); use --processes 1")


class ProcessGroup:
    """The trainer's side: ``processes - 1`` worker processes that share every batch with it.

    Parameters
    ----------
    model : FCN
        The trainer's model, on the CPU. Its parameters become views of the shared weights.
    source : SyntheticSource or DatasetSource
        The trainer's batches (each worker opens its own from ``config``).
    config : TrainConfig
        The run's settings; ``config.processes`` of them in all.
    params : list of (str, Parameter)
        The parameters the optimiser trains: the ones whose gradients are summed.
    threads : int, optional
        The BLAS thread limit in force in the trainer's process, if known. Every process of
        the group, the trainer's included while the group runs, gets
        :func:`threads_per_process` threads.

    Raises
    ------
    WorkerFailed
        If a worker fails to start, naming it and what it said.
    """

    def __init__(self, model, source, config, params, threads=None):
        self.model, self.source, self.config = model, source, config
        self.processes = config.processes
        self.shares = shares(config.batch_size, self.processes)
        self.params = [p for _, p in params]
        named = list(model.named_parameters())
        self.weights = SharedArrays([p.shape for _, p in named], model.dtype)
        self._views = dict(zip([id(p) for _, p in named], self.weights.arrays))
        self._named = named
        self.publish()
        self.workers = []
        threads = threads_per_process(self.processes, threads)
        self._limits = contextlib.ExitStack()  # the trainer's own share, until close()
        self._limits.enter_context(cpu_threads(threads))
        try:
            for k in range(1, self.processes):
                grads = SharedArrays([p.shape for p in self.params], model.dtype)
                setup = dict(config=config.to_dict(), preprocessing=model.preprocessing, index=k,
                             names=[n for n, _ in named], trained=[n for n, _ in params],
                             weights=self.weights.handle(), grads=grads.handle(), threads=threads)
                self.workers.append(_Worker.start(k, grads, setup))
            for worker in self.workers:
                worker.receive(self.processes, "starting", timeout=START_SECONDS)
        except BaseException:
            self.close()
            raise

    def publish(self):
        """Make every parameter of the trainer's model a view of the shared weights again.

        Once that is so, the optimiser's updates in place are what the workers read; a
        parameter whose array was replaced (``load_state_dict``) is copied over first.
        """
        for _, p in self._named:
            view = self._views[id(p)]
            if p.data is not view:
                np.copyto(view, p.data)
                p.data = view

    def step(self, iteration):
        """Forward and backward of batch ``iteration`` across the processes.

        Leaves the whole batch's gradient (of the mean or summed loss, as ``config.reduction``
        says) in the trainer's parameters.

        Returns
        -------
        loss : float
            The batch's loss.
        valid, correct : int
            The batch's valid pixels, and those classified right.
        """
        self.publish()
        during = f"computing its share of iteration {iteration + 1}"
        for worker in self.workers:
            worker.send(("step", iteration), during)
        loss, valid, correct = share_pass(self.model, self.source, iteration, self.shares[0],
                                          (self.config.seed, iteration, 0))
        for worker in self.workers:
            answer = worker.receive(self.processes, during)
            loss, valid, correct = loss + answer[0], valid + answer[1], correct + answer[2]
            for p, grad in zip(self.params, worker.grads.arrays):
                if p.grad is not None:
                    p.grad += grad
        if self.config.reduction == "mean":
            scale = 1.0 / max(valid, 1)  # no valid pixel: loss and gradient 0, as the loss op gives
            loss *= scale
            for p in self.params:
                if p.grad is not None:
                    p.grad *= p.grad.dtype.type(scale)
        return loss, valid, correct

    def close(self):
        """Stop the workers (each finishes what it is doing first) and wait for them."""
        for worker in self.workers:
            worker.ask_to_stop()
        for worker in self.workers:
            worker.wait()
        self.workers = []
        self._limits.close()


# The worker's interpreter runs this: Ctrl-C and SIGTERM are ignored from the first line (the
# trainer handles them; minifcn.train.worker), then the package the trainer runs (its folder
# on the path, first unless it is there already) and nothing of the trainer's own script, so
# a script needs no __main__ guard.
BOOT = ("import signal; "
        "[signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)]; "
        "import sys; sys.argv[1] in sys.path or sys.path.insert(0, sys.argv[1]); "
        "from minifcn.train.worker import main; main(int(sys.argv[2]))")
# -P (Python 3.11 on): the current folder does not go on the worker's path
SAFE_PATH = ["-P"] if sys.version_info >= (3, 11) else []


class _Worker:
    """One worker process as the trainer sees it: its connection and its block of gradients."""

    def __init__(self, index, process, connection, grads):
        self.index, self.process, self.connection, self.grads = index, process, connection, grads
        self.name = f"minifcn-train-{index + 1}"

    @classmethod
    def start(cls, index, grads, setup):
        """Start worker ``index``: a fresh interpreter that inherits one end of a socket pair and
        the shared blocks' descriptors, and is sent ``setup`` over the socket."""
        ours, theirs = socket.socketpair()
        fds = [theirs.fileno(), setup["weights"][2], setup["grads"][2]]  # inherited by it alone
        root = str(Path(__file__).resolve().parents[2])  # the folder that holds minifcn/
        try:
            process = subprocess.Popen([sys.executable, *SAFE_PATH, "-c", BOOT, root, str(fds[0])],
                                       pass_fds=fds, stdin=subprocess.DEVNULL)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        worker = cls(index, process, Connection(ours.detach()), grads)
        try:
            worker.send(("setup", setup), "starting")
        except BaseException:
            worker.ask_to_stop()
            worker.wait()
            raise
        return worker

    def send(self, message, during):
        try:
            self.connection.send(message)
        except OSError:
            self._died(during)

    def receive(self, processes, during, timeout=None):
        """The worker's answer, or :class:`WorkerFailed` naming it if it failed or died."""
        waited = 0.0
        while not self.connection.poll(POLL_SECONDS):
            waited += POLL_SECONDS
            if self.process.poll() is not None:
                self._died(during)
            if timeout is not None and waited >= timeout:
                self.stop()
                raise WorkerFailed(f"training process {self.index + 1} of {processes} did not "
                                   f"answer within {timeout:.0f} s while {during}")
        try:
            kind, *body = self.connection.recv()
        except (EOFError, OSError):
            self._died(during)
        if kind == "error":
            raise WorkerFailed(f"training process {self.index + 1} of {processes} failed while "
                               f"{during}:\n{body[0].rstrip()}")
        return body

    def _died(self, during):
        try:
            code = self.process.wait(1.0)
        except subprocess.TimeoutExpired:
            code = None
        how = ("still running" if code is None else f"signal {-code}" if code < 0
               else f"exit code {code}")
        raise WorkerFailed(f"training process {self.index + 1} ({self.name}, pid "
                           f"{self.process.pid}) stopped ({how}) while {during}") from None

    def ask_to_stop(self):
        try:
            self.connection.send(("stop",))
        except OSError:
            pass

    def wait(self):
        """Wait for the process to end (killing it after ``STOP_SECONDS``) and close its end."""
        try:
            self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:  # a share that does not end: it ignores SIGTERM
            self.process.kill()
            self.process.wait()
        self.connection.close()

    def stop(self):
        self.ask_to_stop()
        self.wait()

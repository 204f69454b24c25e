"""One measurement, in a process of its own: ``python -m benchmarks.worker '<json spec>'``.

:mod:`benchmarks.run` starts one worker per measurement, so that each framework's peak
memory is its own and the thread counts are fixed before NumPy or PyTorch is imported
(``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` / ``MKL_NUM_THREADS`` in the environment,
plus ``torch.set_num_threads``). The worker prints one JSON object as its last line.

Tasks (``spec["task"]``):

- ``gemm``: GFLOP/s of a 4096^3 float32 matrix product (``np.matmul``; ``torch.mm`` too
  when PyTorch is installed), the machine's ceiling for every convolution here.
- ``fcn``: full FCN-8s, batch 1, float32, ``forward`` (eval, no gradient) or ``train``
  (forward, loss, backward), with per-layer times. ``framework``: ``minifcn`` (the engine,
  as the ``minifcn`` command runs), ``book`` (the same network on the book's ops,
  :mod:`minifcn.ops`, to show what the engine buys) or ``torch``.
- ``step``: the narrow training step (width 1/16, 96x96, batch 4, pad 69, no dropout):
  forward, loss, backward and a momentum-SGD update.
- ``parity``: both networks on one small input, to show that they compute the same thing.
- ``trainer_step``: the ``demo`` preset's whole trainer step (batch generation, Adam, the
  loss guard: what ``minifcn demo`` times), its batch shared among ``spec["processes"]``
  processes (:mod:`benchmarks.processes`).

Peak memory is the process's peak resident set size (``VmHWM``) from the first timed pass
on: it is reset after the model is built (``/proc/self/clear_refs``), so the float64
temporaries of the random initialisation do not count. Where the reset is not possible
it falls back to ``ru_maxrss``, the peak over the whole process, and says so.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time

import numpy as np

FULL = dict(num_classes=21, width=1.0, pad=100)
NARROW = dict(num_classes=21, width=1 / 16, pad=69, batch=4, size=96)


# ---------------------------------------------------------------------------- memory
def reset_peak_rss():
    """Start a new peak-RSS window; returns False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # 5: reset the peak resident set size (Linux >= 4.0)
        return True
    except OSError:
        return False


def _status_bytes(field):
    """A ``kB`` field of ``/proc/self/status`` (``VmHWM``, ``VmRSS``) in bytes, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes():
    """Peak resident set size of this process (since the last reset, where possible)."""
    peak = _status_bytes("VmHWM")
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    return peak


def rss_bytes():
    return _status_bytes("VmRSS")


# ---------------------------------------------------------------------------- the shared net
def build_fcn8s(num_classes, width, pad, ops="engine"):
    """The benchmark's FCN-8s (minifcn), seeded: He-normal trunk, bilinear upsamplers, and
    small random scorers (the reference's zero scorers would make every skip branch
    trivially zero). Every framework runs on exactly these parameters; ``ops`` picks the
    engine or the book."""
    import minifcn

    model = minifcn.FCN8s(num_classes=num_classes, width=width, pad=pad, dropout=0.0, seed=0,
                          ops=ops)
    rng = np.random.default_rng(1)
    for name in ("score_fr", "score_pool4", "score_pool3"):
        p = model.layers[name].weight
        p.data = (rng.standard_normal(p.shape) * 1e-2).astype(np.float32)
    return model


def make_batch(batch, size, num_classes, seed=2):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    labels = rng.integers(0, num_classes, (batch, size, size))
    labels[:, :4] = 255  # a void border, as in VOC
    return x, labels


# ---------------------------------------------------------------------------- minifcn
OPS = {"minifcn": "engine", "book": "book"}  # the op set each minifcn framework runs


class MinifcnTimer:
    """Times every layer's forward and backward by wrapping the layer objects' methods.

    The wrappers live on the instances of this one model, only in this process; the
    package itself carries no timing code. ``sync`` waits for the GPU (a no-op on the CPU).
    """

    def __init__(self, model, sync):
        self.times = {}
        self.sync = sync
        for name, layer in model.layers.items():
            layer.forward = self._wrap(name, "forward", layer.forward)
            layer.backward = self._wrap(name, "backward", layer.backward)

    def _wrap(self, name, kind, fn):
        def timed(*args):
            self.sync()
            start = time.perf_counter()
            out = fn(*args)
            self.sync()
            self.times.setdefault(name, {}).setdefault(kind, 0.0)
            self.times[name][kind] += time.perf_counter() - start
            return out

        return timed

    def take(self):
        times, self.times = self.times, {}
        return times


def minifcn_fcn(spec):
    from minifcn.backend import to_device
    from minifcn.ops import softmax_cross_entropy_backward, softmax_cross_entropy_forward

    device, mode = spec["device"], spec["mode"]
    model = build_fcn8s(**FULL, ops=OPS[spec["framework"]]).to(device)
    model.train(mode == "train")
    x, labels = make_batch(1, spec["size"], FULL["num_classes"])
    x, labels = to_device(x, device), to_device(labels, device)
    sync = _minifcn_sync(device)
    timer = MinifcnTimer(model, sync)

    def one_pass():
        sync()
        start = time.perf_counter()
        if mode == "train":
            loss, cache = softmax_cross_entropy_forward(model(x), labels)
            # no image gradient, as in PyTorch, whose input does not require one
            model.backward(softmax_cross_entropy_backward(1.0, cache), input_grad=False)
        else:  # as PyTorch's forward under no_grad: no caches kept for a backward
            with model.inference():
                model(x)
        sync()
        return time.perf_counter() - start

    return _repeat(one_pass, timer.take, spec, device)


def _minifcn_sync(device):
    if device == "gpu":
        import cupy

        return cupy.cuda.Device().synchronize
    return lambda: None


# ---------------------------------------------------------------------------- PyTorch
class TorchTimer:
    """Per-layer forward times from the forward's own clock; per-layer backward times from
    the moments the gradients of successive layer outputs arrive (tensor hooks): a layer's
    backward is the interval from its output's gradient to the next gradient. Exact along
    the trunk on the CPU, approximate in the skip head where branches interleave, and only
    launch times on a GPU (the hooks run when kernels are queued, not when they finish)."""

    def __init__(self):
        self.forward, self.arrivals = {}, []

    def timer(self, name, seconds):
        self.forward[name] = self.forward.get(name, 0.0) + seconds

    def on_output(self, name, tensor):
        if tensor.requires_grad:
            tensor.register_hook(lambda grad: self.arrivals.append((time.perf_counter(), name)))

    def take(self, backward_end=None):
        times = {name: {"forward": t} for name, t in self.forward.items()}
        events = sorted(self.arrivals)
        for k, (t, name) in enumerate(events):
            end = events[k + 1][0] if k + 1 < len(events) else backward_end
            if end is not None:
                times.setdefault(name, {}).setdefault("backward", 0.0)
                times[name]["backward"] += end - t
        self.forward, self.arrivals = {}, []
        return times


def torch_fcn(spec):
    import torch

    from benchmarks.torch_fcn8s import fcn8s_forward, state_to_torch

    device, mode = spec["device"], spec["mode"]
    dev = "cuda" if device == "gpu" else "cpu"
    params = state_to_torch(build_fcn8s(**FULL).state_dict(), dev)
    for name, p in params.items():
        p.requires_grad_(mode == "train" and not name.startswith("upscore"))  # fixed upsamplers
    x, labels = make_batch(1, spec["size"], FULL["num_classes"])
    x, labels = torch.from_numpy(x).to(dev), torch.from_numpy(labels).to(dev)
    gpu_sync = torch.cuda.synchronize if device == "gpu" else None
    sync = gpu_sync or (lambda: None)
    timer = TorchTimer()
    state = {}

    def one_pass():
        sync()
        start = time.perf_counter()
        if mode == "train":
            scores = fcn8s_forward(params, x, FULL["pad"], timer.timer, timer.on_output, gpu_sync)
            loss = torch.nn.functional.cross_entropy(scores, labels, ignore_index=255)
            loss.backward()
            for p in params.values():
                p.grad = None  # minifcn overwrites its gradients; PyTorch would accumulate
        else:
            with torch.no_grad():
                fcn8s_forward(params, x, FULL["pad"], timer.timer, sync=gpu_sync)
        sync()
        state["end"] = time.perf_counter()
        return state["end"] - start

    return _repeat(one_pass, lambda: timer.take(state.get("end")), spec, device)


# ---------------------------------------------------------------------------- common loop
def _repeat(one_pass, take_layers, spec, device):
    """One warm-up pass, then ``repeats`` timed passes; peak memory over the timed ones."""
    one_pass()  # warm-up: first-touch page faults, BLAS buffers, CUDA kernels
    take_layers()
    rss_after_warmup = rss_bytes()
    exact_peak = reset_peak_rss()
    if device == "gpu":
        _reset_gpu_peak(spec["framework"])
    totals, layers = [], []
    for _ in range(spec["repeats"]):
        totals.append(one_pass())
        layers.append(take_layers())
    result = dict(totals=totals, layers=layers, peak_rss=peak_rss_bytes(),
                  peak_rss_exact=exact_peak, rss_after_warmup=rss_after_warmup)
    if device == "gpu":
        result["gpu_peak"] = _gpu_peak(spec["framework"])
    return result


def _reset_gpu_peak(framework):
    if framework == "torch":
        import torch

        torch.cuda.reset_peak_memory_stats()


def _gpu_peak(framework):
    """Bytes: PyTorch's own peak; for CuPy, what its memory pool holds (its high-water mark)."""
    if framework == "torch":
        import torch

        return torch.cuda.max_memory_allocated()
    import cupy

    return cupy.get_default_memory_pool().total_bytes()


# ---------------------------------------------------------------------------- narrow step
def narrow_step(spec):
    device, framework = spec["device"], spec["framework"]
    model = build_fcn8s(NARROW["num_classes"], NARROW["width"], NARROW["pad"],
                        ops=OPS.get(framework, "engine"))
    x, labels = make_batch(NARROW["batch"], NARROW["size"], NARROW["num_classes"])
    lr, momentum = 1e-3, 0.9
    if framework in OPS:
        from minifcn.backend import to_device
        from minifcn.ops import softmax_cross_entropy_backward, softmax_cross_entropy_forward
        from minifcn.train.optim import SGD

        model = model.to(device).train()
        x, labels = to_device(x, device), to_device(labels, device)
        optimizer = SGD(model.named_parameters(), lr, momentum, weight_decay=0.0)
        sync = _minifcn_sync(device)

        def step():
            scores = model(x)
            _, cache = softmax_cross_entropy_forward(scores, labels)
            model.backward(softmax_cross_entropy_backward(1.0, cache), input_grad=False)
            optimizer.step()
    else:
        import torch

        from benchmarks.torch_fcn8s import fcn8s_forward, state_to_torch

        dev = "cuda" if device == "gpu" else "cpu"
        params = state_to_torch({k: v.copy() for k, v in model.state_dict().items()}, dev)
        for name, p in params.items():
            p.requires_grad_(not name.startswith("upscore"))
        x, labels = torch.from_numpy(x).to(dev), torch.from_numpy(labels).to(dev)
        optimizer = torch.optim.SGD([p for p in params.values() if p.requires_grad], lr,
                                    momentum=momentum)
        sync = torch.cuda.synchronize if device == "gpu" else (lambda: None)

        def step():
            optimizer.zero_grad(set_to_none=True)
            scores = fcn8s_forward(params, x, NARROW["pad"])
            torch.nn.functional.cross_entropy(scores, labels, ignore_index=255).backward()
            optimizer.step()

    for _ in range(2):  # warm-up, and the momentum buffers come into being
        step()
    sync()
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return dict(totals=times)


def trainer_step(spec):
    import tempfile

    from minifcn.train import Trainer, preset

    config = preset("demo").replace(processes=int(spec["processes"]), minutes=0.0)
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, folder, progress=False)
        try:
            for _ in range(5):  # warm-up: the workers start, Adam's buffers come into being
                trainer.step()
                trainer.iteration += 1
            times = []
            for _ in range(spec["repeats"]):
                start = time.perf_counter()
                trainer.step()
                trainer.iteration += 1
                times.append(time.perf_counter() - start)
        finally:
            trainer.close()
    return dict(totals=times)


# ---------------------------------------------------------------------------- GEMM, parity
def gemm(spec):
    """Median GFLOP/s of a 4096^3 float32 product: ``np.matmul`` (``cupy.matmul`` on the GPU),
    and ``torch.mm`` on the same device when PyTorch is installed."""
    n, reps, gpu = 4096, 5, spec.get("device") == "gpu"
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))

    def rate(fn, sync=lambda: None):
        fn()
        sync()
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        return 2 * n ** 3 / float(np.median(times)) / 1e9

    if gpu:
        import cupy

        ga, gb = cupy.asarray(a), cupy.asarray(b)
        result = {"numpy_gflops": rate(lambda: ga @ gb, cupy.cuda.Device().synchronize)}
    else:
        result = {"numpy_gflops": rate(lambda: a @ b)}
    result.update(size=n, repeats=reps)
    try:
        import torch
    except ImportError:
        return result
    dev = "cuda" if gpu else "cpu"
    ta, tb = torch.from_numpy(a).to(dev), torch.from_numpy(b).to(dev)
    result["torch_gflops"] = rate(lambda: ta @ tb, torch.cuda.synchronize if gpu else (lambda: None))
    return result


def parity(spec):
    """Scores of both networks on a narrow FCN-8s at 64x80: the largest difference."""
    import torch

    from benchmarks.torch_fcn8s import fcn8s_forward, state_to_torch

    model = build_fcn8s(5, 1 / 16, 100).eval()
    x, _ = make_batch(2, 64, 5)
    x = x[..., :48]  # non-square
    ours = model(x)
    with torch.no_grad():
        theirs = fcn8s_forward(state_to_torch(model.state_dict()), torch.from_numpy(x)).numpy()
    return {"max_abs_diff": float(np.abs(ours - theirs).max()),
            "max_abs_score": float(np.abs(theirs).max()), "shape": list(ours.shape)}


def blas_threads():
    """Threads of each loaded BLAS/OpenMP pool, as ``threadpoolctl`` reports them (when it is
    installed; else the environment variable that set them)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")}
    return {f"{p['internal_api']} ({p['prefix']})": p["num_threads"] for p in threadpool_info()}


TASKS = {"gemm": gemm, "parity": parity, "step": narrow_step, "trainer_step": trainer_step,
         ("fcn", "minifcn"): minifcn_fcn, ("fcn", "book"): minifcn_fcn, ("fcn", "torch"): torch_fcn}


def main(argv=None):
    spec = json.loads((argv or sys.argv[1:])[0])
    if spec.get("keep_freed_memory"):  # the same allocator setting for either library
        from minifcn.engine.memory import keep_freed_memory

        keep_freed_memory()
    if spec.get("framework") == "torch":
        import torch

        torch.set_num_threads(int(spec["threads"]))
    task = TASKS.get((spec["task"], spec.get("framework"))) or TASKS[spec["task"]]
    result = task(spec)
    result.update(pid=os.getpid(), blas_threads=blas_threads())
    print(json.dumps(result))


if __name__ == "__main__":
    main()

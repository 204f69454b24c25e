"""Full-size FCN-8s, minifcn against PyTorch: time per layer, peak memory, share of GEMM peak.

Run from the repository root::

    python -m benchmarks.run                      # 224 and 500, the table in docs/performance.md
    python -m benchmarks.run --quick              # 224 only, fewer passes: a smoke test
    python -m benchmarks.run --sizes 500 --repeats 5 --rounds 3 --threads 2
    python -m benchmarks.run --device gpu         # CuPy against PyTorch CUDA, when there is a GPU
    python -m benchmarks.run --book-sizes 224,500 # the book at 500x500 too (about 6 GB to train)

What it does, in this order, each measurement in a fresh process (:mod:`benchmarks.worker`)
with the same thread count for both libraries:

1. the machine's float32 GEMM rate (``np.matmul``, 4096^3), the ceiling for every layer;
2. a parity check: both networks on the same parameters and input agree;
3. for every size and pass (``forward``: eval, no gradient; ``train``: forward, loss,
   backward), ``rounds`` rounds of one minifcn process then one PyTorch process
   (alternating, so that load from other work on the machine falls on both), each doing one
   warm-up and ``repeats`` timed passes; medians over all timed passes;
4. the narrow training step (width 1/16, 96x96, batch 4, pad 69, no dropout, momentum SGD).

minifcn runs its engine (:mod:`minifcn.engine`), as the ``minifcn`` command does. The same
network on the book's ops (:mod:`minifcn.ops`) is measured in the same rounds, as a third
process, at the sizes of ``--book-sizes`` (224 by default: the book keeps every layer's
columns for the backward, several GB at 500x500) and in the narrow step, so that the table
shows what the engine buys; ``--no-book`` leaves it out.

It prints a Markdown table, writes ``benchmarks/results/latest.json`` and draws the
per-layer chart ``docs/figures/performance/layers_<size>.png``. Timing assertions live here,
never in the tests.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.report import FIGURES, RESULTS, ROOT, layer_chart, table

# ratio to PyTorch, at most (issue 19: computing only what the image reaches). Memory: the
# peaks measured before it (0.95 of 1.35 GB forward, 2.56 of 2.62 GB training at 500x500)
TARGETS = {"forward": {"224": 0.70, "500": 0.85, "other": 0.85}, "train": 1.0,
           "memory_forward": 0.75, "memory_train": 1.0, "step": 1.0}
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def run_worker(spec, threads, timeout=1800):
    """Run one measurement in a fresh interpreter with the thread count fixed by environment
    (read by OpenBLAS/MKL/OpenMP when they load, so it must be set before the import)."""
    env = dict(os.environ, **{var: str(threads) for var in THREAD_VARS})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.worker", json.dumps(spec)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def torch_available(device):
    try:
        import torch
    except ImportError:
        return False
    return device == "cpu" or torch.cuda.is_available()


def gpu_status():
    """``None`` when both CuPy and PyTorch see a GPU, else the reason it is not measured."""
    from minifcn.backend import cupy_or_none

    if cupy_or_none() is None:
        return "not measured: CuPy with a usable CUDA device is not available on this machine"
    if not torch_available("gpu"):
        return "not measured: PyTorch sees no CUDA device"
    return None


def median_layers(runs):
    """``{layer: {"forward": s, "backward": s}}``: per-layer medians over timed passes."""
    names = list(dict.fromkeys(name for run in runs for name in run))  # network order
    out = {}
    for name in names:
        out[name] = {}
        for kind in ("forward", "backward"):
            values = [run[name][kind] for run in runs if kind in run.get(name, {})]
            if values:
                out[name][kind] = float(np.median(values))
    return out


def frameworks_for(args, size=None):
    """The processes of one round, in order: the engine, the book (where asked for), PyTorch."""
    book = not args.no_book and (size is None or size in args.book_sizes)
    return (["minifcn"] + (["book"] if book else [])
            + (["torch"] if torch_available(args.device) else []))


def measure_fcn(size, mode, args, log):
    """Alternate minifcn, book and PyTorch processes; medians of every timed pass."""
    frameworks = frameworks_for(args, size)
    collected = {f: {"totals": [], "layers": [], "peak_rss": [], "gpu_peak": []} for f in frameworks}
    for r in range(args.rounds):
        for framework in frameworks:
            spec = dict(task="fcn", framework=framework, size=size, mode=mode,
                        repeats=args.repeats, device=args.device, threads=args.threads,
                        keep_freed_memory=args.keep_freed_memory)
            result = run_worker(spec, args.threads)
            c = collected[framework]
            c["totals"] += result["totals"]
            c["layers"] += result["layers"]
            c["peak_rss"].append(result["peak_rss"])
            c["peak_rss_exact"] = result["peak_rss_exact"]
            if "gpu_peak" in result:
                c["gpu_peak"].append(result["gpu_peak"])
            log(f"  {size} {mode:<8} round {r + 1} {framework:<8} "
                + " ".join(f"{t:.2f}" for t in result["totals"]) + " s, peak "
                + f"{result['peak_rss'] / 1e9:.2f} GB")
    out = {}
    for framework, c in collected.items():
        out[framework] = dict(seconds=float(np.median(c["totals"])), all_seconds=c["totals"],
                              peak_rss=int(max(c["peak_rss"])), peak_rss_exact=c["peak_rss_exact"],
                              layers=median_layers(c["layers"]))
        if c["gpu_peak"]:
            out[framework]["gpu_peak"] = int(max(c["gpu_peak"]))
    return out


def measure_step(args, log):
    frameworks = frameworks_for(args)
    collected = {f: [] for f in frameworks}
    for r in range(args.rounds):
        for framework in frameworks:
            spec = dict(task="step", framework=framework, repeats=args.step_repeats,
                        device=args.device, threads=args.threads,
                        keep_freed_memory=args.keep_freed_memory)
            collected[framework] += run_worker(spec, args.threads)["totals"]
            log(f"  narrow step round {r + 1} {framework:<8} "
                f"{np.median(collected[framework][-args.step_repeats:]) * 1e3:.0f} ms")
    return {f: dict(seconds=float(np.median(t)), all_seconds=t) for f, t in collected.items()}


def flops(size):
    from minifcn.models.describe import blob_rows

    rows = blob_rows("fcn8s", size, size)
    return sum(r["flops"] for r in rows), {r["name"]: r["flops"] for r in rows}


def machine():
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:
        pass
    return dict(cpu=cpu, logical_cpus=os.cpu_count(), load_average=load, versions=versions)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="224x224 only, 1 round of 2 passes")
    parser.add_argument("--sizes", default="224,500", help="square input sides (default 224,500)")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per process (2)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating minifcn/PyTorch process pairs per measurement (2)")
    parser.add_argument("--step-repeats", type=int, default=10, help="timed narrow steps (10)")
    parser.add_argument("--threads", type=int, default=2, help="threads for both libraries (2)")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--out", default=None,
                        help="JSON results file (default benchmarks/results/latest.json; "
                             "latest_gpu.json with --device gpu)")
    parser.add_argument("--book-sizes", default="224",
                        help="sizes at which the book's ops are measured too (default 224)")
    parser.add_argument("--no-book", action="store_true",
                        help="measure the engine and PyTorch only")
    parser.add_argument("--no-figure", action="store_true", help="skip the per-layer chart")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="both libraries' processes keep freed memory (glibc mallopt, as the "
                             "minifcn command does; default: the allocator as Python leaves it)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats, args.rounds, args.step_repeats = "224", 2, 1, 5
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]  # --sizes "": the step only
    args.book_sizes = [int(s) for s in args.book_sizes.split(",") if s.strip()]
    if args.out is None:
        name = "latest_gpu.json" if args.device == "gpu" else "latest.json"
        if args.keep_freed_memory:
            name = name.replace(".json", "_keep_freed_memory.json")
        args.out = str(RESULTS.with_name(name))

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    report = dict(machine=machine(), threads=args.threads, device=args.device,
                  settings=dict(repeats=args.repeats, rounds=args.rounds,
                                step_repeats=args.step_repeats, sizes=sizes,
                                book_sizes=[] if args.no_book else args.book_sizes,
                                keep_freed_memory=args.keep_freed_memory),
                  targets=TARGETS, started=time.strftime("%Y-%m-%d %H:%M:%S"))
    if args.device == "gpu":
        reason = gpu_status()
        if reason is not None:
            log(f"GPU benchmark {reason}; nothing measured.")
            report["gpu"] = reason
            _write(report, args.out)
            return 0
    t0 = time.perf_counter()
    log(f"GEMM rate ({args.threads} threads) ...")
    gemm_spec = dict(task="gemm", threads=args.threads, device=args.device)
    gemm_runs = [run_worker(gemm_spec, args.threads)]
    log(f"  np.matmul {gemm_runs[0]['numpy_gflops']:.0f} GFLOP/s")
    if torch_available("cpu"):
        report["parity"] = run_worker(dict(task="parity", threads=args.threads), args.threads)
        log(f"parity: max |minifcn - PyTorch| = {report['parity']['max_abs_diff']:.2e} "
            f"(scores up to {report['parity']['max_abs_score']:.2e})")
    report["fcn"] = {}
    for size in sizes:
        total, _ = flops(size)
        report["fcn"][str(size)] = {"gflop_forward": total / 1e9}
        for mode in ("forward", "train"):
            log(f"FCN-8s {size}x{size} {mode} ...")
            report["fcn"][str(size)][mode] = measure_fcn(size, mode, args, log)
    log("narrow training step ...")
    report["step"] = measure_step(args, log)
    log("GEMM rate again ...")
    gemm_runs.append(run_worker(gemm_spec, args.threads))
    log(f"  np.matmul {gemm_runs[1]['numpy_gflops']:.0f} GFLOP/s")
    # the ceiling: the better of the two medians (one at the start, one at the end)
    report["gemm"] = dict(max(gemm_runs, key=lambda g: g["numpy_gflops"]), runs=gemm_runs)
    report["gpu"] = gpu_status() if args.device == "cpu" else "measured"
    report["wall_seconds"] = time.perf_counter() - t0
    report["machine"]["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    _write(report, args.out)


    print(table(report))
    if not args.no_figure:
        for size in sizes:
            tag = "gpu_" if args.device == "gpu" else "" if args.threads == 2 else f"{args.threads}t_"
            tag += "keep_" if args.keep_freed_memory else ""
            path = layer_chart(report, size, FIGURES / f"layers_{tag}{size}.png")
            if path:
                log(f"figure: {path}")
    return 0


def _write(report, out):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

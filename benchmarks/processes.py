"""The demo's training step with its batch shared between two processes, against one process,
and PyTorch's narrow step on the same machine.

Run from the repository root::

    python -m benchmarks.processes                # 3 rounds of 100 steps each way
    python -m benchmarks.processes --rounds 2 --steps 50

Each round runs, each in a fresh interpreter and one after the other: the ``demo`` preset's
whole trainer step (batch generation, forward, loss, backward, Adam, the loss guard: what
``minifcn demo`` times) with the batch of 4 in one process and shared by two
(:mod:`minifcn.train.processes`), one BLAS thread per process as the demo runs them; and, when
PyTorch is installed, the narrow step of :mod:`benchmarks.run` in PyTorch with two threads
(the whole machine, as the two processes use it; momentum SGD on a fixed batch, so a little
less work than the trainer's step). Medians over every timed step, written to
``benchmarks/results/processes.json``. Timing assertions live here, never in the tests.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from benchmarks.report import ROOT
from benchmarks.run import machine, run_worker, torch_available


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each configuration (3)")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per round (100)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "processes.json"), help="result file")
    args = parser.parse_args(argv)
    # as the minifcn command runs: glibc keeps freed memory, one BLAS thread per process
    ours = dict(task="trainer_step", threads=1, keep_freed_memory=True)
    runs = {"minifcn, 1 process": dict(ours, processes=1),
            "minifcn, 2 processes": dict(ours, processes=2)}
    if torch_available("cpu"):
        runs["PyTorch narrow step, 2 threads"] = dict(task="step", framework="torch", device="cpu",
                                                      threads=2, keep_freed_memory=True)
    collected = {name: [] for name in runs}
    for r in range(args.rounds):
        for name, spec in runs.items():
            times = run_worker(dict(spec, repeats=args.steps), spec["threads"])["totals"]
            collected[name] += times
            print(f"round {r + 1}  {name:<32} {np.median(times) * 1e3:6.1f} ms", flush=True)
    medians = {name: float(np.median(t)) for name, t in collected.items()}
    one = medians["minifcn, 1 process"]
    print("\n| configuration | median step | against one process |\n|---|---:|---:|")
    for name, seconds in medians.items():
        print(f"| {name} | {seconds * 1e3:.1f} ms | {seconds / one:.2f}x |")
    report = dict(machine=machine(), rounds=args.rounds, steps=args.steps,
                  median_seconds=medians, all_seconds=collected)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()

"""Tables and the per-layer chart from a results file of :mod:`benchmarks.run`.

``python -m benchmarks.report [results.json] [--figures]`` reprints the tables of a finished
run (and, with ``--figures``, redraws its charts) without measuring anything.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
FIGURES = ROOT / "docs" / "figures" / "performance"

GB = 1e9


def _ratio_cell(ratio, target):
    verdict = "met" if ratio <= target else "not met"
    return f"{ratio:.2f}x ({verdict}, <= {target:g}x)"


def target(targets, kind, size=None):
    """The target ratio for ``kind`` at input ``size``: a number, or ``{size: ratio, "other":
    ratio}`` where it depends on the size (results files of older runs hold plain numbers)."""
    value = targets[kind]
    if isinstance(value, dict):
        return value.get(str(size), value["other"])
    return value


def _book_cells(book, ours):
    """The book's time, its ratio to the engine's, and its peak (``-`` where not measured)."""
    if book is None:
        return ["-", "-", "-"]
    return [f"{book['seconds']:.2f}", f"{book['seconds'] / ours['seconds']:.1f}x",
            f"{book['peak_rss'] / GB:.2f}"]


def table(report):
    """Markdown: the summary table, the narrow step, and per-layer times of the largest size.

    ``minifcn`` is the engine; the ``book`` columns are the same network on the book's ops
    (``-`` at sizes where the run did not measure them), with the book's time as a multiple
    of the engine's.
    """
    gemm = report["gemm"]["numpy_gflops"]
    targets = report["targets"]
    product = "cupy.matmul" if report["device"] == "gpu" else "np.matmul"
    lines = [f"{report['threads']} threads, {report['device']}; {product} float32 GEMM: "
             f"{gemm:.0f} GFLOP/s" + (f", torch.mm {report['gemm']['torch_gflops']:.0f} GFLOP/s"
                                      if "torch_gflops" in report["gemm"] else "")
             + ("; peaks are GPU memory" if report["device"] == "gpu" else "; peaks are RSS"),
             "",
             "| input | pass | GFLOP | minifcn s | PyTorch s | time ratio | minifcn peak GB "
             "| PyTorch peak GB | memory ratio | minifcn % of GEMM | PyTorch % of GEMM "
             "| book s | book / minifcn | book peak GB |",
             "|---|---|---:|---:|---:|---|---:|---:|---|---:|---:|---:|---|---:|"]
    for size, by_mode in report["fcn"].items():
        for mode in ("forward", "train"):
            if mode not in by_mode:
                continue
            gflop = by_mode["gflop_forward"] * (3 if mode == "train" else 1)
            ours, theirs = by_mode[mode]["minifcn"], by_mode[mode].get("torch")
            book = by_mode[mode].get("book")
            if report["device"] == "gpu":  # device memory: CuPy's pool, PyTorch's allocator
                ours = dict(ours, peak_rss=ours.get("gpu_peak", 0))
                theirs = theirs and dict(theirs, peak_rss=theirs.get("gpu_peak", 0))
                book = book and dict(book, peak_rss=book.get("gpu_peak", 0))
            pass_name = "forward" if mode == "forward" else "forward+backward"
            cells = [f"{size}x{size}", pass_name, f"{gflop:.0f}", f"{ours['seconds']:.2f}"]
            if theirs is None:
                cells += ["-", "-", f"{ours['peak_rss'] / GB:.2f}", "-", "-",
                          f"{100 * gflop / ours['seconds'] / gemm:.0f}%", "-"]
            else:
                mem_ratio = ours["peak_rss"] / theirs["peak_rss"]
                cells += [f"{theirs['seconds']:.2f}",
                          _ratio_cell(ours["seconds"] / theirs["seconds"], target(targets, mode, size)),
                          f"{ours['peak_rss'] / GB:.2f}", f"{theirs['peak_rss'] / GB:.2f}",
                          _ratio_cell(mem_ratio, target(targets, "memory_" + mode
                                                          if "memory_" + mode in targets
                                                          else "memory", size)),
                          f"{100 * gflop / ours['seconds'] / gemm:.0f}%",
                          f"{100 * gflop / theirs['seconds'] / gemm:.0f}%"]
            lines.append("| " + " | ".join(cells + _book_cells(book, ours)) + " |")
    step = report.get("step")
    if step:
        ours, theirs = step["minifcn"]["seconds"], step.get("torch", {}).get("seconds")
        book = step.get("book", {}).get("seconds")
        lines += ["", "Narrow training step (width 1/16, 96x96, batch 4, pad 69, dropout 0, "
                  "forward + loss + backward + momentum SGD):", "",
                  "| minifcn ms | PyTorch ms | time ratio | book ms | book / minifcn |",
                  "|---:|---:|---|---:|---|",
                  f"| {ours * 1e3:.0f} | " + (f"{theirs * 1e3:.0f} | "
                                              + _ratio_cell(ours / theirs, target(targets, "step"))
                                              if theirs else "- | -")
                  + (f" | {book * 1e3:.0f} | {book / ours:.1f}x |" if book else " | - | - |")]
    largest = max(report["fcn"], key=int, default=None)
    if largest and "train" in report["fcn"][largest]:
        lines += ["", f"Per layer at {largest}x{largest}, forward+backward pass, seconds "
                  "(layers over 1% of minifcn's total):", ""] + layer_table(report, largest)
    lines += ["", f"GPU: {report.get('gpu')}"]
    return "\n".join(lines)


def layer_rows(report, size, share=0.01):
    """``(name, ours_fwd, ours_bwd, theirs_fwd, theirs_bwd)`` for the layers that matter."""
    train = report["fcn"][str(size)]["train"]
    ours, theirs = train["minifcn"]["layers"], train.get("torch", {}).get("layers", {})
    total = train["minifcn"]["seconds"]
    rows = []
    for name, t in ours.items():
        f, b = t.get("forward", 0.0), t.get("backward", 0.0)
        if f + b >= share * total:
            o = theirs.get(name, {})
            rows.append((name, f, b, o.get("forward"), o.get("backward")))
    order = list(ours)  # the network's order (dicts keep insertion order)
    return sorted(rows, key=lambda r: order.index(r[0]))


def layer_table(report, size):
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["| layer | minifcn fwd | PyTorch fwd | minifcn bwd | PyTorch bwd |",
             "|---|---:|---:|---:|---:|"]
    for name, of, ob, tf, tb in layer_rows(report, size):
        lines.append(f"| {name} | {fmt(of)} | {fmt(tf)} | {fmt(ob)} | {fmt(tb)} |")
    return lines


def layer_chart(report, size, path):
    """Horizontal bars per layer: minifcn and PyTorch, forward and backward. Returns the path."""
    if "train" not in report["fcn"].get(str(size), {}):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = layer_rows(report, size)
    names = [r[0] for r in rows]
    y = np.arange(len(rows))
    series = [("minifcn forward", 1, "#1f77b4"), ("PyTorch forward", 3, "#aec7e8"),
              ("minifcn backward", 2, "#d62728"), ("PyTorch backward", 4, "#ff9896")]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.5))
    height = 0.2
    for k, (label, col, color) in enumerate(series):
        values = [r[col] or 0.0 for r in rows]
        ax.barh(y + (k - 1.5) * height, values, height, label=label, color=color)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("seconds per pass (median)")
    threads = report["threads"]
    ax.set_title(f"FCN-8s {size}x{size}, forward+backward, per layer ({threads} CPU threads)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path):
    """Write a matplotlib figure (110 dpi), making its folder; close it; return the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    files = [a for a in argv if not a.startswith("--")]
    report = json.loads(Path(files[0] if files else RESULTS).read_text())
    print(table(report))
    if "--figures" in argv:
        for size in report.get("fcn", {}):
            layer_chart(report, size, FIGURES / f"layers_{size}.png")


if __name__ == "__main__":
    main()

"""The files of a training run folder: who may write there, the log, leftovers of crashes.

A run folder belongs to one run. A new run refuses a folder that holds another one, so that
its ``log.csv`` never continues a stale one and its checkpoint never replaces one that a
user meant to keep; ``--resume`` continues the run that is there, ``--overwrite`` removes
its files first. Only the run's own files are removed, never the folder or anything else in
it.

A process killed while it writes a checkpoint (power cut, ``kill -9``) leaves the
temporary file of :func:`minifcn.npzio.atomic_write` behind, next to the intact previous
checkpoint; the next start or resume removes it.
"""
from __future__ import annotations

import csv
from pathlib import Path

from ..errors import UsageError
from ..npzio import atomic_write, stale_temporaries

RUN_FILES = ("checkpoint.npz", "model.npz", "log.csv", "summary.json", "curves.png")
LOG_FIELDS = ["iteration", "loss", "pixel_accuracy", "lr", "seconds",
              "val_pixel_accuracy", "val_mean_accuracy", "val_mean_iu", "val_frequency_weighted_iu"]


def run_files(folder):
    """The files of a run that ``folder`` holds (names from :data:`RUN_FILES`), sorted."""
    folder = Path(folder)
    return sorted(name for name in RUN_FILES if (folder / name).exists())


def refuse_if_taken(folder):
    """Raise :class:`~minifcn.errors.UsageError` if ``folder`` holds a run, naming its files."""
    found = run_files(folder)
    if found:
        raise UsageError(f"{folder} already holds a training run ({', '.join(found)}): continue "
                         f"it with --resume, replace it with --overwrite, or choose another --out")


def claim(folder, overwrite=False):
    """Make ``folder`` ready for a new run: refuse it if it holds one, or remove that run's
    files when ``overwrite``; create it if needed."""
    folder = Path(folder)
    if overwrite:
        for name in run_files(folder):
            (folder / name).unlink()
    else:
        refuse_if_taken(folder)
    folder.mkdir(parents=True, exist_ok=True)


def remove_stale_temporaries(folder):
    """Delete what interrupted atomic writes of the run's files left in ``folder``.

    :func:`~minifcn.npzio.atomic_write` writes ``NAME`` through ``.NAME.<random>.tmp`` in the
    same folder; only files of that pattern for the run's own names are touched. Returns the
    names removed.
    """
    removed = []
    for name in RUN_FILES:
        for leftover in stale_temporaries(Path(folder) / name):
            leftover.unlink(missing_ok=True)
            removed.append(leftover.name)
    return removed


class CsvLog:
    """``log.csv``: one row per iteration, flushed at once (a crash loses no finished row)."""

    def __init__(self, path):
        path = Path(path)
        new = not path.exists() or path.stat().st_size == 0
        self.file = open(path, "a", newline="")
        self.writer = csv.DictWriter(self.file, LOG_FIELDS)
        if new:
            self.writer.writeheader()

    def writerow(self, row):
        self.writer.writerow(row)
        self.file.flush()

    def close(self):
        self.file.close()


def truncate_log(path, iteration):
    """Keep rows 1..``iteration`` of the log a resumed checkpoint continues.

    Later rows will be redone, identically. The rows are numbered 1, 2, ... in order, so the
    first row out of sequence ends what is kept: that is also where a row cut short by a
    crash (``1`` of ``13``) stops, instead of passing for iteration 1.
    """
    path = Path(path)
    if not path.exists():
        return
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if len(rows) == iteration or row.get("iteration") != str(len(rows) + 1):
                break
            rows.append(row)

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, LOG_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)  # a crash mid-rewrite must not lose the rows being kept

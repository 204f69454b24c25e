"""The course notebooks: each runs top to bottom, and none is committed with outputs.

Every ``notebooks/*.ipynb`` is executed with nbclient in a fresh ``python3`` kernel, with
``notebooks/`` as working directory, the repository root first on ``PYTHONPATH`` (the working
tree's package, whatever is installed) and the Agg matplotlib backend. A failing cell fails the
test with that cell's source and traceback.
"""
from __future__ import annotations

import os
import re
import runpy
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 300
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # IPython colours its tracebacks


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    # the kernel inherits the environment; the working tree's package comes first on its path
    monkeypatch.setenv("MPLBACKEND", "Agg")
    path_entries = [str(ROOT), os.environ.get("PYTHONPATH")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in path_entries if p))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    failure = None
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:  # its text: the cell and traceback
        failure = f"{path.name}: a cell failed\n{ANSI.sub('', str(exc))}"
    except nbclient.exceptions.CellTimeoutError as exc:
        failure = (f"{path.name}: a cell ran longer than {CELL_TIMEOUT_S} s\n"
                   f"{ANSI.sub('', str(exc))}")
    if failure:
        pytest.fail(failure, pytrace=False)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [k for k, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: code cells {dirty} hold outputs or execution counts; "
                       f"clear them (e.g. jupyter nbconvert --clear-output --inplace {path.name})")


def test_generated_notebooks_match_their_builder(capsys):
    # notebooks 00, 01, 02, 04, 05 and 06 are written by docs/make_notebooks.py: edit it, then rerun it
    builder = ROOT / "docs" / "make_notebooks.py"
    if not builder.exists():
        pytest.skip("no notebook builder")
    namespace = runpy.run_path(str(builder))
    assert namespace["main"](["--check"]) == 0, capsys.readouterr().out

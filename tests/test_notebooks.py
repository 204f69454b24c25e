"""The course notebooks: one form for all eight, each runs top to bottom.

The committed ``.ipynb`` files are the sources (edited in Jupyter, nothing generates them).
The tests keep them in one form: valid nbformat 4.5 with cell ids, written as nbformat and
Jupyter write them, no outputs, execution counts or run-time metadata, the same kernel
metadata, and exactly the notebooks the README's table lists. The command the docs give to
clear a notebook is run as written and must bring an executed notebook back to that form.

Every ``notebooks/*.ipynb`` is executed twice with nbclient in a fresh ``python3`` kernel, with
``notebooks/`` as working directory, the repository root first on ``PYTHONPATH`` (the working
tree's package, whatever is installed), the Agg matplotlib backend and still figures instead of
sliders: as committed, where every exercise check must say "not yet", and with every answer
cell replaced by its solution (``tests/notebook_exercises.py``), where every check must say
"right". A failing cell fails the test with that cell's source and traceback.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from notebook_exercises import answer_cells, solutions, verdicts, with_solutions

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 300
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # IPython colours its tracebacks
# what every notebook says about its kernel, and nothing else at notebook level
NOTEBOOK_METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}
STRIP_COMMAND_PAGE = ROOT / "docs" / "getting-started.md"


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


def test_the_notebooks_are_the_ones_the_readme_lists():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| `notebooks/([^`]+\.ipynb)` \|", readme, flags=re.M)
    assert sorted(listed) == [p.name for p in NOTEBOOKS], (
        f"README.md's notebook table lists {sorted(listed)}; notebooks/ holds "
        f"{[p.name for p in NOTEBOOKS]}")
    numbers = [p.name[:3] for p in NOTEBOOKS]
    assert numbers == [f"{k:02d}_" for k in range(len(NOTEBOOKS))], (
        f"notebooks are numbered 00_, 01_, ... in reading order; found {numbers}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_in_the_one_form(path):
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
    assert (nb.nbformat, nb.nbformat_minor) >= (4, 5), (
        f"{path.name}: nbformat {nb.nbformat}.{nb.nbformat_minor}; expected 4.5 or later (cell ids)")
    nbformat.validate(nb)  # raises ValidationError naming what is wrong
    ids = [cell.get("id") for cell in nb.cells]
    assert all(ids) and len(set(ids)) == len(ids), f"{path.name}: cell ids missing or repeated: {ids}"
    assert nb.metadata == NOTEBOOK_METADATA, (
        f"{path.name}: notebook metadata {dict(nb.metadata)}; expected {NOTEBOOK_METADATA}")
    dirty = [k for k, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and (cell.outputs or cell.execution_count is not None or cell.metadata)]
    assert not dirty, (f"{path.name}: code cells {dirty} hold outputs, execution counts or "
                       f"metadata; clear them with the command in docs/getting-started.md")
    # the layout nbformat and Jupyter write (indent 1, sorted keys): diffs show content only
    assert text == nbformat.writes(nb) + "\n", (
        f"{path.name}: not in the JSON layout Jupyter writes; rewrite it with the command in "
        f"docs/getting-started.md")


def strip_command():
    """The one line of docs/getting-started.md that clears the notebooks."""
    lines = [line.strip() for line in STRIP_COMMAND_PAGE.read_text(encoding="utf-8").splitlines()
             if line.strip().startswith("jupyter nbconvert")]
    assert len(lines) == 1, f"{STRIP_COMMAND_PAGE.name}: expected one nbconvert command, found {lines}"
    return lines[0]


def as_jupyter_leaves_it(nb):
    """What running the notebook in Jupyter adds: outputs, counts, timings, kernel details."""
    nb.metadata.language_info.update(version="3.11.7", pygments_lexer="ipython3",
                                     codemirror_mode={"name": "ipython", "version": 3})
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    for k, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.execution_count = k + 1
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="out\n")]
            cell.metadata["execution"] = {"iopub.status.idle": "2026-01-01T00:00:00Z"}
            cell.metadata["scrolled"] = True
    return nb


def test_the_documented_strip_command_restores_the_committed_notebooks(tmp_path):
    pytest.importorskip("nbconvert")
    work = tmp_path / "notebooks"
    work.mkdir()
    for path in NOTEBOOKS:
        nb = as_jupyter_leaves_it(nbformat.read(path, as_version=4))
        nbformat.write(nb, work / path.name)
    # the jupyter of the interpreter running the tests, not whichever is first on PATH
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent),
                                                 os.environ.get("PATH", "")]))
    if shutil.which("jupyter", path=env["PATH"]) is None:
        pytest.skip("no jupyter command")
    done = subprocess.run(["bash", "-c", strip_command()], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    changed = [p.name for p in NOTEBOOKS if (work / p.name).read_bytes() != p.read_bytes()]
    assert not changed, f"after the strip command these differ from the committed files: {changed}"


def test_every_exercise_has_one_answer_cell_one_solution_and_a_check():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        answers, code = answer_cells(nb), solutions(nb)
        assert sorted(answers) == sorted(code), (
            f"{path.name}: answer cells {sorted(answers)} but solutions {sorted(code)}")
        number = str(int(path.name[:2]))
        checked = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        for exercise, k in answers.items():
            assert exercise.split(".")[0] == number, (
                f"{path.name}: exercise {exercise} should be numbered {number}.M")
            body = nb.cells[k].source
            assert "TODO" in body or "NotImplementedError" in body, (
                f"{path.name}: the answer cell of exercise {exercise} is already answered")
            assert re.search(rf"check(_function)?\(\s*[\"']{re.escape(exercise)}[\"']", checked), (
                f"{path.name}: nothing checks exercise {exercise}")


def execute(nb, path, monkeypatch, strict):
    """Run ``nb`` in a fresh kernel as the tests do; fail with the failing cell's text."""
    # the kernel inherits the environment; the working tree's package comes first on its path
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("MINIFCN_STATIC_FIGURES", "1")  # no one drags a slider here
    if strict:
        monkeypatch.setenv("MINIFCN_EXERCISES", "strict")
    else:
        monkeypatch.delenv("MINIFCN_EXERCISES", raising=False)
    path_entries = [str(ROOT), os.environ.get("PYTHONPATH")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in path_entries if p))
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
    return nb


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["unanswered", "solved"])
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, mode, monkeypatch):
    """Unanswered, as a learner first opens it: every cell runs, every check says "not yet".
    Solved, every answer cell replaced by its solution: every check says "right" (strict, so
    a wrong or missing answer fails its cell)."""
    solved = mode == "solved"
    nb = nbformat.read(path, as_version=4)
    nb = execute(with_solutions(nb) if solved else nb, path, monkeypatch, strict=solved)
    said = verdicts(nb)
    expected = sorted(answer_cells(nb))
    assert sorted(said) == expected, (
        f"{path.name}: checks reported {sorted(said)}; exercises are {expected}")
    verdict = "right" if solved else "not yet"
    off = {e: v for e, v in said.items() if set(v) != {verdict}}
    assert not off, f"{path.name} ({mode}): checks said {off}; each should say {verdict!r}"

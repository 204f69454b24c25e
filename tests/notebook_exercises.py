"""The exercises of a notebook: its answer cells, their solutions, and the notebook with the
solutions filled in (how the tests run every notebook a second time).

An answer cell is a code cell whose first line is ``# Exercise N.M``; its solution is a
markdown cell that starts with ``<details><summary>Solution N.M</summary>`` and holds one
fenced ``python`` block, whose code replaces the answer cell's lines below its first.
"""
from __future__ import annotations

import copy
import re

ANSWER = re.compile(r"^# Exercise (\d+\.\d+)\s*$")
SOLUTION = re.compile(r"^<details><summary>Solution (\d+\.\d+)</summary>")
CODE_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
VERDICT = re.compile(r"^Exercise (\d+\.\d+): (right|wrong|not yet)", re.M)


def answer_cells(nb):
    """``{"N.M": index of its answer cell}``; an id given twice is an error."""
    found = {}
    for k, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        match = ANSWER.match(cell.source.split("\n", 1)[0])
        if match:
            assert match.group(1) not in found, f"two answer cells for exercise {match.group(1)}"
            found[match.group(1)] = k
    return found


def solutions(nb):
    """``{"N.M": solution code}``; a solution without exactly one python block is an error."""
    found = {}
    for cell in nb.cells:
        match = SOLUTION.match(cell.source) if cell.cell_type == "markdown" else None
        if match:
            blocks = CODE_BLOCK.findall(cell.source)
            assert len(blocks) == 1, (f"solution {match.group(1)}: expected one ```python "
                                      f"block, found {len(blocks)}")
            assert match.group(1) not in found, f"two solutions for exercise {match.group(1)}"
            found[match.group(1)] = blocks[0]
    return found


def with_solutions(nb):
    """A copy of ``nb`` whose answer cells hold their solutions."""
    solved = copy.deepcopy(nb)
    answers, code = answer_cells(nb), solutions(nb)
    for exercise, k in answers.items():
        cell = solved.cells[k]
        cell.source = cell.source.split("\n", 1)[0] + "\n" + code[exercise].rstrip("\n")
    return solved


def verdicts(nb):
    """``{"N.M": [verdicts printed]}`` from an executed notebook's stream outputs."""
    found = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                for exercise, verdict in VERDICT.findall(output.get("text", "")):
                    found.setdefault(exercise, []).append(verdict)
    return found

"""The exercise checks: right, wrong with a hint, not yet; strict mode; and the solution
filling that the notebook tests use."""
import nbformat
import numpy as np
import pytest
from notebook_exercises import VERDICT, answer_cells, solutions, verdicts, with_solutions

from minifcn.exercises import TODO, ExerciseError, check, check_function


def said(capsys, call):
    """The verdict a check printed (checks return None: a value would show twice in Jupyter)."""
    assert call() is None
    line = capsys.readouterr().out
    printed.append(line)
    return VERDICT.match(line).group(2)


printed = []  # every line the checks of the running test printed


@pytest.fixture(autouse=True)
def lenient(monkeypatch):
    monkeypatch.delenv("MINIFCN_EXERCISES", raising=False)
    printed.clear()


def test_todo_is_not_yet_alone_or_inside_a_container(capsys):
    assert said(capsys, lambda: check("1.1", TODO, expected=3)) == "not yet"
    assert said(capsys, lambda: check("1.2", (4, TODO), expected=(4, 5))) == "not yet"
    assert said(capsys, lambda: check("1.3", {"a": TODO}, test=lambda a: True)) == "not yet"
    assert "".join(printed).splitlines() == [
        "Exercise 1.1: not yet answered (replace TODO above)",
        "Exercise 1.2: not yet answered (replace TODO above)",
        "Exercise 1.3: not yet answered (replace TODO above)"]


def test_numbers_strings_and_tuples(capsys):
    assert said(capsys, lambda: check("2.1", 7, expected=7)) == "right"
    assert said(capsys, lambda: check("2.2", 7.0, expected=7)) == "right"  # a whole float is that whole number
    assert said(capsys, lambda: check("2.3", 7.5, expected=7)) == "wrong"
    assert said(capsys, lambda: check("2.4", True, expected=1)) == "wrong"  # a boolean is no count
    assert said(capsys, lambda: check("2.5", "mean IU", expected="mean IU")) == "right"
    assert said(capsys, lambda: check("2.6", (3, 4), expected=(3, 5), hint="look at the width")) == "wrong"
    out = "".join(printed)
    assert "Exercise 2.6: wrong: value 2: not the expected number. look at the width" in out


def test_floats_and_arrays_within_tolerance(capsys):
    assert said(capsys, lambda: check("3.1", 0.1 + 0.2, expected=0.3)) == "right"
    assert said(capsys, lambda: check("3.2", np.ones((2, 3)), expected=np.ones((2, 3)) + 1e-12)) == "right"
    assert said(capsys, lambda: check("3.3", np.ones((3, 2)), expected=np.ones((2, 3)))) == "wrong"
    assert said(capsys, lambda: check("3.4", np.ones(3), expected=np.zeros(3))) == "wrong"
    assert said(capsys, lambda: check("3.5", "three", expected=np.zeros(3))) == "wrong"
    assert said(capsys, lambda: check("3.6", 1.386, expected=np.log(4), hint="h")) == "wrong"
    assert said(capsys, lambda: check("3.7", 1.386, expected=np.log(4), rtol=1e-3)) == "right"
    out = "".join(printed)
    assert "shape (3, 2), expected (2, 3)" in out and "largest difference 1" in out
    assert "Exercise 3.6: wrong: close, but not to the precision asked" in out


def test_open_answers_by_a_test(capsys):
    assert said(capsys, lambda: check("4.1", [1, 2], test=lambda a: sum(a) == 3)) == "right"
    assert said(capsys, lambda: check("4.2", [1, 2], test=lambda a: sum(a) == 4, hint="add again")) == "wrong"
    assert said(capsys, lambda: check("4.3", None, test=lambda a: a + 1)) == "wrong"  # the test itself fails: wrong
    out = "".join(printed)
    assert "Exercise 4.2: wrong: the check does not hold. add again" in out
    assert "Exercise 4.3: wrong: TypeError" in out


def oracle_double(x):
    return 2 * x


def test_functions_against_an_oracle(capsys):
    cases = [(np.arange(3.0),), (np.ones((2, 5)),)]

    def unanswered(x):
        return TODO

    def unwritten(x):
        raise NotImplementedError

    def right(x):
        return x + x

    def wrong_on_the_second(x):
        return 2 * x if x.ndim == 1 else x

    def crashing(x):
        return x[10]

    def mutating(x):  # changes its argument: the oracle must still see the case as given
        x *= 2
        return x

    assert said(capsys, lambda: check_function("5.1", unanswered, oracle_double, cases)) == "not yet"
    assert said(capsys, lambda: check_function("5.2", unwritten, oracle_double, cases)) == "not yet"
    assert said(capsys, lambda: check_function("5.3", right, oracle_double, cases)) == "right"
    assert said(capsys, lambda: check_function("5.4", wrong_on_the_second, oracle_double, cases)) == "wrong"
    assert said(capsys, lambda: check_function("5.5", crashing, oracle_double, cases)) == "wrong"
    assert said(capsys, lambda: check_function("5.6", mutating, oracle_double, cases)) == "right"
    out = "".join(printed)
    assert "Exercise 5.4: wrong: case 2 ((2, 5)): largest difference 1" in out
    assert "Exercise 5.5: wrong: case 1 raised IndexError" in out


def test_strict_mode_raises_on_anything_but_right(monkeypatch, capsys):
    monkeypatch.setenv("MINIFCN_EXERCISES", "strict")
    assert said(capsys, lambda: check("6.1", 3, expected=3)) == "right"
    with pytest.raises(ExerciseError, match="Exercise 6.2: wrong"):
        check("6.2", 4, expected=3)
    with pytest.raises(ExerciseError, match="Exercise 6.3: not yet"):
        check("6.3", TODO, expected=3)


def small_notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("How many pixels?"),
        nbformat.v4.new_code_cell("# Exercise 9.1\nanswer = TODO\ncheck('9.1', answer, expected=4)"),
        nbformat.v4.new_markdown_cell("<details><summary>Solution 9.1</summary>\n\n```python\n"
                                      "answer = 2 + 2\ncheck('9.1', answer, expected=4)\n```\n\n"
                                      "Two and two.\n\n</details>"),
    ]
    return nb


def test_solutions_replace_the_answer_cells_below_their_first_line():
    nb = small_notebook()
    assert answer_cells(nb) == {"9.1": 1}
    assert solutions(nb) == {"9.1": "answer = 2 + 2\ncheck('9.1', answer, expected=4)\n"}
    solved = with_solutions(nb)
    assert solved.cells[1].source == "# Exercise 9.1\nanswer = 2 + 2\ncheck('9.1', answer, expected=4)"
    assert nb.cells[1].source.endswith("TODO\ncheck('9.1', answer, expected=4)")  # untouched


def test_verdicts_are_read_from_the_outputs():
    nb = small_notebook()
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout",
                                                  text="Exercise 9.1: not yet answered\n")]
    assert verdicts(nb) == {"9.1": ["not yet"]}


def test_a_solution_with_two_code_blocks_is_refused():
    nb = small_notebook()
    nb.cells[2].source += "\n```python\nx = 1\n```\n"
    with pytest.raises(AssertionError, match="expected one"):
        solutions(nb)

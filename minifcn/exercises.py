"""The notebooks' exercises: a placeholder for an answer not given yet, and checks that say
right, wrong (with a hint) or not yet.

An exercise in a notebook is a question, an answer cell that starts with ``# Exercise N.M``
and leaves the answer as :data:`TODO`, a call of :func:`check` or :func:`check_function`, and
a collapsed solution (``<details><summary>Solution N.M</summary>`` with one code block)::

    # Exercise 3.2
    output_size = TODO
    check("3.2", output_size, expected=transposed_output_size(5, 4, 2, 1), hint="...")

A check prints one line and never raises in a learner's run, so a notebook with no answers
runs to its end. With the environment variable ``MINIFCN_EXERCISES=strict`` (how the tests run
the notebooks with their solutions filled in) an answer that is wrong or missing raises
:class:`ExerciseError` instead.
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["TODO", "ExerciseError", "check", "check_function"]

RIGHT, WRONG, NOT_YET = "right", "wrong", "not yet"


class _Todo:
    """The placeholder of an answer not given yet (one object, :data:`TODO`)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self):
        return "TODO"

    def __bool__(self):  # an unanswered answer is not a truthy one
        return False


TODO = _Todo()


class ExerciseError(AssertionError):
    """A wrong or missing answer in strict mode (``MINIFCN_EXERCISES=strict``)."""


def _unanswered(value):
    """True when ``value`` is TODO or holds it (in a tuple, list or dict)."""
    if value is TODO:
        return True
    if isinstance(value, (tuple, list)):
        return any(_unanswered(v) for v in value)
    if isinstance(value, dict):
        return any(_unanswered(v) for v in value.values())
    return False


def _mismatch(answer, expected, atol, rtol):
    """Why ``answer`` differs from ``expected`` (a short text), or None when it matches.

    Integers, strings and booleans must be equal; floats and arrays equal within
    ``numpy.allclose(atol, rtol)`` and of the same shape; tuples and lists item by item.
    """
    if isinstance(expected, (tuple, list)):
        if not isinstance(answer, (tuple, list, np.ndarray)) or len(answer) != len(expected):
            return f"expected {len(expected)} values"
        for k, (a, e) in enumerate(zip(answer, expected)):
            why = _mismatch(a, e, atol, rtol)
            if why:
                return f"value {k + 1}: {why}"
        return None
    if isinstance(expected, (str, bool, np.bool_)) or expected is None:
        return None if answer == expected else "not the expected value"
    if isinstance(expected, (int, np.integer)):
        if isinstance(answer, (float, np.floating)) and float(answer).is_integer():
            answer = int(answer)
        if not isinstance(answer, (int, np.integer)) or isinstance(answer, bool):
            return f"expected a whole number, got {type(answer).__name__}"
        return None if int(answer) == int(expected) else "not the expected number"
    try:
        a = np.asarray(answer, dtype=float)
    except (TypeError, ValueError):
        return f"expected a number or an array, got {type(answer).__name__}"
    e = np.asarray(expected, dtype=float)
    if a.shape != e.shape:
        return f"shape {a.shape}, expected {e.shape}"
    if not np.allclose(a, e, atol=atol, rtol=rtol):
        # three significant digits can be 0.5 % off: say so rather than send the learner back
        if np.allclose(a, e, atol=max(atol, 5e-3), rtol=max(rtol, 5e-3)):  # a rounded answer
            return ("close, but not to the precision asked: give more digits, or an expression "
                    "such as np.log(4)")
        return f"largest difference {np.max(np.abs(a - e)):.3g}"
    return None


def _report(exercise, verdict, detail=""):
    """Print the verdict's line; in strict mode refuse anything but right. Returns None."""
    line = {RIGHT: f"Exercise {exercise}: right",
            NOT_YET: f"Exercise {exercise}: not yet answered (replace TODO above)",
            WRONG: f"Exercise {exercise}: wrong: {detail}"}[verdict]
    print(line)
    if verdict != RIGHT and os.environ.get("MINIFCN_EXERCISES") == "strict":
        raise ExerciseError(line)


def check(exercise, answer, expected=None, *, test=None, hint="", atol=1e-8, rtol=1e-6):
    """Check one answer against ``expected``, or with ``test(answer) -> bool``.

    Parameters
    ----------
    exercise : str
        The exercise's number, ``"N.M"``, as in its cell's first line.
    answer : object
        The learner's answer; :data:`TODO` (or a container holding it) is "not yet".
    expected : object, optional
        The right answer, computed by the notebook from the package's own oracles.
    test : callable, optional
        For open answers: ``test(answer)`` is True when the answer is right. An exception
        inside it counts as wrong, with its message.
    hint : str
        What to reconsider, printed with a wrong answer; never the answer itself.
    atol, rtol : float
        Tolerances for floats and arrays (``numpy.allclose``).

    Returns
    -------
    None
        The verdict is printed (a returned value would be shown a second time as the
        cell's output).
    """
    if _unanswered(answer):
        return _report(exercise, NOT_YET)
    if test is not None:
        try:
            ok = bool(test(answer))
            why = None if ok else "the check does not hold"
        except Exception as exc:  # noqa: BLE001 - any failure of the learner's answer is "wrong"
            why = f"{type(exc).__name__}: {exc}"
    else:
        why = _mismatch(answer, expected, atol, rtol)
    if why is None:
        return _report(exercise, RIGHT)
    return _report(exercise, WRONG, f"{why}. {hint}".strip() if hint else why)


def check_function(exercise, function, oracle, cases, *, hint="", atol=1e-8, rtol=1e-6):
    """Check a function the learner wrote against the package's oracle, case by case.

    Parameters
    ----------
    exercise : str
        ``"N.M"``.
    function, oracle : callable
        The learner's function and an independent implementation (a loop twin, an explicit
        matrix, a gradient check) called with the same arguments.
    cases : list of tuple
        Argument tuples; arrays in them are copied for each call, so neither function can
        change what the other sees.
    hint, atol, rtol
        As in :func:`check`.

    Returns
    -------
    None
        The verdict is printed; "not yet" while ``function`` returns :data:`TODO` or raises
        NotImplementedError.
    """
    def fresh(args):
        return tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args)

    for k, args in enumerate(cases):
        try:
            got = function(*fresh(args))
        except NotImplementedError:
            return _report(exercise, NOT_YET)
        except Exception as exc:  # noqa: BLE001 - the learner's code failing is "wrong"
            return _report(exercise, WRONG, f"case {k + 1} raised {type(exc).__name__}: {exc}")
        if _unanswered(got):
            return _report(exercise, NOT_YET)
        why = _mismatch(got, oracle(*fresh(args)), atol, rtol)
        if why:
            shapes = ", ".join(str(a.shape) if isinstance(a, np.ndarray) else repr(a) for a in args)
            detail = f"case {k + 1} ({shapes}): {why}"
            return _report(exercise, WRONG, f"{detail}. {hint}".strip() if hint else detail)
    return _report(exercise, RIGHT)

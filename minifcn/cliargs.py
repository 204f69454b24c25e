"""Argument types that range-check the command line's numbers.

``argparse`` calls a type with the option's text; raising ``argparse.ArgumentTypeError`` makes
it print a usage error that names the option and exit with status 2, before anything runs.
Each factory here returns such a type, so a negative learning rate or a batch of 0 is refused
at the door instead of silently training backwards.
"""
from __future__ import annotations

import argparse
import math


def number(kind=float, *, low=None, high=None, low_open=False, high_open=False):
    """An argparse type: ``kind(text)``, finite, within ``[low, high]``.

    Parameters
    ----------
    kind : type
        ``int`` or ``float``.
    low, high : number or None
        Bounds (``None``: unbounded on that side).
    low_open, high_open : bool
        Exclude the bound itself (``low=0, low_open=True`` means "positive").

    Examples
    --------
    >>> lr = number(float, low=0, low_open=True)
    >>> lr("1e-3")
    0.001
    """
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {_kind_name(kind)}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        low_bad = low is not None and (value < low or (low_open and value == low))
        high_bad = high is not None and (value > high or (high_open and value == high))
        if low_bad or high_bad:
            raise argparse.ArgumentTypeError(f"{text} is out of range: expected {describe()}")
        return value

    def describe():
        parts = []
        if low is not None:
            parts.append(f"{'>' if low_open else '>='} {low}")
        if high is not None:
            parts.append(f"{'<' if high_open else '<='} {high}")
        return f"{_kind_name(kind)} " + " and ".join(parts) if parts else _kind_name(kind)

    parse.__name__ = _kind_name(kind)  # argparse names the type in its messages
    return parse


def positive(kind=float):
    """An argparse type for a number > 0."""
    return number(kind, low=0, low_open=True)


def non_negative(kind=float):
    """An argparse type for a number >= 0."""
    return number(kind, low=0)


def _kind_name(kind):
    return "an integer" if kind is int else "a number"

"""Sliders where a learner would rather drag than read, and a still figure where there are none.

``explore(draw, k=(1, 7), s=(1, 4), defaults=dict(k=3, s=2))`` shows ``draw(k=..., s=...)``
under one slider per argument in a live Jupyter kernel with ipywidgets installed. The docs
site and the tests have no one to drag a slider: with ``MINIFCN_STATIC_FIGURES=1`` in the
environment (the docs build and the tests set it), or without ipywidgets, ``draw`` runs once
at the defaults and its figure stays as a picture.
"""
from __future__ import annotations

import os

__all__ = ["explore", "interactive"]


def interactive():
    """True when sliders can be shown: ipywidgets imports and no still figures were asked for."""
    if os.environ.get("MINIFCN_STATIC_FIGURES", "") not in ("", "0"):
        return False
    try:
        import ipywidgets  # noqa: F401 - only whether it is there
    except ImportError:
        return False
    return True


def explore(draw, defaults=None, **controls):
    """Call ``draw`` under sliders, or once at ``defaults``.

    Parameters
    ----------
    draw : callable
        Draws one figure from keyword arguments (and shows it, ``plt.show()``).
    defaults : dict, optional
        The values of the still figure and the sliders' starting values (each control's
        lowest value when left out).
    **controls
        ``name=(low, high)`` or ``name=(low, high, step)`` for an integer or float slider,
        ``name=[choices]`` for a drop-down, as ``ipywidgets.interact`` takes them.

    Returns
    -------
    None
    """
    values = {name: control[0] for name, control in controls.items()}  # lowest, or first choice
    values.update(defaults or {})
    unknown = sorted(set(values) - set(controls))
    if unknown:
        raise ValueError(f"explore: defaults for {unknown} have no control; controls are "
                         f"{sorted(controls)}")
    if not interactive():
        draw(**values)
        return
    import ipywidgets

    widgets = {}
    for name, control in controls.items():
        if isinstance(control, list):
            widgets[name] = ipywidgets.Dropdown(options=control, value=values[name],
                                                description=name)
        elif all(isinstance(v, int) for v in control):
            widgets[name] = ipywidgets.IntSlider(value=values[name], min=control[0],
                                                 max=control[1],
                                                 step=control[2] if len(control) > 2 else 1,
                                                 description=name, continuous_update=False)
        else:
            widgets[name] = ipywidgets.FloatSlider(value=values[name], min=control[0],
                                                   max=control[1],
                                                   step=control[2] if len(control) > 2 else 0.1,
                                                   description=name, continuous_update=False)
    ipywidgets.interact(draw, **widgets)

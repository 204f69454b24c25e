"""Sphinx configuration of the minifcn documentation.

Build (warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Pages are MyST Markdown; the API reference comes from the NumPy-style docstrings through
autodoc and napoleon. The notebooks of ``notebooks/`` are executed by myst-nb during the build
and shown with their outputs; each is run again only when its code changed (the cache is
``docs/_build/.jupyter_cache``; delete it to run them all again). They run unanswered, so
their exercise checks say "not yet", with still figures instead of sliders. A cell that fails
fails the build.

Formulas are written into the pages as MathML (``docs/_ext/mathml.py``): the site loads
nothing from the network. Everything builds offline.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document the working tree, installed or not
sys.path.insert(0, str(DOCS / "_ext"))

import minifcn  # noqa: E402

project = "minifcn"
release = version = minifcn.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "mathml",  # docs/_ext/mathml.py
]
html_math_renderer = "mathml"  # formulas as MathML at build time, no MathJax from a CDN

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]

# MyST: $...$ maths, ::: fences, and anchors for headings down to level 3
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# myst-nb: execute the notebooks and show their outputs; a notebook runs again only when its
# code cells changed. The kernel inherits this environment: the working tree's package first
# on its path (as the tests run them), matplotlib without a display, still figures for the
# sliders, and the learner's mode of the exercise checks (not yet, never an error).
nb_execution_mode = "cache"
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
nb_execution_timeout = 300  # seconds per cell, as in tests/test_notebooks.py
nb_execution_raise_on_error = True  # a failing cell fails the build
nb_execution_show_tb = True  # ... and its traceback is in the log
nb_execution_in_temp = True  # whatever a notebook writes in its folder stays out of docs/
nb_ipywidgets_js = {}  # no widget state is saved (still figures), and no scripts from a CDN
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
# Jupyter's inline backend: plt.show() puts the figure into the cell's output (under Agg it
# would draw nothing, and the page would lose its figures)
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
os.environ["MINIFCN_STATIC_FIGURES"] = "1"
os.environ.pop("MINIFCN_EXERCISES", None)

# autodoc + napoleon: NumPy-style docstrings, members in source order
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the docstrings state types and shapes
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

html_theme = "furo"
html_title = f"minifcn {release}"
html_show_sphinx = False
html_static_path = ["_static"]
html_css_files = ["minifcn.css"]  # wide formulas and outputs scroll; folded solutions


def copy_notebooks(app):
    """Mirror ``notebooks/*.ipynb`` into ``docs/notebooks/`` (Sphinx reads sources only from
    inside ``docs/``). Unchanged files are left alone so incremental builds stay incremental;
    notebooks that no longer exist are removed. A build of other sources with this
    configuration (``-c docs``, as tests/test_docs.py does) copies nothing."""
    if Path(app.srcdir).resolve() != DOCS:
        return
    source, target = ROOT / "notebooks", DOCS / "notebooks"
    target.mkdir(exist_ok=True)
    wanted = {p.name: p for p in source.glob("*.ipynb")}
    for stale in target.glob("*.ipynb"):
        if stale.name not in wanted:
            stale.unlink()
    for name, path in wanted.items():
        copy = target / name
        if not copy.exists() or copy.read_bytes() != path.read_bytes():
            shutil.copyfile(path, copy)


class DescribeDirective(SphinxDirective):
    """``{minifcn-describe} fcn8s 500x500``: the table of ``minifcn describe``, computed at
    build time so that the page cannot drift from the code."""

    required_arguments = 2

    def run(self):
        from minifcn.models.describe import describe

        height, width = (int(v) for v in self.arguments[1].lower().split("x"))
        text = describe(self.arguments[0], height, width)
        return [nodes.literal_block(text, text)]


def setup(app):
    app.connect("builder-inited", copy_notebooks)
    app.add_directive("minifcn-describe", DescribeDirective)

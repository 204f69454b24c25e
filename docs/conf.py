"""Sphinx configuration of the minifcn documentation.

Build (warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Pages are MyST Markdown; the notebooks of ``notebooks/`` are rendered by myst-nb without
being executed (the tests execute them); the API reference comes from the NumPy-style
docstrings through autodoc and napoleon. Everything builds offline.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document the working tree, installed or not

import minifcn  # noqa: E402

project = "minifcn"
release = version = minifcn.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]

# MyST: $...$ maths, ::: fences, and anchors for headings down to level 3
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# myst-nb: render the committed notebooks as they are (outputs stripped); never run them here
nb_execution_mode = "off"

# autodoc + napoleon: NumPy-style docstrings, members in source order
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the docstrings state types and shapes
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

html_theme = "furo"
html_title = f"minifcn {release}"
html_show_sphinx = False
html_static_path: list[str] = []


def copy_notebooks():
    """Mirror ``notebooks/*.ipynb`` into ``docs/notebooks/`` (Sphinx reads sources only from
    inside ``docs/``). Unchanged files are left alone so incremental builds stay incremental;
    notebooks that no longer exist are removed."""
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


copy_notebooks()


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
    app.add_directive("minifcn-describe", DescribeDirective)

"""Formulas written into the pages as MathML when the site is built.

Sphinx's default HTML maths renderer leaves the LaTeX in the page for MathJax, a script
fetched from a CDN: offline, a reader sees raw LaTeX. This renderer converts each formula
with ``latex2mathml`` (pure Python) while the pages are written; browsers draw MathML Core
themselves, so the pages load no script for their maths and need no network.

A formula the converter cannot handle is a warning (an error under ``-W``) naming the page
and the LaTeX, and is shown as its LaTeX source.
"""
from __future__ import annotations

import re

from docutils import nodes
from latex2mathml.converter import convert
from sphinx.locale import _
from sphinx.util import logging
from sphinx.util.math import get_node_equation_number

logger = logging.getLogger(__name__)

# an ampersand that does not start an entity: latex2mathml passes an alignment mark it does
# not understand through as text, which is not HTML
_BARE_AMPERSAND = re.compile(r"&(?!#?[0-9A-Za-z]+;)")
_XMLNS = ' xmlns="http://www.w3.org/1998/Math/MathML"'  # implied by HTML5 for <math>


def to_mathml(latex, display):
    """``latex`` as one ``<math>`` element (``display`` is "inline" or "block").

    Raises
    ------
    ValueError
        If latex2mathml fails or leaves text that is not valid HTML.
    """
    try:
        mathml = convert(latex, display=display)
    except Exception as exc:  # noqa: BLE001 - any converter failure is reported the same way
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
    if _BARE_AMPERSAND.search(mathml):
        raise ValueError("an unsupported '&' (use cases or align*, not aligned)")
    return mathml.replace(_XMLNS, "", 1)


def _render(self, node, latex, display):
    try:
        return to_mathml(latex, display)
    except ValueError as exc:
        logger.warning("cannot render the formula %r as MathML: %s", latex, exc,
                       location=node, type="mathml")
        return f"<code>{self.encode(latex)}</code>"


def visit_math(self, node):
    """Inline ``$...$``: a ``<span>`` holding one inline ``<math>``."""
    self.body.append(self.starttag(node, "span", "", CLASS="math notranslate"))
    self.body.append(_render(self, node, node.astext(), "inline"))
    self.body.append("</span>")
    raise nodes.SkipNode


def visit_displaymath(self, node):
    """Display ``$$...$$``: a ``<div>`` holding one block ``<math>`` per equation (equations
    are separated by blank lines), with its number when it has one."""
    self.body.append(self.starttag(node, "div", CLASS="math notranslate"))
    if node["number"]:
        number = get_node_equation_number(self, node)
        self.body.append(f'<span class="eqno">({number})')
        self.add_permalink_ref(node, _("Link to this equation"))
        self.body.append("</span>")
    for part in (p for p in node.astext().split("\n\n") if p.strip()):
        self.body.append(_render(self, node, part, "block"))
    self.body.append("</div>\n")
    raise nodes.SkipNode


def setup(app):
    app.add_html_math_renderer("mathml", (visit_math, None), (visit_displaymath, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""The documentation site: formulas rendered offline, notebook pages with their outputs,
folded solutions, nothing loaded from the network.

Two kinds of test. The first builds a tiny site of its own with the project's configuration
(``sphinx -c docs`` on a few pages written here: a formula page, a small notebook with an
exercise, a notebook whose cell fails), in seconds. The second reads the whole site after it
was built (``.ci/run`` builds it, then runs this file again with ``MINIFCN_DOCS_HTML`` set to
its folder); without that variable those tests skip.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from notebook_exercises import answer_cells

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
BUILD_TIMEOUT_S = 300

# what a page loads: <script src>, <link href> (stylesheets, icons, preloads), <img src>, ...
LOADED = re.compile(r"<(script|link|img|iframe|source|audio|video|embed)\b[^>]*?"
                    r"\b(src|href|srcset)\s*=\s*[\"']([^\"']*)[\"']", re.I)
CSS_URL = re.compile(r"(?:url\(\s*[\"']?|@import\s+[\"'])([^\"')]+)", re.I)
DETAILS = re.compile(r"<details\b([^>]*)>(.*?)</details>", re.S)
VERDICT = re.compile(r"Exercise (\d+\.\d+): (right|wrong|not yet)")


def remote_loads(html):
    """The addresses an HTML page loads from another host (http, https or protocol-relative)."""
    return [url for _, _, url in LOADED.findall(html)
            if re.match(r"(https?:)?//", url.strip(), re.I)]


def without_code(html):
    """The page's text outside <pre> and <code> (where LaTeX may stand as an example)."""
    html = re.sub(r"<pre\b.*?</pre>", "", html, flags=re.S)
    return re.sub(r"<code\b.*?</code>", "", html, flags=re.S)


def raw_latex(html):
    """LaTeX left as text in a page: a formula that was not rendered."""
    text = without_code(html)
    return re.findall(r"\$\$|\\(?:frac|mathrm|sum|partial|begin|lfloor|text)\b", text)


def test_the_checks_themselves_see_what_they_look_for():
    page = ('<script src="https://cdn.example/mathjax.js"></script>'
            '<link rel="stylesheet" href="//fonts.example/a.css">'
            '<img alt="" src="../_images/a.png"><a href="https://example.org">a link</a>')
    assert remote_loads(page) == ["https://cdn.example/mathjax.js", "//fonts.example/a.css"]
    assert raw_latex("<p>$$x = \\frac{a}{b}$$</p><pre>\\frac{a}{b}</pre>") == ["$$", "\\frac", "$$"]
    assert raw_latex("<p><math><mfrac>...</mfrac></math></p>") == []


# --- a tiny site built with the project's configuration --------------------------------

FORMULA_PAGE = r"""# Formulas

Inline: $\partial L / \partial x_i$ and a fraction $\tfrac{1}{2}$.

$$
H_\text{out} = \left\lfloor \frac{H + 2p - k}{s} \right\rfloor + 1
$$

$$
m_k = \begin{cases} 1/(1-p) & \text{with probability } 1-p \\ 0 & \text{otherwise} \end{cases}
$$
"""

SOLUTION = """<details><summary>Solution 1.1</summary>

```python
answer = sum(range(4))
```

The sum of 0, 1, 2 and 3.

</details>"""


def notebook(*cells):
    """A notebook of ("md" | "code", source) cells, as nbformat writes it."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python",
                                  "name": "python3"}, "language_info": {"name": "python"}}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else
                nbformat.v4.new_code_cell(src) for kind, src in cells]
    return nbformat.writes(nb)


def build_tiny_site(tmp_path, pages, strict=True):
    """Build ``pages`` ({file name: text}) with docs/conf.py, with warnings as errors when
    ``strict``; (returncode, log, html folder)."""
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    pytest.importorskip("latex2mathml")
    src, out = tmp_path / "src", tmp_path / "html"
    src.mkdir()
    names = [Path(name).stem for name in pages]
    toctree = "\n".join(["```{toctree}", *names, "```"])
    (src / "index.md").write_text(f"# Tiny\n\n{toctree}\n", encoding="utf-8")
    for name, text in pages.items():
        (src / name).write_text(text, encoding="utf-8")
    env = dict(os.environ, MINIFCN_EXERCISES="strict")  # the configuration must clear it
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", *(["-W", "--keep-going"] if strict else []), "-q",
         "-b", "html", "-c", str(DOCS), "-D", f"nb_execution_cache_path={tmp_path / 'cache'}", str(src), str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    return done.returncode, done.stdout + done.stderr, out


@pytest.mark.slow
def test_a_tiny_site_renders_formulas_outputs_and_folded_solutions(tmp_path):
    exercise = notebook(
        ("md", "# A notebook\n\nWhat is $\\sum_{i<4} i$?"),
        ("code", "import os\nprint('static figures:', os.environ.get('MINIFCN_STATIC_FIGURES'),"
                 " '| backend:', os.environ.get('MPLBACKEND'),"
                 " '| exercises:', os.environ.get('MINIFCN_EXERCISES'))"),
        ("code", "# Exercise 1.1\nfrom minifcn.exercises import TODO, check\nanswer = TODO\n"
                 "check('1.1', answer, expected=6)"),
        ("md", SOLUTION),
        ("code", "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\nplt.show()"),
    )
    code, log, html = build_tiny_site(tmp_path, {"formulas.md": FORMULA_PAGE,
                                                  "exercise.ipynb": exercise})
    assert code == 0, log
    formulas = (html / "formulas.html").read_text(encoding="utf-8")
    assert "<mfrac>" in formulas and "&#x0230A;" in formulas, "the floor formula is not MathML"
    assert "<mtable>" in formulas, "the cases formula is not a MathML table"
    assert formulas.count('display="inline"') == 2, "the two inline formulas"
    assert not raw_latex(formulas), raw_latex(formulas)

    page = (html / "exercise.html").read_text(encoding="utf-8")
    assert ("static figures: 1 | backend: module://matplotlib_inline.backend_inline | "
            "exercises: None") in page, "the notebook kernel does not see the environment docs/conf.py sets"
    assert re.search(r'class="cell_output.*<img[^>]+src="[^"]+\.png"', page, re.S), (
        "plt.show() left no figure in the page")
    assert VERDICT.findall(page) == [("1.1", "not yet")]
    (attributes, inside), = DETAILS.findall(page)
    assert "open" not in attributes, "a solution is shown unfolded"
    assert "<summary>Solution 1.1</summary>" in inside
    assert re.search(r'class="highlight-python.*<span class="n">answer</span>', inside, re.S), (
        "the solution's code is not highlighted as Python")
    assert "<math" in page, "the notebook's formula is not MathML"
    for name in ("formulas.html", "exercise.html", "index.html"):
        text = (html / name).read_text(encoding="utf-8")
        assert not remote_loads(text), f"{name} loads {remote_loads(text)}"


@pytest.mark.slow
def test_a_failing_notebook_cell_fails_the_build(tmp_path):
    broken = notebook(("md", "# Broken"), ("code", "raise RuntimeError('this cell fails')"))
    # without -W too: the failure is an error, not a warning one might build past
    code, log, _ = build_tiny_site(tmp_path, {"broken.ipynb": broken}, strict=False)
    assert code != 0, "the build passed over a failing cell"
    assert "this cell fails" in log, log[-2000:]


def test_a_formula_latex2mathml_cannot_render_is_an_error_not_a_garbled_page():
    pytest.importorskip("latex2mathml")
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        from mathml import to_mathml
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    assert to_mathml(r"\tfrac{a}{b}", "inline").startswith('<math display="inline">')
    with pytest.raises(ValueError, match="unsupported '&'"):  # it would print a bare &
        to_mathml(r"\begin{aligned} a &= b \\ c &= d \end{aligned}", "block")


# --- the whole site, after .ci/run built it -------------------------------------------

def built_site():
    folder = os.environ.get("MINIFCN_DOCS_HTML")
    if not folder:
        pytest.skip("MINIFCN_DOCS_HTML is not set (.ci/run sets it after building the docs)")
    path = Path(folder)
    assert (path / "index.html").exists(), f"MINIFCN_DOCS_HTML={folder}: no index.html there"
    return path


def test_no_page_of_the_site_loads_anything_from_the_network():
    site = built_site()
    loads = {str(p.relative_to(site)): remote_loads(p.read_text(encoding="utf-8"))
             for p in site.rglob("*.html")}
    assert not {k: v for k, v in loads.items() if v}
    css = {str(p.relative_to(site)): [u for u in CSS_URL.findall(p.read_text(encoding="utf-8"))
                                      if re.match(r"(https?:)?//", u.strip())]
           for p in site.rglob("*.css")}
    assert not {k: v for k, v in css.items() if v}


def test_every_formula_of_the_site_is_mathml():
    site = built_site()
    relu = (site / "concepts" / "relu-dropout.html").read_text(encoding="utf-8")
    assert "<mtable>" in relu and "&#x02299;" in relu, "dropout's cases formula (m ⊙ x)"
    left = {str(p.relative_to(site)): raw_latex(p.read_text(encoding="utf-8"))
            for p in site.rglob("*.html") if "_modules" not in p.parts}
    assert not {k: v for k, v in left.items() if v}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_pages_show_outputs_unanswered_checks_and_folded_solutions(path):
    site = built_site()
    nbformat = pytest.importorskip("nbformat")
    page = (site / "notebooks" / f"{path.stem}.html").read_text(encoding="utf-8")
    assert 'class="cell_output' in page, f"{path.name}: its page shows no outputs"
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    if re.search(r"plt\.show\(|explore\(", code):
        assert re.search(r'class="cell_output.*<img', page, re.S), (
            f"{path.name}: draws figures, but its page shows none")
    exercises = list(answer_cells(nb))
    said = VERDICT.findall(page)
    assert sorted(e for e, _ in said) == sorted(exercises), (
        f"{path.name}: the page shows checks {said}; the notebook's exercises are {exercises}")
    assert {v for _, v in said} <= {"not yet"}, f"{path.name}: {said}"
    for attributes, inside in DETAILS.findall(page):
        assert "open" not in attributes, f"{path.name}: a <details> is shown unfolded"
        assert "<summary>" in inside, f"{path.name}: a <details> without a summary"
        if "<summary>Solution" in inside:
            assert 'class="highlight-python' in inside and '<span class="' in inside, (
                f"{path.name}: a solution's code is not highlighted")


def test_the_site_links_its_stylesheet_and_wraps_its_tables():
    site = built_site()
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        if "_modules" in page.parts or "<table" not in text:
            continue
        assert "minifcn.css" in text, f"{page.name}: docs/_static/minifcn.css is not linked"
        tables = len(re.findall(r"<table\b[^>]*class=\"[^\"]*docutils", text))
        wrapped = len(re.findall(r"<div class=\"table-wrapper", text))
        assert wrapped >= tables, f"{page.name}: {tables - wrapped} tables not in a scroll box"

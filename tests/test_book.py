"""The book stays a book: small files, nothing imported from the engine, oracles on their own.

Read from the source (``ast``), not from a running interpreter: what a reader of
``minifcn/ops/`` meets when following the imports.
"""
import ast
import pathlib

import minifcn

PACKAGE = pathlib.Path(minifcn.__file__).parent
BOOK = PACKAGE / "ops"
MAX_LINES = 200  # docstrings and loop twins included


def internal_imports(path):
    """The ``minifcn`` modules that the file at ``path`` imports, as dotted names."""
    module = "minifcn." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module[:-len(".__init__")]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)  # submodules, maybe
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("minifcn")}


def module_path(name):
    """The file of a ``minifcn`` module, or None when ``name`` is not one (a function)."""
    parts = name.split(".")[1:]
    for candidate in (PACKAGE.joinpath(*parts).with_suffix(".py"), PACKAGE.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def walk(start):
    """Every ``minifcn`` module reachable by imports from the file ``start``."""
    seen, todo = set(), [start]
    while todo:
        path = todo.pop()
        for name in internal_imports(path):
            found = module_path(name)
            if found is not None and found not in seen:
                seen.add(found)
                todo.append(found)
    return {str(p.relative_to(PACKAGE)) for p in seen}


def test_every_file_of_the_book_fits_in_one_sitting():
    lengths = {p.name: len(p.read_text().splitlines()) for p in BOOK.glob("*.py")}
    assert {"conv.py", "im2col.py", "pool.py", "conv_transpose.py", "activation.py"} <= set(lengths)
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}


def test_a_walk_from_the_books_convolution_stays_in_the_book_and_the_backend():
    reached = walk(BOOK / "conv.py")
    assert "ops/im2col.py" in reached and "backend.py" in reached  # the walk itself works
    assert reached <= {"ops/im2col.py", "ops/_util.py", "backend.py", "errors.py", "ops/__init__.py"}


def test_nothing_in_the_book_imports_the_engine():
    for path in BOOK.glob("*.py"):
        assert not any(n.startswith("minifcn.engine") for n in walk(path) | internal_imports(path)), path.name


def test_the_oracles_share_no_code_with_the_ops_or_the_engine():
    assert internal_imports(BOOK / "conv_matrix.py") == set()

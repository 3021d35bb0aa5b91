"""The layering of README's "Layout": no vaelens package imports one above it.

Order, bottom to top: ``data -> models -> train -> zoo -> lens -> metrics -> analysis ->
study -> report``, with ``cli`` (and the top-level ``vaelens/__init__``) on top. ``stats``,
``errors``, ``io`` and ``progress`` sit beneath them all: any package may import them, and
they import nothing of vaelens but ``errors``. Every import counts, module-level or inside
a function (lazy).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "vaelens"

ORDER = ("data", "models", "train", "zoo", "lens", "metrics", "analysis", "study", "report")
BASE = ("stats", "errors", "io", "progress")
TOP = ("cli", "__init__")


def _package(path: Path) -> str:
    """The top-level vaelens unit of a file: ``data`` for data/base.py, ``cli`` for cli.py."""
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _names(node: ast.AST, package: tuple[str, ...]) -> list[str]:
    """Dotted modules a node imports; ``package`` is the importing file's package path."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
        module = ".".join(p for p in (base, node.module or "") if p)
        if module == "vaelens":  # from vaelens import stats
            return [f"vaelens.{a.name}" for a in node.names]
        return [module]
    dotted = r"vaelens(\.\w+)+(:[\w.]+)?"
    if (  # an importlib target
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(dotted, node.value)
    ):
        return [node.value.partition(":")[0]]
    return []


def _imports(path: Path, root: Path = SRC) -> list[tuple[int, str]]:
    """``(line, unit)`` of every ``vaelens.<unit>`` import in ``path``, lazy ones included.

    Relative imports are resolved from the file's place under ``root``; a string constant
    that is a whole dotted ``vaelens.x`` path (an ``importlib`` target) counts too.
    """
    package = ("vaelens", *path.relative_to(root).parent.parts)
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        names = _names(node, package)
        out += [(node.lineno, n.split(".")[1]) for n in names if n.startswith("vaelens.")]
    return out


def _allowed(importer: str, imported: str) -> bool:
    if importer in TOP or importer == imported:
        return True
    if importer in BASE:
        return imported == "errors"
    if imported in BASE:
        return True
    if imported not in ORDER or importer not in ORDER:
        return False
    return ORDER.index(imported) <= ORDER.index(importer)


def _violations() -> list[str]:
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        importer = _package(path)
        for line, imported in _imports(path):
            if not _allowed(importer, imported):
                rel = path.relative_to(SRC.parent)
                bad.append(f"{rel}:{line}: {importer} imports vaelens.{imported}")
    return bad


def test_every_unit_is_placed() -> None:
    units = {_package(p) for p in SRC.rglob("*.py")}
    assert units <= set(ORDER + BASE + TOP), sorted(units - set(ORDER + BASE + TOP))


def test_no_package_imports_one_above_it() -> None:
    bad = _violations()
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_lazy_relative_and_string_imports_are_seen(tmp_path: Path) -> None:
    (tmp_path / "lens").mkdir()
    mod = tmp_path / "lens" / "x.py"
    mod.write_text(
        "from vaelens.data import base\n"
        "def f():\n"
        "    import vaelens.report.html\n"
        "    from vaelens import stats\n"
        "    from ..analysis import core\n"
        "    from . import hooks\n"
        "JOB = 'vaelens.study.job:execute_run'\n"
        "DOC = 'see vaelens.metrics'\n"
    )
    assert sorted(_imports(mod, tmp_path)) == [
        (1, "data"),
        (3, "report"),
        (4, "stats"),
        (5, "analysis"),
        (6, "lens"),
        (7, "study"),
    ]


@pytest.mark.parametrize(
    ("importer", "imported", "ok"),
    [
        ("analysis", "stats", True),
        ("data", "errors", True),
        ("lens", "models", True),
        ("models", "lens", False),
        ("stats", "data", False),
        ("errors", "io", False),
        ("io", "errors", True),
        ("report", "study", True),
        ("study", "report", False),
        ("cli", "report", True),
        ("progress", "data", False),
        ("report", "progress", True),
        ("data", "progress", True),
    ],
)
def test_the_rule_itself(importer: str, imported: str, ok: bool) -> None:
    assert _allowed(importer, imported) is ok


def test_package_docstrings_name_what_they_import_from() -> None:
    """A package's "Imports from: a, b." line lists exactly the units its modules import."""
    wrong = []
    for pkg in sorted(p.name for p in SRC.iterdir() if p.is_dir() and any(p.glob("*.py"))):
        init = SRC / pkg / "__init__.py"
        if not init.is_file():
            wrong.append(f"{pkg}: no __init__.py")
            continue
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        said = re.search(r"^Imports from: (.+)\.$", doc, flags=re.MULTILINE)
        if said is None:
            wrong.append(f"{pkg}: its docstring has no one-line 'Imports from: ...' ")
            continue
        units = re.sub(r"\s*\([^)]*\)", "", said.group(1))  # "data (its registry)" -> "data"
        claimed = {u.strip() for u in units.split(",")}
        actual = {u for p in init.parent.rglob("*.py") for _, u in _imports(p)} - {pkg}
        if claimed != actual:
            wrong.append(f"{pkg}: says {sorted(claimed)}, imports {sorted(actual)}")
    assert not wrong, "\n".join(wrong)

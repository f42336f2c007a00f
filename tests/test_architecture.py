"""The package keeps its shape: layers import only downward, only store/ knows the engine, and
every module stays small enough to read in one sitting."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "orchestrator_db"
MAX_LINES = 500
# Where the engine may be named: store/ branches on it, config.py parses it from the URL, and the
# root package re-exports the enum for users.
DIALECT_ALLOWED = ("store/", "config.py", "__init__.py")


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def test_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    assert lint_imports.exists(), "import-linter comes with the test extra: pip install -e '.[test]'"
    # The contracts live in pyproject.toml ([tool.importlinter]).
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _names_dialect(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Name) and node.id == "Dialect"
                or isinstance(node, ast.Attribute) and node.attr == "Dialect"
                or isinstance(node, ast.alias) and node.name.rpartition(".")[2] == "Dialect"):
            lines.append(node.lineno)
    return sorted(set(lines))


@pytest.mark.parametrize("path", _modules(), ids=_relative)
def test_only_store_names_the_engine(path: Path) -> None:
    relative = _relative(path)
    if relative.startswith(DIALECT_ALLOWED[0]) or relative in DIALECT_ALLOWED[1:]:
        return
    lines = _names_dialect(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    assert not lines, (f"{relative} names Dialect on line(s) {lines}: a difference between the "
                       "engines is a method of store.Store, implemented by each engine's store")


@pytest.mark.parametrize("path", _modules(), ids=_relative)
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, (f"{_relative(path)} has {lines} lines (at most {MAX_LINES}): "
                                "split it by concern")

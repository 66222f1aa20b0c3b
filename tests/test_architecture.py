"""The engine's shape (docs/architecture.md): no private engine name is imported elsewhere, and a
module longer than about 450 lines says why in its docstring (a paragraph starting "Size:").
The layer order itself is checked by ``lint-imports`` in ``.ci/run``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "engine"
MAX_LINES = 450
MODULES = sorted(p for p in ENGINE.rglob("*.py") if "_assets" not in p.parts)
#: Everything that imports the engine: its own modules, the dashboard, tests and benchmarks.
CALLERS = MODULES + sorted(
    p
    for d in ("dashboard", "tests", "benchmarks")
    for p in (ROOT / d).rglob("*.py")
    if "vendor" not in p.parts
)


def _imports_of_private_names(path: Path) -> list[str]:
    """``module.name`` for each ``from engine… import _name`` in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("engine"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{node.module}.{alias.name}")
    return found


def test_the_checks_see_the_engine():
    assert len(MODULES) > 50
    assert ENGINE / "core" / "config.py" in MODULES


@pytest.mark.parametrize("path", CALLERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_name_is_imported_across_modules(path):
    assert _imports_of_private_names(path) == []


def test_the_private_name_check_can_fail(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from engine.graphs.builder import _nearest\nfrom engine import config\n")
    assert _imports_of_private_names(module) == ["engine.graphs.builder._nearest"]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ENGINE)))
def test_long_modules_say_why(path):
    text = path.read_text()
    lines = text.count("\n")
    if lines <= MAX_LINES:
        return
    doc = ast.get_docstring(ast.parse(text)) or ""
    assert "Size:" in doc, f"{lines} lines and no 'Size:' reason in the module docstring"

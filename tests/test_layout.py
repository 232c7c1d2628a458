"""The dependency direction of DESIGN.md, read from the source: integrations -> agent -> tools -> {knowledge,
risk}; evals may use anything, and nothing imports evals."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package -> the project packages it may import (itself included)
ALLOWED = {
    "risk": {"risk"},
    "knowledge": {"knowledge", "risk"},
    "tools": {"tools", "knowledge", "risk"},
    "agent": {"agent", "tools", "knowledge", "risk"},
    "integrations": {"integrations", "agent", "tools", "knowledge", "risk"},
}
PROJECT = {*ALLOWED, "evals", "tests"}


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & PROJECT


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_inward(package):
    wrong = {f"{p.relative_to(ROOT)}: {sorted(_imported(p) - ALLOWED[package])}"
             for p in sorted((ROOT / package).rglob("*.py")) if _imported(p) - ALLOWED[package]}
    assert not wrong, wrong

"""Imports flow one way (README, Layout): schema <- sinks <- streams, schema <- cdc, tenderhub on top; nothing in the
product imports the development-only packages (devtools, tests, bench). Read from the source, so a lazy import
inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What each product package may import from this repository.
ALLOWED = {
    "schema": {"schema"},
    "sinks": {"schema", "sinks"},
    "cdc": {"schema", "cdc"},
    "streams": {"schema", "sinks", "streams"},
    "tenderhub": {"schema", "sinks", "cdc", "streams", "tenderhub"},
}
LOCAL = {*ALLOWED, "devtools", "tests", "bench"}


def imported_packages(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out & LOCAL


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_product_package_imports_only_the_layers_below_it(package: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(found - ALLOWED[package])
        for path in sorted((ROOT / package).rglob("*.py"))
        if (found := imported_packages(path)) - ALLOWED[package]
    }
    assert wrong == {}

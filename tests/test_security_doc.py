"""docs/security.md names the test behind every mitigation: each named test must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "security.md"
NAMED = re.compile(r"`(?:([\w/]+\.py))?::(\w+)`")


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_test_named_in_the_threat_model_exists() -> None:
    named: list[tuple[str, str]] = []
    current = ""
    for match in NAMED.finditer(DOC.read_text()):
        current = match.group(1) or current  # `::test_x` names another test of the same file
        assert current, f"{match.group(0)} names no file"
        named.append((current, match.group(2)))
    assert len(named) > 30
    missing = [
        f"{file}::{name}"
        for file, name in named
        if not (REPO / "tests" / file).is_file() or name not in functions_in(REPO / "tests" / file)
    ]
    assert not missing, missing

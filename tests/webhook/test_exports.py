"""The webhook package's public names, and the layering that keeps the core pure."""

from __future__ import annotations

import ast
from pathlib import Path

from kube_lxcfs import webhook

PACKAGE = Path(webhook.__file__).parent
# module -> the webhook modules it may import (lower layers only)
LAYERS = {
    "structs": set(),
    "config": set(),
    "selection": {"config"},
    "mutation": {"config", "structs"},
    "runtimeclass": {"config", "mutation"},
    "admission": {"config", "mutation", "runtimeclass", "selection", "structs"},
    "metrics": set(),
    "tls": set(),
    "options": {"config"},
    "https": {"admission", "metrics", "options"},
    "server": {"admission", "config", "https", "metrics", "options", "tls"},
    "workers": {"metrics", "options", "server", "tls"},
}
PURE = {"structs", "config", "selection", "mutation", "runtimeclass", "admission", "metrics"}
IO_MODULES = {"socket", "ssl", "subprocess", "signal", "http", "os", "pathlib", "io"}


def imports_of(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_all_names_are_unique_and_importable() -> None:
    assert len(set(webhook.__all__)) == len(webhook.__all__)
    for name in webhook.__all__:
        assert getattr(webhook, name) is not None


def test_layers_only_import_downwards() -> None:
    assert {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"} == set(LAYERS)
    for module, allowed in LAYERS.items():
        ours = {
            name.removeprefix("kube_lxcfs.webhook.")
            for name in imports_of(module)
            if name.startswith("kube_lxcfs.webhook.")
        }
        assert ours <= allowed, f"{module} imports {ours - allowed}"


def test_pure_modules_do_no_io() -> None:
    for module in PURE:
        top = {name.split(".")[0] for name in imports_of(module)}
        assert not top & IO_MODULES, f"{module} imports {top & IO_MODULES}"

"""Imports between kube-lxcfs's packages run one way: no cycle, and nothing imports upwards.

A unit is a subpackage (``kube_lxcfs.repair``) or a top-level module (``kube_lxcfs.linux``);
imports inside a unit are free. Every import counts, also the lazy ones inside functions.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import kube_lxcfs

PACKAGE = Path(kube_lxcfs.__file__).parent

LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors"}),  # the root of the exception tree
    # foundations: stdlib only, importable by everything (the runtime wrapper's zipapp too)
    frozenset(
        {"kube_lxcfs", "defaults", "linux", "mountinfo", "vfs", "jsonlog", "files", "ttl_cache"}
    ),
    frozenset({"cgroups"}),  # cgroup discovery, parsers, typed snapshots
    frozenset({"views", "files_text"}),  # pure renderers; the file table as text
    frozenset({"sampler", "render_cache", "sys_mirror"}),  # loadavg state, caches, /sys mirror
    frozenset({"context"}),  # what a render needs: host files, deciding pid, cgroup identity
    frozenset({"table"}),  # the declarative table of virtual files
    frozenset({"sysinfo"}),  # sysinfo(2) values from the same context
    frozenset({"tree"}),  # the virtual tree: routing over the table
    # shells that serve the tree or the cluster, each on its own
    frozenset({"runtime", "webhook", "repair"}),
    frozenset({"fuse"}),  # the daemon: serves the tree, answers sysinfo, calls repair's hooks
    frozenset({"sandbox", "deploy"}),  # kube-lxcfs run; artefacts, install and doctor
    frozenset({"commands"}),
    frozenset({"cli"}),
    frozenset({"__main__"}),
)
"""Lowest first. A unit may import units of lower layers only; a unit in no layer (a new
module) may import anything, but takes part in the cycle check."""

RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
    """``kube_lxcfs.repair.fix`` → ``repair``; ``kube_lxcfs`` itself → ``kube_lxcfs``."""
    parts = module.split(".")
    if len(parts) < 2:
        return "kube_lxcfs"
    name = parts[1]
    if (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").exists():
        return name
    return "kube_lxcfs"  # an attribute of the package, e.g. __version__


def _imports() -> dict[str, dict[str, str]]:
    """unit → {imported unit: the first file that imports it}."""
    graph: dict[str, dict[str, str]] = collections.defaultdict(dict)
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        source = _unit(".".join(relative.parts))
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "kube_lxcfs":
                    targets = [f"kube_lxcfs.{alias.name}" for alias in node.names]
                elif node.module.startswith("kube_lxcfs."):
                    targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("kube_lxcfs.")]
            for target in targets:
                unit = _unit(target)
                if unit != source:
                    graph[source].setdefault(unit, str(path.relative_to(PACKAGE)))
    return graph


def _cycle(graph: dict[str, dict[str, str]]) -> list[str] | None:
    """One import cycle as a list of units, if there is any."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(unit: str) -> list[str] | None:
        state[unit] = 1
        stack.append(unit)
        for target in graph.get(unit, {}):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[unit] = 2
        return None

    for unit in sorted(graph):
        if unit not in state and (found := visit(unit)):
            return found
    return None


def test_the_package_import_graph_has_no_cycle() -> None:
    cycle = _cycle(_imports())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_package_imports_a_higher_layer() -> None:
    upward = [
        f"{source} ({path}) imports {target}"
        for source, targets in _imports().items()
        for target, path in targets.items()
        if source in RANK and target in RANK and RANK[target] >= RANK[source]
    ]
    assert upward == []


def test_the_checks_can_fail() -> None:
    """The cycle finder and the layer order see a planted cycle and an upward import."""
    planted = {"fuse": {"repair": "fuse/daemon.py"}, "repair": {"fuse": "repair/hook.py"}}
    assert _cycle(planted) == ["fuse", "repair", "fuse"]
    assert RANK["fuse"] > RANK["repair"] > RANK["cgroups"]
    assert _unit("kube_lxcfs.repair.fix") == "repair" and _unit("kube_lxcfs.linux") == "linux"
    assert _unit("kube_lxcfs.__version__") == "kube_lxcfs"

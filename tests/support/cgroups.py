"""Cgroup helpers only tests need: put a process back in the root cgroups, list where one is."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from kube_lxcfs.cgroups.hierarchy import Layout
from kube_lxcfs.cgroups.transient import DEFAULT_CONTROLLERS, host_layout


def move_to_root(
    pid: int, controllers: Sequence[str] = DEFAULT_CONTROLLERS, layout: Layout | None = None
) -> None:
    """Move ``pid`` (0: the caller) into the root cgroup of each hierarchy of ``controllers``."""
    layout = layout or host_layout()
    seen: set[str] = set()
    for controller in controllers:
        hierarchy = layout.hierarchy(controller)
        if hierarchy is None or hierarchy.mount_point in seen:
            continue
        seen.add(hierarchy.mount_point)
        Path(hierarchy.mount_point, "cgroup.procs").write_text(str(pid))


def iter_cgroup_paths(
    pid: int | str = "self", proc_root: str = "/proc"
) -> Iterator[tuple[str, str]]:
    """(controllers, path) pairs of ``/proc/<pid>/cgroup``."""
    for line in Path(proc_root, str(pid), "cgroup").read_text().splitlines():
        _hier, controllers, path = line.split(":", 2)
        yield controllers, path

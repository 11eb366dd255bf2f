"""Which cgroup hierarchies exist, and where a process sits in each of them.

Discovery is pure over the mountinfo text (plus a callback that reads a cgroup2
mount's ``cgroup.controllers``), so v1, hybrid and pure-v2 layouts are all
testable from recorded text.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from kube_lxcfs.cgroups.errors import CgroupUnavailable
from kube_lxcfs.cgroups.parse import CgroupEntry
from kube_lxcfs.mountinfo import parse_mountinfo

V1_CONTROLLERS = frozenset(
    {
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "debug",
        "devices",
        "freezer",
        "hugetlb",
        "memory",
        "misc",
        "net_cls",
        "net_prio",
        "perf_event",
        "pids",
        "rdma",
    }
)

V2_NAME: dict[str, str | None] = {
    "memory": "memory",
    "cpu": "cpu",
    "cpuacct": None,  # cpu.stat exists in every v2 cgroup, controller or not
    "cpuset": "cpuset",
    "blkio": "io",
    "pids": "pids",
}
"""How a v1 controller name is spelled on cgroup2 (``None``: always available)."""


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """One mounted cgroup hierarchy."""

    version: Literal[1, 2]
    controllers: frozenset[str]
    """v1: the mount's controllers (and ``name=...``); v2: ``cgroup.controllers`` of the mount."""
    mount_point: str
    """Where the daemon reads it (already re-rooted under the configured sys root)."""
    root: str = "/"
    """The cgroup mounted there (mountinfo's root field); paths are relative to it."""

    def directory(self, cgroup: str) -> str:
        """The directory of ``cgroup`` (an absolute cgroup path) in this hierarchy."""
        return self.mount_point if cgroup == "/" else self.mount_point + cgroup


@dataclass(frozen=True, slots=True)
class Layout:
    """Every hierarchy, and which one answers for each controller."""

    hierarchies: tuple[Hierarchy, ...]
    by_controller: dict[str, Hierarchy]

    @classmethod
    def of(cls, hierarchies: tuple[Hierarchy, ...]) -> Layout:
        """The layout of these hierarchies: a v1 controller wins over the cgroup2 mount.

        On cgroup2, a v1 name is answered when its v2 spelling is in ``cgroup.controllers``
        (``cpuacct`` always: ``cpu.stat`` exists in every v2 cgroup); any other controller
        listed there (``hugetlb``...) is answered by its own name.
        """
        by_controller: dict[str, Hierarchy] = {}
        for h in hierarchies:
            if h.version == 1:
                for c in h.controllers:
                    by_controller.setdefault(c, h)
        for h in hierarchies:
            if h.version == 2:
                for name, v2_name in V2_NAME.items():
                    if name not in by_controller and (v2_name is None or v2_name in h.controllers):
                        by_controller[name] = h
                for name in h.controllers:
                    by_controller.setdefault(name, h)
        return cls(tuple(hierarchies), by_controller)

    @property
    def unified(self) -> Hierarchy | None:
        """The cgroup2 mount, if any."""
        return next((h for h in self.hierarchies if h.version == 2), None)

    @property
    def kind(self) -> Literal["v1", "hybrid", "v2", "none"]:
        """The layout family, as lxcfs names them."""
        versions = {h.version for h in self.hierarchies}
        if versions == {2}:
            return "v2"
        if versions == {1, 2}:
            return "hybrid"
        return "v1" if versions else "none"

    def hierarchy(self, controller: str) -> Hierarchy | None:
        """The hierarchy that answers for ``controller`` (a v1 name), if any."""
        return self.by_controller.get(controller)


def reroot(path: str, sys_root: str) -> str:
    """Map a host path under /sys to the configured sys root (fake trees in tests)."""
    if sys_root.rstrip("/") in ("", "/sys") or not path.startswith("/sys/"):
        return path
    return sys_root.rstrip("/") + path[4:]


def discover_layout(
    mountinfo_text: str,
    read_controllers: Callable[[str], str | None],
    sys_root: str = "/sys",
) -> Layout:
    """Find the cgroup hierarchies in a mountinfo text.

    ``read_controllers(directory)`` returns the ``cgroup.controllers`` text of a
    cgroup2 mount (or ``None``).  A v1 controller always wins over the same
    controller on a cgroup2 mount (hybrid layouts); the first mount of a hierarchy
    wins over later bind mounts of it.
    """
    hierarchies: list[Hierarchy] = []
    seen_v1: set[frozenset[str]] = set()
    seen_v2 = False
    for entry in parse_mountinfo(mountinfo_text):
        mount_point = reroot(entry.mount_point, sys_root)
        if entry.fstype == "cgroup":
            controllers = frozenset(
                o for o in entry.super_options if o in V1_CONTROLLERS or o.startswith("name=")
            )
            if not controllers or controllers in seen_v1:
                continue
            seen_v1.add(controllers)
            hierarchies.append(Hierarchy(1, controllers, mount_point, entry.root))
        elif entry.fstype == "cgroup2" and not seen_v2:
            seen_v2 = True
            text = read_controllers(mount_point) or ""
            hierarchies.append(Hierarchy(2, frozenset(text.split()), mount_point, entry.root))
    return Layout.of(tuple(hierarchies))


def normalize_cgroup_path(path: str, root: str = "/") -> str:
    """Make a /proc/<pid>/cgroup path usable under a hierarchy's mount.

    Strips a trailing ``/init.scope`` (systemd puts pid 1 there; lxcfs does the
    same), makes the path relative to the mount's root, and resolves the ``..``
    components a cgroup namespace produces.  A path that leaves the visible tree
    raises :class:`CgroupUnavailable`.
    """
    if "/." in path:
        parts: list[str] = []
        for part in path.split("/"):
            if part == "..":
                if not parts:
                    raise CgroupUnavailable(
                        f"cgroup path {path!r} is outside this cgroup namespace"
                    )
                parts.pop()
            elif part not in ("", "."):
                parts.append(part)
        path = "/" + "/".join(parts)
    if path.endswith("/init.scope"):
        path = path[: -len("/init.scope")] or "/"
    if root != "/":
        if path == root:
            return "/"
        if not path.startswith(root + "/"):
            raise CgroupUnavailable(f"cgroup path {path!r} is outside the mounted root {root!r}")
        path = path[len(root) :]
    return path


def cgroup_of(entries: tuple[CgroupEntry, ...], hierarchy: Hierarchy) -> str:
    """The path of the process in ``hierarchy``, from its /proc/<pid>/cgroup entries."""
    for entry in entries:
        if hierarchy.version == 2:
            if entry.hierarchy_id == 0 and not entry.controllers:
                return normalize_cgroup_path(entry.path, hierarchy.root)
        elif hierarchy.controllers.intersection(entry.controllers):
            return normalize_cgroup_path(entry.path, hierarchy.root)
    raise CgroupUnavailable(f"process has no cgroup in {sorted(hierarchy.controllers)}")


def ancestors(cgroup: str) -> list[str]:
    """``cgroup`` and every parent up to and including ``/``, nearest first."""
    chain = [cgroup]
    while cgroup != "/":
        cgroup = posixpath.dirname(cgroup) or "/"
        chain.append(cgroup)
    return chain

"""Cgroup discovery, pid → cgroup resolution and typed snapshots (v1, hybrid, v2).

The public surface: discover the layout once (:func:`discover_layout`), resolve
the process that decides a read (:class:`ProcessResolver`), read version-neutral
snapshots (:class:`CgroupReader`).  Every deliberate error is a :class:`CgroupError`.
"""

from kube_lxcfs.cgroups.errors import CgroupError, CgroupUnavailable, ParseError
from kube_lxcfs.cgroups.hierarchy import (
    Hierarchy,
    Layout,
    ancestors,
    cgroup_of,
    discover_layout,
    normalize_cgroup_path,
)
from kube_lxcfs.cgroups.process import ProcessResolver
from kube_lxcfs.cgroups.reader import V1, V2, Backend, CgroupReader, read_text
from kube_lxcfs.cgroups.snapshot import (
    CpuSnapshot,
    CpuUsage,
    IoSnapshot,
    MemorySnapshot,
    MemoryStat,
)

__all__ = [
    "V1",
    "V2",
    "Backend",
    "CgroupError",
    "CgroupReader",
    "CgroupUnavailable",
    "CpuSnapshot",
    "CpuUsage",
    "Hierarchy",
    "IoSnapshot",
    "Layout",
    "MemorySnapshot",
    "MemoryStat",
    "ParseError",
    "ProcessResolver",
    "ancestors",
    "cgroup_of",
    "discover_layout",
    "normalize_cgroup_path",
    "read_text",
]

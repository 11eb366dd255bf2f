"""Typed, version-neutral values read from a cgroup: what the renderers consume.

v1 and v2 differences (file names, ``max`` vs the huge v1 sentinel, memsw =
memory + swap, ``total_*`` keys) end in the reader; nothing here says which
version a value came from.  Sizes are bytes, times nanoseconds.  ``None`` means
"unlimited" for limits and "not known on this kernel" for counters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kube_lxcfs.cgroups.parse import CpuTimes, Device, IoCounters


@dataclass(frozen=True, slots=True)
class MemoryStat:
    """memory.stat, with v1's ``total_*`` and v2's names mapped onto one set (bytes)."""

    file: int = 0
    """Page cache (v1 total_cache, v2 file)."""
    anon: int = 0
    """Anonymous memory (v1 total_rss, v2 anon)."""
    shmem: int = 0
    file_mapped: int = 0
    file_dirty: int = 0
    file_writeback: int = 0
    active_anon: int = 0
    inactive_anon: int = 0
    active_file: int = 0
    inactive_file: int = 0
    unevictable: int = 0
    anon_thp: int = 0
    """Transparent huge pages (v1 total_rss_huge, v2 anon_thp)."""
    slab_reclaimable: int | None = None
    """v2 only; ``None`` on v1, which has no slab figures in memory.stat."""
    slab_unreclaimable: int | None = None
    zswap: int | None = None
    """v2 with zswap only."""
    zswapped: int | None = None


@dataclass(frozen=True, slots=True)
class MemorySnapshot:
    """The memory of one cgroup, limits already taken as the minimum over its ancestors."""

    cgroup: str
    limit: int | None
    """Memory limit; ``None`` = unlimited here and in every ancestor."""
    usage: int
    """Memory charged to the cgroup (v1 usage_in_bytes, v2 memory.current)."""
    stat: MemoryStat
    swap_limit: int | None
    """Swap alone (v1: memsw limit - memory limit); ``None`` = unlimited."""
    swap_usage: int | None
    """Swap alone in use; ``None`` when the kernel does not account swap."""
    swappiness: int | None = None
    """v1 memory.swappiness (0 means the cgroup never swaps); ``None`` on v2."""

    @property
    def is_root(self) -> bool:
        """The root cgroup is the whole host."""
        return self.cgroup == "/"


@dataclass(frozen=True, slots=True)
class CpuUsage:
    """CPU time consumed by a cgroup since it was created (ns)."""

    user: int
    system: int
    per_cpu: Mapping[int, CpuTimes] | None = None
    """Per CPU id (v1 cpuacct); ``None`` where the kernel only has totals (v2 cpu.stat)."""

    @property
    def total(self) -> int:
        """User + system."""
        return self.user + self.system


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """The CPUs one cgroup may use."""

    cpuset: frozenset[int] | None
    """Effective cpuset; ``None`` if the kernel gives none (then: the host's online CPUs)."""
    quota: float | None
    """CFS bandwidth in CPUs (quota/period), the minimum over the ancestors; ``None`` = none."""
    cpuset_cgroup: str = "/"
    cpu_cgroup: str = "/"


@dataclass(frozen=True, slots=True)
class IoSnapshot:
    """Per-device IO of a cgroup, including its descendants."""

    cgroup: str
    devices: Mapping[Device, IoCounters]

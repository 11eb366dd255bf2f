"""Read typed snapshots from cgroupfs: one interface, a v1 and a v2 back-end.

The back-end is chosen per controller (a hybrid host has memory on v1 and maybe
something on v2).  Every method takes the hierarchy and the cgroup path and
returns version-neutral values from :mod:`kube_lxcfs.cgroups.snapshot`.
Ancestor walks (minimum limits, effective cpuset) happen here.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from kube_lxcfs.cgroups.errors import CgroupUnavailable, ParseError
from kube_lxcfs.cgroups.hierarchy import Hierarchy, Layout, ancestors, cgroup_of
from kube_lxcfs.cgroups.parse import (
    CgroupEntry,
    CpuTimes,
    Device,
    IoCounters,
    parse_blkio_recursive,
    parse_cpu_list,
    parse_cpu_max,
    parse_cpuacct_usage_all,
    parse_cpuacct_usage_percpu,
    parse_flat_keyed,
    parse_int,
    parse_io_stat,
    parse_pressure,
    parse_v1_limit,
    parse_v2_max,
)
from kube_lxcfs.cgroups.snapshot import (
    CpuSnapshot,
    CpuUsage,
    IoSnapshot,
    MemorySnapshot,
    MemoryStat,
)
from kube_lxcfs.ttl_cache import TtlCache

log = logging.getLogger(__name__)

FAULT_STALL_ENV = "KUBE_LXCFS_FAULT_STALL"
"""Fault injection for tests and benchmarks: ``SUBSTRING=MS`` makes every cgroup
lookup of a cgroup whose path contains SUBSTRING sleep MS milliseconds, as if its
files were slow to read (a cgroup under heavy memory pressure).  Read once, when
the daemon builds its tree; unset in production."""


@dataclass(frozen=True, slots=True)
class StallFault:
    """An injected delay for the cgroups whose path contains ``substring``."""

    substring: str
    seconds: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> StallFault | None:
        """The fault ``KUBE_LXCFS_FAULT_STALL`` asks for; ``None`` if unset or malformed."""
        text = environ.get(FAULT_STALL_ENV, "")
        if not text:
            return None
        substring, sep, millis = text.rpartition("=")
        try:
            seconds = float(millis) / 1000
        except ValueError:
            seconds = -1.0
        if not sep or not substring or seconds < 0:
            log.error(
                "ignoring %s=%r: expected CGROUP_SUBSTRING=MILLISECONDS", FAULT_STALL_ENV, text
            )
            return None
        log.warning("fault injection: cgroups matching %r stall %.0f ms", substring, seconds * 1000)
        return cls(substring, seconds)


def read_text(path: str) -> str:
    """Read a kernel file with as few system calls as the file allows (no ``open()`` object).

    Reads until one returns nothing. A file of one record (a cgroup file, /proc/meminfo)
    arrives whole in the first read and the second returns nothing at once; a file of many
    records (/proc/self/mountinfo, /proc/cpuinfo: one per mount, one per CPU) arrives one
    kernel page of whole records per read, so a short read is not the end. (Taking it for
    the end read 4 KiB of a 90 KiB mountinfo: on a node whose agent sees many mounts the
    cgroup mounts listed after them were lost, and every container was shown the host.)
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, _CHUNK)
        if data:
            chunks = [data]
            while chunk := os.read(fd, _CHUNK):
                chunks.append(chunk)
            if len(chunks) > 1:
                data = b"".join(chunks)
    finally:
        os.close(fd)
    # surrogateescape: a cgroup path in /proc/<pid>/cgroup that is not UTF-8 still names its
    # directory when joined back into a path ("replace" would name no directory at all)
    return data.decode("utf-8", "surrogateescape")


_CHUNK = 65536


def read_optional(path: str) -> str | None:
    """The file's text, or ``None`` if it does not exist (a kernel without that file)."""
    try:
        return read_text(path)
    except FileNotFoundError:
        return None


def _require_dir(h: Hierarchy, cgroup: str) -> str:
    directory = h.directory(cgroup)
    if not os.path.isdir(directory):
        raise CgroupUnavailable(f"cgroup {cgroup} does not exist in {h.mount_point}")
    return directory


V1_STAT_KEYS = {
    "total_cache": "file",
    "total_rss": "anon",
    "total_shmem": "shmem",
    "total_mapped_file": "file_mapped",
    "total_dirty": "file_dirty",
    "total_writeback": "file_writeback",
    "total_active_anon": "active_anon",
    "total_inactive_anon": "inactive_anon",
    "total_active_file": "active_file",
    "total_inactive_file": "inactive_file",
    "total_unevictable": "unevictable",
    "total_rss_huge": "anon_thp",
}
V2_STAT_KEYS = {
    name: name
    for name in (
        "file",
        "anon",
        "shmem",
        "file_mapped",
        "file_dirty",
        "file_writeback",
        "active_anon",
        "inactive_anon",
        "active_file",
        "inactive_file",
        "unevictable",
        "anon_thp",
        "slab_reclaimable",
        "slab_unreclaimable",
        "zswap",
        "zswapped",
    )
}


def memory_stat_from(values: dict[str, int], keys: dict[str, str]) -> MemoryStat:
    """Map a parsed memory.stat onto :class:`MemoryStat` with the given key table."""
    return MemoryStat(**{field: values[key] for key, field in keys.items() if key in values})


class Backend(Protocol):
    """What one cgroup version can answer; paths are cgroup paths inside ``h``."""

    def memory(self, h: Hierarchy, cgroup: str, swap: bool = True) -> MemorySnapshot: ...

    def cpuset(self, h: Hierarchy, cgroup: str) -> frozenset[int] | None: ...

    def cpu_quota(self, h: Hierarchy, cgroup: str) -> float | None: ...

    def cpu_usage(self, h: Hierarchy, cgroup: str) -> CpuUsage | None: ...

    def io(self, h: Hierarchy, cgroup: str) -> IoSnapshot | None: ...

    def pressure(self, h: Hierarchy, cgroup: str, resource: str) -> str | None: ...


def _limited_ancestors(cgroup: str) -> list[str]:
    """``cgroup`` and its parents, without the root: the root cgroup cannot be limited."""
    return ancestors(cgroup)[:-1]


def _min_limit(limits: list[int | None]) -> int | None:
    present = [v for v in limits if v is not None]
    return min(present) if present else None


class _LimitCache:
    """Limits (minimum over ancestors) kept for ``ttl`` seconds: they change only on resize."""

    def __init__(self, cache: TtlCache | None = None, ttl: float = 0.0) -> None:
        self.limit_cache = cache
        self.limit_ttl = ttl

    def _hier_min(self, h: Hierarchy, cgroup: str, name: str) -> int | None:
        if self.limit_cache is None:
            return self._read_hier_min(h, cgroup, name)
        return self.limit_cache.get(
            (h.mount_point, cgroup, name),
            self.limit_ttl,
            lambda: self._read_hier_min(h, cgroup, name),
        )

    def _read_hier_min(self, h: Hierarchy, cgroup: str, name: str) -> int | None:
        raise NotImplementedError


class V1Backend(_LimitCache):
    """cgroup v1: one hierarchy per controller set, ``*_in_bytes`` files."""

    def _read_hier_min(self, h: Hierarchy, cgroup: str, name: str) -> int | None:
        limits: list[int | None] = []
        for cg in _limited_ancestors(cgroup):
            text = read_optional(h.directory(cg) + "/" + name)
            if text is not None:
                limits.append(parse_v1_limit(text, name))
        return _min_limit(limits)

    def memory(self, h: Hierarchy, cgroup: str, swap: bool = True) -> MemorySnapshot:
        d = h.directory(cgroup)  # every v1 memory cgroup has these files: no isdir needed
        usage = parse_int(read_text(d + "/memory.usage_in_bytes"), "memory.usage_in_bytes")
        stat = memory_stat_from(
            parse_flat_keyed(read_text(d + "/memory.stat"), "memory.stat"), V1_STAT_KEYS
        )
        limit = self._hier_min(h, cgroup, "memory.limit_in_bytes")
        swap_limit: int | None = None
        swap_usage: int | None = None
        memsw_usage = read_optional(d + "/memory.memsw.usage_in_bytes") if swap else None
        if memsw_usage is not None:
            swap_usage = max(0, parse_int(memsw_usage, "memory.memsw.usage_in_bytes") - usage)
            memsw_limit = self._hier_min(h, cgroup, "memory.memsw.limit_in_bytes")
            if memsw_limit is not None:
                swap_limit = max(0, memsw_limit - (limit if limit is not None else 0))
        swappiness: int | None = None
        if swap_usage is not None:
            swappiness_text = read_optional(d + "/memory.swappiness")
            swappiness = None if swappiness_text is None else parse_int(swappiness_text)
        return MemorySnapshot(cgroup, limit, usage, stat, swap_limit, swap_usage, swappiness)

    def cpuset(self, h: Hierarchy, cgroup: str) -> frozenset[int] | None:
        d = h.directory(cgroup)
        text = read_optional(d + "/cpuset.effective_cpus")  # Linux 4.x+
        if text is None:
            text = read_text(d + "/cpuset.cpus")  # raises if the cgroup is gone
        return parse_cpu_list(text) if text.strip() else None

    def cpu_quota(self, h: Hierarchy, cgroup: str) -> float | None:
        ratios: list[float] = []
        for cg in _limited_ancestors(cgroup):
            d = h.directory(cg)
            # the cgroup's own file must exist (else it is gone); parents' are optional
            quota_text = (
                read_text(d + "/cpu.cfs_quota_us")
                if cg == cgroup
                else (read_optional(d + "/cpu.cfs_quota_us"))
            )
            if quota_text is None:
                continue
            quota = parse_int(quota_text, "cpu.cfs_quota_us")
            if quota > 0:
                period = parse_int(read_text(d + "/cpu.cfs_period_us"), "cpu.cfs_period_us")
                if period > 0:
                    ratios.append(quota / period)
        return min(ratios) if ratios else None

    def cpu_usage(self, h: Hierarchy, cgroup: str) -> CpuUsage | None:
        d = h.directory(cgroup)
        text = read_optional(d + "/cpuacct.usage_all")
        if text is not None:
            per_cpu = parse_cpuacct_usage_all(text)
        else:
            text = read_text(d + "/cpuacct.usage_percpu")
            # No user/system split on this kernel: count it all as user (lxcfs
            # counts it twice, as user and as system).
            per_cpu = {
                cpu: CpuTimes(ns, 0) for cpu, ns in enumerate(parse_cpuacct_usage_percpu(text))
            }
        user = sum(t.user for t in per_cpu.values())
        system = sum(t.system for t in per_cpu.values())
        return CpuUsage(user, system, per_cpu)

    def io(self, h: Hierarchy, cgroup: str) -> IoSnapshot | None:
        d = _require_dir(h, cgroup)
        # CFQ's files went with CFQ (Linux 5.0).  The throttle and BFQ files exist on
        # current kernels but count only IO that passes through throttling rules or the
        # BFQ scheduler: a source counts only if the hierarchy root lists a device in it
        # (otherwise this kernel accounts nothing there and the host's file is right).
        for prefix in ("blkio.", "blkio.throttle.", "blkio.bfq."):
            serviced = read_optional(f"{d}/{prefix}io_serviced_recursive")
            service_bytes = read_optional(f"{d}/{prefix}io_service_bytes_recursive")
            if serviced is None or service_bytes is None:
                continue
            name = prefix + "io_serviced_recursive"
            root = serviced if cgroup == "/" else read_optional(f"{h.mount_point}/{name}")
            if not root or not parse_blkio_recursive(root, name):
                continue
            ops = parse_blkio_recursive(serviced, prefix + "io_serviced_recursive")
            nbytes = parse_blkio_recursive(service_bytes, prefix + "io_service_bytes_recursive")
            devices: dict[Device, IoCounters] = {}
            for dev in sorted(set(ops) | set(nbytes)):
                o = ops.get(dev, {})
                b = nbytes.get(dev, {})
                devices[dev] = IoCounters(
                    rbytes=b.get("Read", 0),
                    wbytes=b.get("Write", 0),
                    rios=o.get("Read", 0),
                    wios=o.get("Write", 0),
                    dbytes=b.get("Discard", 0),
                    dios=o.get("Discard", 0),
                )
            return IoSnapshot(cgroup, devices)
        return None

    def pressure(self, h: Hierarchy, cgroup: str, resource: str) -> str | None:
        return None


class V2Backend(_LimitCache):
    """cgroup v2: one unified hierarchy, ``max`` for no limit, swap counted alone."""

    def _read_hier_min(self, h: Hierarchy, cgroup: str, name: str) -> int | None:
        limits: list[int | None] = []
        for cg in _limited_ancestors(cgroup):
            text = read_optional(h.directory(cg) + "/" + name)
            if text is not None:
                limits.append(parse_v2_max(text, name))
        return _min_limit(limits)

    @staticmethod
    def _nearest_with(h: Hierarchy, cgroup: str, name: str) -> str:
        """The cgroup itself, or the nearest ancestor with file ``name``.

        Where a controller is not enabled for a subtree, its processes are charged
        to the nearest ancestor where it is, so that ancestor's figures are theirs.
        """
        _require_dir(h, cgroup)
        for cg in ancestors(cgroup):
            if os.path.exists(h.directory(cg) + "/" + name):
                return cg
        return "/"

    def memory(self, h: Hierarchy, cgroup: str, swap: bool = True) -> MemorySnapshot:
        cgroup = self._nearest_with(h, cgroup, "memory.stat")
        d = h.directory(cgroup)
        stat_values = parse_flat_keyed(read_text(d + "/memory.stat"), "memory.stat")
        stat = memory_stat_from(stat_values, V2_STAT_KEYS)
        current = read_optional(d + "/memory.current")
        if current is not None:
            usage = parse_int(current, "memory.current")
        elif cgroup == "/":
            # Older kernels have no memory.current at the root; the root is the host.
            usage = stat.anon + stat.file
        else:
            raise CgroupUnavailable(f"{d}/memory.current is missing")
        limit = self._hier_min(h, cgroup, "memory.max")
        swap_current = read_optional(d + "/memory.swap.current") if swap else None
        swap_usage = None if swap_current is None else parse_int(swap_current)
        swap_limit = (
            self._hier_min(h, cgroup, "memory.swap.max") if swap_usage is not None else None
        )
        return MemorySnapshot(cgroup, limit, usage, stat, swap_limit, swap_usage, None)

    def cpuset(self, h: Hierarchy, cgroup: str) -> frozenset[int] | None:
        _require_dir(h, cgroup)
        # cpuset.cpus.effective exists only where the cpuset controller is enabled;
        # the nearest ancestor that has it bounds this cgroup.
        for cg in ancestors(cgroup):
            text = read_optional(h.directory(cg) + "/cpuset.cpus.effective")
            if text is not None and text.strip():
                return parse_cpu_list(text)
        return None

    def cpu_quota(self, h: Hierarchy, cgroup: str) -> float | None:
        _require_dir(h, cgroup)
        ratios: list[float] = []
        for cg in _limited_ancestors(cgroup):
            text = read_optional(h.directory(cg) + "/cpu.max")
            if text is not None:
                quota, period = parse_cpu_max(text)
                if quota is not None:
                    ratios.append(quota / period)
        return min(ratios) if ratios else None

    def cpu_usage(self, h: Hierarchy, cgroup: str) -> CpuUsage | None:
        d = _require_dir(h, cgroup)
        values = parse_flat_keyed(read_text(d + "/cpu.stat"), "cpu.stat")
        try:
            return CpuUsage(values["user_usec"] * 1000, values["system_usec"] * 1000)
        except KeyError as exc:
            raise ParseError("cpu.stat", str(values), "no user_usec/system_usec") from exc

    def io(self, h: Hierarchy, cgroup: str) -> IoSnapshot | None:
        cgroup = self._nearest_with(h, cgroup, "io.stat")
        if cgroup == "/":
            return None  # the root's IO is the host's: its diskstats are right
        text = read_text(h.directory(cgroup) + "/io.stat")
        return IoSnapshot(cgroup, parse_io_stat(text))

    def pressure(self, h: Hierarchy, cgroup: str, resource: str) -> str | None:
        d = _require_dir(h, cgroup)
        text = read_optional(f"{d}/{resource}.pressure")
        if text is None:
            return None
        parse_pressure(text)  # validate: a malformed file falls back to the host's
        return text


V1 = V1Backend()
V2 = V2Backend()


class CgroupReader:
    """Answers "what are the limits and usage of this process's cgroups".

    Takes the parsed /proc/<pid>/cgroup of the process that decides (the reader or
    its namespace init) and picks the hierarchy and back-end per controller.
    """

    def __init__(
        self, layout: Layout, stall: StallFault | None = None, limits_ttl: float = 0.0
    ) -> None:
        self.layout = layout
        self.stall = stall
        self.limits_ttl = limits_ttl
        """How long limits (memory and swap limits, cpuset, CPU quota) are kept."""
        self._limits = TtlCache()
        self._v1 = V1Backend(self._limits, limits_ttl)
        self._v2 = V2Backend(self._limits, limits_ttl)

    def locate(self, entries: tuple[CgroupEntry, ...], controller: str) -> tuple[Hierarchy, str]:
        """The hierarchy and cgroup path answering ``controller`` for these entries."""
        h = self.layout.hierarchy(controller)
        if h is None:
            raise CgroupUnavailable(f"no {controller} hierarchy is mounted")
        cgroup = cgroup_of(entries, h)
        if self.stall is not None:
            self._stall(cgroup)
        return h, cgroup

    def _stall(self, cgroup: str) -> None:
        assert self.stall is not None
        if self.stall.substring in cgroup:
            time.sleep(self.stall.seconds)

    @property
    def limits(self) -> TtlCache:
        """The kept limits (:meth:`RenderContext.looking_only` turns keeping off)."""
        return self._limits

    def forget_limits(self) -> None:
        """Drop every kept limit (a cgroup was replaced by a new one at the same path)."""
        self._limits.clear()

    def backend(self, h: Hierarchy) -> Backend:
        """The back-end for a hierarchy's version."""
        return self._v2 if h.version == 2 else self._v1

    def memory(self, entries: tuple[CgroupEntry, ...], swap: bool = True) -> MemorySnapshot:
        """Memory limit, usage, stat and swap of the memory cgroup.

        ``swap=False`` skips the swap files (swap off by option, or a host without
        swap): the snapshot then says "no swap accounting".
        """
        h, cg = self.locate(entries, "memory")
        return self.backend(h).memory(h, cg, swap)

    def cpu(self, entries: tuple[CgroupEntry, ...]) -> CpuSnapshot:
        """Effective cpuset and CFS quota (minimum over ancestors), kept for ``limits_ttl``."""
        cpuset_h = self.layout.hierarchy("cpuset")
        cpu_h = self.layout.hierarchy("cpu")
        cpuset_cg = self.locate(entries, "cpuset")[1] if cpuset_h is not None else "/"
        cpu_cg = self.locate(entries, "cpu")[1] if cpu_h is not None else "/"

        def read() -> CpuSnapshot:
            cpuset = quota = None
            if cpuset_h is not None:
                cpuset = self.backend(cpuset_h).cpuset(cpuset_h, cpuset_cg)
            if cpu_h is not None:
                quota = self.backend(cpu_h).cpu_quota(cpu_h, cpu_cg)
            return CpuSnapshot(cpuset, quota, cpuset_cg, cpu_cg)

        return self._limits.get(("cpu", cpuset_cg, cpu_cg), self.limits_ttl, read)

    def cpu_usage(self, entries: tuple[CgroupEntry, ...]) -> CpuUsage | None:
        """CPU time of the cgroup (``None`` when it is the root: the host's own counters)."""
        h, cg = self.locate(entries, "cpuacct")
        if cg == "/":
            return None
        return self.backend(h).cpu_usage(h, cg)

    def io(self, entries: tuple[CgroupEntry, ...]) -> IoSnapshot | None:
        """Per-device IO (``None``: no source on this kernel, or the root cgroup)."""
        h, cg = self.locate(entries, "blkio")
        if cg == "/":
            return None
        return self.backend(h).io(h, cg)

    def pressure(
        self, entries: tuple[CgroupEntry, ...], resource: str, controller: str
    ) -> str | None:
        """The cgroup's own ``<resource>.pressure`` (v2), or ``None`` (then the host's is right).

        ``controller`` picks the hierarchy (the table of virtual files says which).
        """
        h = self.layout.hierarchy(controller)
        if h is None or h.version != 2:
            return None
        cg = cgroup_of(entries, h)
        if cg == "/":
            return None
        if self.stall is not None:
            self._stall(cg)
        return self.backend(h).pressure(h, cg, resource)

    def tasks(self, h: Hierarchy, cgroup: str, depth: int = 3) -> list[int]:
        """Pids in ``cgroup`` and its descendants down to ``depth`` levels (for loadavg)."""
        pids: list[int] = []
        self._collect(h.directory(cgroup), depth, pids)
        return pids

    def _collect(self, directory: str, depth: int, pids: list[int]) -> None:
        text = read_optional(directory + "/cgroup.procs")
        if text is None:
            return
        pids.extend(int(p) for p in text.split())
        if depth <= 0:
            return
        try:
            with os.scandir(directory) as it:
                children = [e.path for e in it if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return
        for child in children:
            self._collect(child, depth - 1, pids)

"""What every renderer binding draws on: host files, the deciding process, its cgroups.

One :class:`RenderContext` per tree.  It owns the IO the pure renderers of
:mod:`kube_lxcfs.views` must not do: host files (kept ``host_ttl``, so that every
cgroup's render in between shares one text), the deciding process and its
/proc/<pid>/cgroup, the cgroup reader, the render cache keyed by that text and by
the identity of the cgroup directory, the visible-CPU decision and the loadavg
sampler.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kube_lxcfs.cgroups.errors import CgroupUnavailable
from kube_lxcfs.cgroups.hierarchy import Layout, cgroup_of, discover_layout
from kube_lxcfs.cgroups.parse import CgroupEntry, parse_cpu_list, parse_proc_cgroup
from kube_lxcfs.cgroups.process import ProcessResolver
from kube_lxcfs.cgroups.reader import CgroupReader, StallFault, read_optional, read_text
from kube_lxcfs.cgroups.snapshot import MemorySnapshot
from kube_lxcfs.render_cache import CachePolicy, RenderCache
from kube_lxcfs.sampler import LoadavgSampler
from kube_lxcfs.ttl_cache import TtlCache
from kube_lxcfs.vfs import FsOptions
from kube_lxcfs.views.cpus import visible_cpus

Entries = tuple[CgroupEntry, ...]
"""The deciding process's parsed /proc/<pid>/cgroup."""

MAX_CGROUP_DIRS = 4096
"""Remembered cgroup directories (for the identity check); past this, start afresh."""


@dataclass(slots=True)
class ReadNote:
    """What one read did, for the metrics: rendered (not a cache hit), reader in the root cgroup."""

    rendered: bool = False
    root: bool = False


@functools.lru_cache(maxsize=1024)
def is_root_cgroup(text: str) -> bool:
    """Whether /proc/<pid>/cgroup ``text`` puts the process in the root cgroup everywhere
    (systemd's /init.scope counts as root, as the cgroup reader strips it)."""
    return all(e.path in ("/", "/init.scope") for e in parse_proc_cgroup(text))


class RenderContext:
    """The shell around the renderers: host files, processes, cgroups, caches."""

    def __init__(
        self,
        options: FsOptions,
        *,
        clk_tck: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        cache: CachePolicy | None = None,
        stall: StallFault | None = None,
    ) -> None:
        self.options = options
        self.proc_root = options.proc_root.rstrip("/")
        self.sys_root = options.sys_root.rstrip("/")
        self.clk_tck = clk_tck or os.sysconf("SC_CLK_TCK")
        self.clock = clock
        self.layout: Layout = discover_layout(
            read_text(options.mountinfo),
            lambda mount: read_optional(mount + "/cgroup.controllers"),
            self.sys_root,
        )
        self.cache = RenderCache(cache)
        self.cgroups = CgroupReader(self.layout, stall, self.cache.policy.limits_ttl)
        self.processes = ProcessResolver(self.proc_root)
        self.sampler = LoadavgSampler(self._loadavg_tasks, self.proc_root)
        self._host_ttl = self.cache.policy.host_ttl
        self._host_files = TtlCache(self.cache.clock)
        self._identity_hierarchy = next(
            (h for c in ("memory", "cpu", "cpuset") if (h := self.layout.hierarchy(c))), None
        )
        self._cgroup_dirs: dict[str, str] = {}
        self._inodes: dict[str, int] = {}

    @contextlib.contextmanager
    def looking_only(self) -> Iterator[None]:
        """Renders inside use what the caches hold but add nothing to them.

        For a ``stat``'s size: a runtime bind-mounting a container's files stats them
        from the container's cgroup before the container's limits are written; kept,
        that render would answer the container's first reads with no limits.
        """
        self.cache.keeping = self.cgroups.limits.keeping = False
        try:
            yield
        finally:
            self.cache.keeping = self.cgroups.limits.keeping = True

    # --- host files ---------------------------------------------------------------------

    def host_path(self, path: str) -> str:
        """Where a path of the mount (``/proc/...``, ``/sys/...``) is on the host."""
        if path.startswith("/proc/"):
            return self.proc_root + path[5:]
        return self.sys_root + path[4:]

    def host_bytes(self, path: str) -> bytes:
        """The host's file at a path of the mount, read now; empty if it cannot be read."""
        try:
            with open(self.host_path(path), "rb") as f:
                return f.read()
        except OSError:
            return b""

    def host_text(self, name: str) -> str:
        """The host's /proc/``name``, kept for ``host_ttl``: every cgroup's render shares it.

        Sharing the same text object also lets the renderers' memoized parses hit.
        """
        return self._host_file(f"{self.proc_root}/{name}")

    def _host_file(self, path: str) -> str:
        return self._host_files.get(path, self._host_ttl, lambda: read_text(path))

    def host_has(self, path: str) -> bool:
        """Whether the host has the file at a path of the mount."""
        return os.path.exists(self.host_path(path))

    # --- the deciding process and its cgroups -------------------------------------------

    def entries(self, pid: int) -> Entries:
        """The cgroups of the process that decides for reader ``pid``."""
        return self.processes.cgroups(self.processes.deciding_pid(pid, self.options.cgroup_of))

    def render_for_cgroup(
        self,
        key: str,
        pid: int,
        render: Callable[[Entries, int], bytes],
        ttl: float,
        note: ReadNote | None = None,
    ) -> bytes:
        """Render from the deciding process's cgroups, through the render cache.

        The /proc/<pid>/cgroup text is read on every request and is part of the key,
        so a reader that moved to another cgroup never gets the old cgroup's render.
        ``note`` (for the metrics) learns whether this read rendered and whether the
        reader is in the root cgroup.
        """
        text = self.processes.cgroup_text(self.processes.deciding_pid(pid, self.options.cgroup_of))
        if note is not None:
            note.root = is_root_cgroup(text)
        born = self._cgroup_identity(text)  # also when only limits are kept
        if not self.cache.policy.renders:
            if note is not None:
                note.rendered = True
            return render(parse_proc_cgroup(text), pid)
        if note is None:
            return self.cache.get(
                (key, text, born), text, ttl, lambda: render(parse_proc_cgroup(text), pid)
            )

        def counted() -> bytes:
            note.rendered = True
            return render(parse_proc_cgroup(text), pid)

        return self.cache.get((key, text, born), text, ttl, counted)

    def _cgroup_identity(self, text: str) -> int:
        """The inode of the reader's cgroup directory: tells a cgroup from a new one at its path.

        A cgroup removed and created again under the same name (a test harness, a
        restarted systemd unit) has the same /proc/<pid>/cgroup text but a new
        directory; its renders and cached limits must not be the old cgroup's.
        """
        h = self._identity_hierarchy
        if h is None or (not self.cache.policy.renders and self.cgroups.limits_ttl <= 0):
            return 0
        directory = self._cgroup_dirs.get(text)
        if directory is None:
            directory = h.directory(cgroup_of(parse_proc_cgroup(text), h))
            if len(self._cgroup_dirs) >= MAX_CGROUP_DIRS:
                self._cgroup_dirs.clear()
            self._cgroup_dirs[text] = directory
        try:
            inode = os.stat(directory).st_ino
        except FileNotFoundError as exc:
            raise CgroupUnavailable(f"cgroup {directory} is gone") from exc
        if self._inodes.get(directory, inode) != inode:
            self.cgroups.forget_limits()  # a new cgroup at an old path: rare, start afresh
        self._inodes[directory] = inode
        if len(self._inodes) >= MAX_CGROUP_DIRS:
            self._inodes.clear()
        return inode

    # --- decisions shared by several files ----------------------------------------------

    def visible(self, entries: Entries) -> tuple[int, ...]:
        """The CPUs the cgroup may see (cpuset, and the quota with ``cpu_view="quota"``)."""
        cpu = self.cgroups.cpu(entries)
        online = _cpu_list(self._host_file(self.sys_root + "/devices/system/cpu/online"))
        return visible_cpus(cpu.cpuset, cpu.quota, online, self.options.cpu_view)

    def memory(self, entries: Entries, host_meminfo: str) -> MemorySnapshot | None:
        """The reader's memory snapshot; ``None`` for the root cgroup (the host's figures).

        Swap files are read only when swap can show: the option is on and the host
        has swap (most Kubernetes nodes have none).
        """
        want_swap = self.options.swap and _host_has_swap(host_meminfo)
        mem = self.cgroups.memory(entries, swap=want_swap)
        return None if mem.is_root else mem

    def _loadavg_tasks(self, directory: str) -> list[int] | None:
        if not os.path.isdir(directory):
            return None
        h = self.layout.hierarchy("cpu")
        if h is None:
            return None
        cgroup = directory[len(h.mount_point) :] or "/"
        return self.cgroups.tasks(h, cgroup)


@functools.lru_cache(maxsize=16)
def _cpu_list(text: str) -> frozenset[int]:
    return parse_cpu_list(text)


def _host_has_swap(meminfo: str) -> bool:
    """Whether the host's meminfo shows any swap (a cheap scan, no full parse)."""
    at = meminfo.find("SwapTotal:")
    if at < 0:
        return False
    value = meminfo[at + 10 : meminfo.find("\n", at)].split()
    return bool(value) and value[0] != "0"

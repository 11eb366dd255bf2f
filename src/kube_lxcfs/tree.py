"""The virtual tree: lxcfs's layout, each file rendered for the process that reads it.

The path of one read: ``read(path, pid)`` → the deciding process (the reader, or its
pid-namespace init with ``cgroup_of="init"``) → its /proc/<pid>/cgroup → a typed
snapshot from :class:`~kube_lxcfs.cgroups.reader.CgroupReader` → a pure renderer in
:mod:`kube_lxcfs.views` → bytes.  Any fault on the way serves the host's file and
is logged once per (file, cause).

Files that depend only on the reader's cgroups are kept for a few milliseconds per
(file, /proc/<pid>/cgroup text) by :class:`~kube_lxcfs.render_cache.RenderCache`,
which also keeps a slow cgroup from holding the request loop.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable

from kube_lxcfs.cgroups.errors import CgroupUnavailable
from kube_lxcfs.cgroups.hierarchy import Layout, cgroup_of, discover_layout
from kube_lxcfs.cgroups.parse import (
    CgroupEntry,
    parse_cpu_list,
    parse_meminfo_kb,
    parse_proc_cgroup,
    parse_uptime,
)
from kube_lxcfs.cgroups.process import ProcessResolver
from kube_lxcfs.cgroups.reader import CgroupReader, StallFault, read_text
from kube_lxcfs.cgroups.snapshot import MemorySnapshot
from kube_lxcfs.render_cache import CachePolicy, RenderCache
from kube_lxcfs.sampler import LoadavgSampler
from kube_lxcfs.vfs import FsOptions, Node
from kube_lxcfs.views.cpuinfo import render_cpuinfo
from kube_lxcfs.views.cpus import visible_cpus
from kube_lxcfs.views.diskstats import render_diskstats
from kube_lxcfs.views.loadavg import FIXED_1, Loads, render_loadavg
from kube_lxcfs.views.meminfo import HOST_KEYS, memory_figures, render_meminfo
from kube_lxcfs.views.pressure import render_pressure
from kube_lxcfs.views.stat import render_stat
from kube_lxcfs.views.swaps import render_swaps
from kube_lxcfs.views.sysfs_cpu import render_cpu_online, render_offline, render_online
from kube_lxcfs.views.sysinfo import SysinfoValues
from kube_lxcfs.views.uptime import render_uptime

log = logging.getLogger(__name__)

PROC_FILES = ("cpuinfo", "diskstats", "loadavg", "meminfo", "stat", "swaps", "uptime", "slabinfo")
PRESSURE_FILES = ("cpu", "io", "memory")
CPU_DIR = "/sys/devices/system/cpu"
_CPU_ONLINE = re.compile(r"^/sys/devices/system/cpu/cpu(\d+)/online$")
_CPU_NAME = re.compile(r"^cpu\d+$")
_SYS_PARENTS = {"/sys": "devices", "/sys/devices": "system", "/sys/devices/system": "cpu"}

Entries = tuple[CgroupEntry, ...]
CgroupRender = Callable[[Entries], bytes]
"""Renders a file from the deciding process's parsed /proc/<pid>/cgroup alone."""

MAX_CGROUP_DIRS = 4096
"""Remembered cgroup directories (for the identity check); past this, start afresh."""

DIR = Node("dir", 0o555)
PROC_FILE = Node("file", 0o444)


def _read_optional(path: str) -> str | None:
    try:
        return read_text(path)
    except FileNotFoundError:
        return None


class ProcTree:
    """lxcfs's tree (``proc/...`` and ``sys/devices/system/cpu/...``), per-reader content.

    Implements :class:`kube_lxcfs.vfs.VirtualTree`; :meth:`start`/:meth:`close` run
    the loadavg sampler thread.
    """

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
            lambda mount: _read_optional(mount + "/cgroup.controllers"),
            self.sys_root,
        )
        self.cache = RenderCache(cache)
        self.cgroups = CgroupReader(self.layout, stall, self.cache.policy.limits_ttl)
        self.processes = ProcessResolver(self.proc_root)
        self.sampler = LoadavgSampler(self._loadavg_tasks, self.proc_root)
        self._host_ttl = self.cache.policy.host_ttl
        self._identity_hierarchy = next(
            (h for c in ("memory", "cpu", "cpuset") if (h := self.layout.hierarchy(c))), None
        )
        self._cgroup_dirs: dict[str, str] = {}
        self._inodes: dict[str, int] = {}
        self._host_files: dict[str, tuple[float, str]] = {}
        self._logged: set[tuple[str, str]] = set()
        self._log_lock = threading.Lock()
        usage_ttl = self.cache.policy.usage_ttl
        limits_ttl = self.cache.policy.limits_ttl
        self._proc: dict[str, Callable[[int], bytes]] = {
            "/proc/uptime": self._uptime,
            "/proc/loadavg": self._loadavg,
            "/proc/slabinfo": lambda pid: self._host("slabinfo"),
        }
        """Files that need more than the reader's cgroups (rendered on every read)."""
        self._by_cgroup: dict[str, tuple[CgroupRender, float]] = {
            "/proc/meminfo": (self._meminfo, usage_ttl),
            "/proc/swaps": (self._swaps, usage_ttl),
            "/proc/cpuinfo": (self._cpuinfo, limits_ttl),
            "/proc/stat": (self._stat, usage_ttl),
            "/proc/diskstats": (self._diskstats, usage_ttl),
            CPU_DIR + "/online": (self._cpus_online, limits_ttl),
            CPU_DIR + "/offline": (self._cpus_offline, limits_ttl),
        }
        """Files rendered from the reader's cgroups alone, with how long a render is kept."""
        for resource in PRESSURE_FILES:
            self._by_cgroup[f"/proc/pressure/{resource}"] = (
                self._pressure_renderer(resource),
                usage_ttl,
            )

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start background work (the loadavg sampler) if the options ask for it."""
        if self.options.loadavg:
            self.sampler.start(self.clock)

    def close(self) -> None:
        """Stop background work; idempotent."""
        self.sampler.close()

    # --- VirtualTree --------------------------------------------------------------------

    def lookup(self, path: str) -> Node | None:
        """The node at ``path`` or ``None``."""
        if path in ("/", "/proc", *_SYS_PARENTS):
            return DIR
        if path.startswith("/proc/"):
            if path == "/proc/pressure":
                return DIR if self._has_pressure() else None
            if path in self._proc or path in self._by_cgroup:
                if path.startswith("/proc/pressure/"):
                    return PROC_FILE if self._host_has("pressure/" + path[15:]) else None
                return PROC_FILE
            return None
        if path == CPU_DIR or path.startswith(CPU_DIR + "/"):
            return self._sys_node(path)
        return None

    def listdir(self, path: str) -> list[str]:
        """Names in directory ``path``."""
        if path == "/":
            return ["proc", "sys"]
        if path == "/proc":
            return list(PROC_FILES) + (["pressure"] if self._has_pressure() else [])
        if path == "/proc/pressure":
            return [r for r in PRESSURE_FILES if self._host_has("pressure/" + r)]
        if path in _SYS_PARENTS:
            return [_SYS_PARENTS[path]]
        if path == CPU_DIR or path.startswith(CPU_DIR + "/"):
            try:
                names = os.listdir(self._host_sys(path))
            except OSError:
                return []
            if _CPU_NAME.match(os.path.basename(path)) and "online" not in names:
                names.append("online")
            return names
        return []

    def read(self, path: str, pid: int) -> bytes:
        """The content of ``path`` for process ``pid``; the host's on any fault."""
        by_cgroup = self._by_cgroup.get(path)
        try:
            if by_cgroup is not None:
                return self._read_by_cgroup(path, pid, *by_cgroup)
            render = self._proc.get(path)
            if render is not None:
                return render(pid)
            if not path.startswith(CPU_DIR + "/") or "/.." in path:
                return b""  # not a served file: never read anything outside the mirror
            match = _CPU_ONLINE.match(path)
            if match:
                cpu = int(match.group(1))
                return self._read_by_cgroup(
                    path,
                    pid,
                    lambda entries: render_cpu_online(cpu, self._visible(entries)),
                    self.cache.policy.limits_ttl,
                )
            return self._sys_passthrough(path)
        except Exception as exc:
            self._log_once(path, exc)
            return self._host_fallback(path)

    def _read_by_cgroup(self, path: str, pid: int, render: CgroupRender, ttl: float) -> bytes:
        """Render from the deciding process's cgroups, through the render cache.

        The /proc/<pid>/cgroup text is read on every request and is part of the key,
        so a reader that moved to another cgroup never gets the old cgroup's render.
        """
        text = self.processes.cgroup_text(self.processes.deciding_pid(pid, self.options.cgroup_of))
        born = self._cgroup_identity(text)  # also when only limits are kept
        if not self.cache.policy.renders:
            return render(parse_proc_cgroup(text))
        return self.cache.get(
            (path, text, born), text, ttl, lambda: render(parse_proc_cgroup(text))
        )

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

    # --- helpers ------------------------------------------------------------------------

    def _log_once(self, path: str, exc: Exception) -> None:
        key = (path, type(exc).__name__)
        with self._log_lock:
            if key in self._logged:
                return
            self._logged.add(key)
        log.warning("%s: serving the host's file: %s: %s", path, type(exc).__name__, exc)

    def _host(self, name: str) -> bytes:
        try:
            with open(f"{self.proc_root}/{name}", "rb") as f:
                return f.read()
        except OSError:
            return b""

    def _host_text(self, name: str) -> str:
        return self._host_file(f"{self.proc_root}/{name}")

    def _host_file(self, path: str) -> str:
        """A host file, kept for ``host_ttl``: every cgroup's render in between shares it.

        Sharing the same text object also lets the renderers' memoized parses hit.
        """
        now = self.cache.clock()
        hit = self._host_files.get(path)
        if hit is not None and now - hit[0] < self._host_ttl:
            return hit[1]
        text = read_text(path)
        if self._host_ttl > 0:
            self._host_files[path] = (now, text)
        return text

    def _host_has(self, name: str) -> bool:
        return os.path.exists(f"{self.proc_root}/{name}")

    def _has_pressure(self) -> bool:
        return any(self._host_has("pressure/" + r) for r in PRESSURE_FILES)

    def _host_sys(self, path: str) -> str:
        return self.sys_root + path[4:]

    def _host_fallback(self, path: str) -> bytes:
        if path.startswith("/proc/"):
            return self._host(path[6:])
        try:
            with open(self._host_sys(path), "rb") as f:
                return f.read()
        except OSError:
            return b""

    def _entries(self, pid: int) -> Entries:
        return self.processes.cgroups(self.processes.deciding_pid(pid, self.options.cgroup_of))

    def _host_online(self) -> frozenset[int]:
        return _cpu_list(self._host_file(self.sys_root + "/devices/system/cpu/online"))

    def _visible(self, entries: Entries) -> tuple[int, ...]:
        cpu = self.cgroups.cpu(entries)
        return visible_cpus(cpu.cpuset, cpu.quota, self._host_online(), self.options.cpu_view)

    # --- /proc renderers ----------------------------------------------------------------

    def _memory(self, entries: Entries, host_meminfo: str) -> MemorySnapshot | None:
        """The reader's memory snapshot; ``None`` for the root cgroup (the host's figures).

        Swap files are read only when swap can show: the option is on and the host
        has swap (most Kubernetes nodes have none).
        """
        want_swap = self.options.swap and _host_has_swap(host_meminfo)
        mem = self.cgroups.memory(entries, swap=want_swap)
        return None if mem.is_root else mem

    def _meminfo(self, entries: Entries) -> bytes:
        host = self._host_text("meminfo")
        return render_meminfo(host, self._memory(entries, host), swap=self.options.swap)

    def _swaps(self, entries: Entries) -> bytes:
        host = self._host_text("meminfo")
        mem = self._memory(entries, host)
        return render_swaps(host, self._host_text("swaps"), mem, swap=self.options.swap)

    def _cpuinfo(self, entries: Entries) -> bytes:
        return render_cpuinfo(self._host_text("cpuinfo"), self._visible(entries))

    def _stat(self, entries: Entries) -> bytes:
        visible = self._visible(entries)
        usage = self.cgroups.cpu_usage(entries)
        uptime = parse_uptime(self._host_text("uptime"))[0]
        return render_stat(
            self._host_text("stat"), visible, usage, clk_tck=self.clk_tck, uptime=uptime
        )

    def _uptime(self, pid: int) -> bytes:
        init = self.processes.namespace_init(pid)
        if init == 1:
            return self._host("uptime")
        now = parse_uptime(self._host_text("uptime"))[0]
        entries = self.processes.cgroups(init)
        usage = self.cgroups.cpu_usage(entries)
        cpus = len(self._visible(entries))
        return render_uptime(
            now,
            self.processes.starttime(init),
            self.clk_tck,
            None if usage is None else usage.total,
            cpus,
        )

    def _loadavg(self, pid: int) -> bytes:
        if not self.options.loadavg:
            return self._host("loadavg")
        # The sampler advances every 5 s: a render kept for the usage period is exact.
        return self._read_by_cgroup(
            "/proc/loadavg",
            pid,
            lambda entries: self._cgroup_loadavg(entries, pid),
            self.cache.policy.usage_ttl,
        )

    def _cgroup_loadavg(self, entries: Entries, pid: int) -> bytes:
        h, cg = self.cgroups.locate(entries, "cpu")
        if cg == "/":
            return self._host("loadavg")
        return render_loadavg(self.sampler.observe(h.directory(cg), self.clock(), pid))

    def _loadavg_tasks(self, directory: str) -> list[int] | None:
        if not os.path.isdir(directory):
            return None
        h = self.layout.hierarchy("cpu")
        if h is None:
            return None
        cgroup = directory[len(h.mount_point) :] or "/"
        return self.cgroups.tasks(h, cgroup)

    def _diskstats(self, entries: Entries) -> bytes:
        io = self.cgroups.io(entries)
        return render_diskstats(self._host_text("diskstats"), io)

    def _pressure_renderer(self, resource: str) -> CgroupRender:
        def render(entries: Entries) -> bytes:
            own = self.cgroups.pressure(entries, resource)
            return render_pressure(self._host_text("pressure/" + resource), own)

        return render

    # --- sysinfo(2) (for the seccomp listener of kube_lxcfs.runtime) ----------------------

    def sysinfo(self, pid: int) -> SysinfoValues:
        """What sysinfo(2) must tell ``pid``: the same figures as its meminfo and loadavg.

        Raises on faults (the listener then lets the call through to the host).
        """
        host_text = self._host_text("meminfo")
        mem = self._memory(self._entries(pid), host_text)
        if mem is None:
            kb = parse_meminfo_kb(host_text, HOST_KEYS | {"Shmem", "Buffers"})
            if not self.options.swap:
                kb["SwapTotal"] = kb["SwapFree"] = 0
        else:
            kb = memory_figures(
                parse_meminfo_kb(host_text, HOST_KEYS), mem, self.options.swap
            ).lines
        uptime = float(self._uptime(pid).split()[0])
        loads = self._loads(pid)
        return SysinfoValues(
            uptime=int(uptime),
            loads=(loads.avg1, loads.avg5, loads.avg15),
            totalram=kb["MemTotal"] * 1024,
            freeram=kb["MemFree"] * 1024,
            sharedram=kb.get("Shmem", 0) * 1024,
            bufferram=kb.get("Buffers", 0) * 1024,
            totalswap=kb.get("SwapTotal", 0) * 1024,
            freeswap=kb.get("SwapFree", 0) * 1024,
            procs=loads.total,
        )

    def _loads(self, pid: int) -> Loads:
        if self.options.loadavg:
            h, cg = self.cgroups.locate(self._entries(pid), "cpu")
            if cg != "/":
                return self.sampler.observe(h.directory(cg), self.clock(), pid)
        fields = self._host_text("loadavg").split()
        running, _, total = fields[3].partition("/")
        a1, a5, a15 = (round(float(v) * FIXED_1) for v in fields[:3])
        return Loads(a1, a5, a15, int(running), int(total), int(fields[4]))

    # --- /sys/devices/system/cpu --------------------------------------------------------

    def _sys_node(self, path: str) -> Node | None:
        try:
            st = os.lstat(self._host_sys(path))
        except OSError:
            match = _CPU_ONLINE.match(path)
            if match and os.path.isdir(self._host_sys(os.path.dirname(path))):
                return Node("file", 0o444, size=4096)
            return None
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            return Node("dir", mode)
        if stat.S_ISLNK(st.st_mode):
            return Node("symlink", 0o777, target=os.readlink(self._host_sys(path)))
        return Node("file", mode, size=st.st_size)

    def _cpus_online(self, entries: Entries) -> bytes:
        return render_online(self._visible(entries))

    def _cpus_offline(self, entries: Entries) -> bytes:
        possible = parse_cpu_list(read_text(self.sys_root + "/devices/system/cpu/possible"))
        return render_offline(possible, self._visible(entries))

    def _sys_passthrough(self, path: str) -> bytes:
        try:
            with open(self._host_sys(path), "rb") as f:
                return f.read()
        except OSError:
            return b""  # sysfs files that fail on the host read as empty (as in lxcfs)


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


def build_tree(options: FsOptions) -> ProcTree:
    """The tree the ``fs`` daemon serves; call ``start()`` before serving, ``close()`` after.

    Honours ``KUBE_LXCFS_CACHE=off`` (:data:`kube_lxcfs.render_cache.CACHE_ENV`) and
    the ``KUBE_LXCFS_FAULT_STALL`` fault injection
    (:data:`kube_lxcfs.cgroups.reader.FAULT_STALL_ENV`), both for benchmarks and tests.
    """
    return ProcTree(options, cache=CachePolicy.from_env(), stall=StallFault.from_env())


__all__ = ["CPU_DIR", "PRESSURE_FILES", "PROC_FILES", "CgroupUnavailable", "ProcTree", "build_tree"]

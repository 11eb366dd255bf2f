"""The virtual tree: lxcfs's layout, each file rendered for the process that reads it.

Routing over the table of virtual files (:data:`kube_lxcfs.files.FILES`): a row
says where a file is, which binding of :mod:`kube_lxcfs.table` renders it, how long
a render is kept, whose view it shows and when it exists.  The path of one read:
``read(path, pid)`` → its row → the deciding process (the reader, or its
pid-namespace init with ``cgroup_of="init"``) → its /proc/<pid>/cgroup → a typed
snapshot from :class:`~kube_lxcfs.cgroups.reader.CgroupReader` → a pure renderer in
:mod:`kube_lxcfs.views` → bytes.  Any fault on the way serves the host's file and
is logged once per (file, cause).

Files that depend only on the reader's cgroups are kept for a few milliseconds per
(file, /proc/<pid>/cgroup text) by :class:`~kube_lxcfs.render_cache.RenderCache`,
which also keeps a slow cgroup from holding the request loop.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kube_lxcfs.cgroups.errors import CgroupUnavailable
from kube_lxcfs.cgroups.reader import StallFault
from kube_lxcfs.context import RenderContext
from kube_lxcfs.files import (
    CPU_DIR,
    DIRECTORIES,
    FILES,
    Freshness,
    Presence,
    Scope,
    VirtualFile,
)
from kube_lxcfs.render_cache import CachePolicy
from kube_lxcfs.sys_mirror import SysMirror, path_pattern
from kube_lxcfs.sysinfo import sysinfo_values
from kube_lxcfs.table import bound
from kube_lxcfs.vfs import FsOptions, Node
from kube_lxcfs.views.sysinfo import SysinfoValues

log = logging.getLogger(__name__)

DIR = Node("dir", 0o555)
PROC_FILE = Node("file", 0o444)


@dataclass(frozen=True, slots=True)
class _Served:
    """A row of the table, bound: what ``read`` does for its path."""

    file: VirtualFile
    scope: Scope
    """The row's scope, or ``HOST`` when the row's option is off."""
    render: Callable[..., bytes]
    """The row's binding with the context and the row filled in (unused for ``HOST``)."""
    ttl: float


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
        self.context = RenderContext(
            options, clk_tck=clk_tck, clock=clock, cache=cache, stall=stall
        )
        ctx = self.context
        policy = ctx.cache.policy
        ttls = {Freshness.USAGE: policy.usage_ttl, Freshness.LIMITS: policy.limits_ttl}
        self._files: dict[str, _Served] = {}
        self._patterns: list[tuple[re.Pattern[str], _Served]] = []
        for f in FILES:
            scope = f.scope
            if f.option is not None and not getattr(options, f.option):
                scope = Scope.HOST
            render = _host_only if scope is Scope.HOST else _bind(ctx, f)
            served = _Served(f, scope, render, ttls.get(f.freshness, 0.0))
            if "{n}" in f.path:
                self._patterns.append((path_pattern(f.path), served))
            else:
                self._files[f.path] = served
        mirrors = [d for d in DIRECTORIES if d.mirror]
        assert [d.path for d in mirrors] == [CPU_DIR], "one mirror, /sys/devices/system/cpu"
        self.mirror = SysMirror(
            CPU_DIR,
            ctx.host_path(CPU_DIR),
            tuple(f.path for f in FILES if f.present is Presence.HOST_CPU),
        )
        self._children = _directories(p for p in self._files if not self.mirror.covers(p))
        self._conditional = frozenset(d for d in self._children if _all_conditional(d, FILES))
        """Directories that exist only while one of their files does (/proc/pressure)."""
        self._logged: set[tuple[str, str]] = set()
        self._log_lock = threading.Lock()

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start background work (the loadavg sampler) if the options ask for it."""
        if self.options.loadavg:
            self.context.sampler.start(self.context.clock)

    def close(self) -> None:
        """Stop background work; idempotent."""
        self.context.sampler.close()

    # --- VirtualTree --------------------------------------------------------------------

    def lookup(self, path: str) -> Node | None:
        """The node at ``path`` or ``None``."""
        if self.mirror.covers(path):
            return self.mirror.lookup(path)
        served = self._files.get(path)
        if served is not None:
            return PROC_FILE if self._present(served.file) else None
        if path in self._children:
            return DIR if self._exists(path) else None
        return None

    def listdir(self, path: str) -> list[str]:
        """Names in directory ``path``."""
        if self.mirror.covers(path):
            return self.mirror.listdir(path)
        prefix = path.rstrip("/") + "/"
        return [name for name in self._children.get(path, ()) if self._exists(prefix + name)]

    def read(self, path: str, pid: int) -> bytes:
        """The content of ``path`` for process ``pid``; the host's on any fault."""
        served = self._files.get(path)
        try:
            if served is None:
                served = self._per_cpu(path)
                if served is None:
                    return self.mirror.read(path)  # b"" for anything outside the mirror
            if served.scope is Scope.CGROUP:
                return self.context.render_for_cgroup(path, pid, served.render, served.ttl)
            if served.scope is Scope.PID_NAMESPACE:
                return served.render(pid)
            return self.context.host_bytes(path)
        except Exception as exc:
            self._log_once(path, exc)
            return self.context.host_bytes(path)

    # --- sysinfo(2), for the seccomp listener of kube_lxcfs.runtime -----------------------

    def sysinfo(self, pid: int) -> SysinfoValues:
        """What sysinfo(2) must tell ``pid``: the same figures as its meminfo and loadavg.

        Raises on faults (the listener then lets the call through to the host).
        """
        return sysinfo_values(self.context, pid)

    # --- helpers ------------------------------------------------------------------------

    def _per_cpu(self, path: str) -> _Served | None:
        """The row of a per-CPU file (``cpuN/online``), bound to this CPU's path."""
        if not path.startswith(CPU_DIR + "/") or "/.." in path:
            return None
        for pattern, served in self._patterns:
            if pattern.match(path):
                file = dataclasses.replace(served.file, path=path)
                return dataclasses.replace(served, file=file, render=_bind(self.context, file))
        return None

    def _present(self, file: VirtualFile) -> bool:
        if file.present is Presence.HOST_FILE:
            return self.context.host_has(file.path)
        return True

    def _exists(self, path: str) -> bool:
        """Files by their row's presence; a directory whose files all depend on the host
        (/proc/pressure) while one of them exists; other directories always."""
        served = self._files.get(path)
        if served is not None:
            return self._present(served.file)
        if path in self._conditional:
            return any(self._exists(f"{path}/{name}") for name in self._children[path])
        return True

    def _log_once(self, path: str, exc: Exception) -> None:
        key = (path, type(exc).__name__)
        with self._log_lock:
            if key in self._logged:
                return
            self._logged.add(key)
        log.warning("%s: serving the host's file: %s: %s", path, type(exc).__name__, exc)


def _bind(ctx: RenderContext, file: VirtualFile) -> Callable[..., bytes]:
    if file.render is None:
        raise ValueError(f"{file.path}: only a host-scoped row may have no renderer")
    return functools.partial(bound(file.render), ctx, file)


def _host_only(*args: object) -> bytes:
    raise AssertionError("a host-scoped file has no renderer")


def _all_conditional(directory: str, files: tuple[VirtualFile, ...]) -> bool:
    """Whether ``directory`` has files of the table, none of them always present."""
    below = [f for f in files if f.path.startswith(directory.rstrip("/") + "/")]
    return bool(below) and all(f.present is Presence.HOST_FILE for f in below)


def _directories(paths: Iterable[str]) -> dict[str, list[str]]:
    """Directory → its children's names, in table order, for every parent of ``paths``."""
    children: dict[str, list[str]] = {}
    for path in [*paths, CPU_DIR]:
        parts = path.strip("/").split("/")
        for i in range(len(parts)):
            parent = "/" + "/".join(parts[:i])
            names = children.setdefault(parent, [])
            if parts[i] not in names:
                names.append(parts[i])
    return children


def build_tree(options: FsOptions) -> ProcTree:
    """The tree the ``fs`` daemon serves; call ``start()`` before serving, ``close()`` after.

    Honours ``KUBE_LXCFS_CACHE=off`` (:data:`kube_lxcfs.render_cache.CACHE_ENV`) and
    the ``KUBE_LXCFS_FAULT_STALL`` fault injection
    (:data:`kube_lxcfs.cgroups.reader.FAULT_STALL_ENV`), both for benchmarks and tests.
    """
    return ProcTree(options, cache=CachePolicy.from_env(), stall=StallFault.from_env())


__all__ = ["CgroupUnavailable", "ProcTree", "build_tree"]

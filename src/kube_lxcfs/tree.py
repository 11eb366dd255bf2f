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

from kube_lxcfs.cgroups.errors import CgroupError, CgroupUnavailable, ProcessGone
from kube_lxcfs.cgroups.reader import StallFault
from kube_lxcfs.context import ReadNote, RenderContext
from kube_lxcfs.files import (
    CPU_DIR,
    DIRECTORIES,
    FILES,
    Freshness,
    Presence,
    Scope,
    VirtualFile,
)
from kube_lxcfs.render_cache import CachePolicy, CgroupSlow
from kube_lxcfs.sys_mirror import SysMirror, path_pattern
from kube_lxcfs.sysinfo import sysinfo_values
from kube_lxcfs.table import bound
from kube_lxcfs.vfs import FsOptions, HostAnswerRefused, Node
from kube_lxcfs.views.sysinfo import SysinfoValues

log = logging.getLogger(__name__)

DIR = Node("dir", 0o555)
PROC_FILE = Node("file", 0o444, per_reader_size=True)

MIRROR_LABEL = CPU_DIR + "/*"
"""The metrics' file label of every mirrored host file outside the table."""

ON_RENDER_ERROR = ("host", "eio")
"""``--on-render-error``: serve the host's file (lxcfs's behaviour) or fail the read."""


ReadObserver = Callable[[str, str, "str | None", float, int], None]
"""Called after every read (metrics): table path, outcome, host cause, render seconds, pid.

Outcomes: ``rendered``, ``cache_hit``, ``host`` (the host's file: a host-scoped row, or a
cause below), ``eio`` (a refused host answer).  Causes of a host answer: ``root_cgroup``,
``vanished_process``, ``cgroup_error``, ``slow_cgroup``, ``bug``; ``None`` otherwise.
Render seconds are 0.0 unless the read rendered."""


def fault_cause(exc: BaseException) -> str:
    """The metrics' cause of a render that failed with ``exc``."""
    if isinstance(exc, CgroupSlow):
        return "slow_cgroup"
    if isinstance(exc, ProcessGone):
        return "vanished_process"
    if isinstance(exc, (CgroupError, OSError)):
        return "cgroup_error"
    return "bug"


@dataclass(frozen=True, slots=True)
class _Served:
    """A row of the table, bound: what ``read`` does for its path."""

    file: VirtualFile
    scope: Scope
    """The row's scope, or ``HOST`` when the row's option is off."""
    render: Callable[..., bytes]
    """The row's binding with the context and the row filled in (unused for ``HOST``)."""
    ttl: float
    label: str
    """The row's path in the table (``cpu{n}`` for per-CPU files): the metrics' file label."""


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
        ttls = {Freshness.USAGE: policy.usage_ttl, Freshness.LIMITS: policy.limit_renders_ttl}
        self._files: dict[str, _Served] = {}
        self._patterns: list[tuple[re.Pattern[str], _Served]] = []
        for f in FILES:
            scope = f.scope
            if f.option is not None and not getattr(options, f.option):
                scope = Scope.HOST
            render = _host_only if scope is Scope.HOST else _bind(ctx, f)
            served = _Served(f, scope, render, ttls.get(f.freshness, 0.0), f.path)
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
        self.observer: ReadObserver | None = None
        """Told about every read (kube_lxcfs.fuse.metrics sets it); ``None``: no counting."""

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

    def text_length(self, path: str, pid: int) -> int:
        """``len(read(path, pid))`` now, keeping nothing for later reads (and not counted
        as a read): see :meth:`kube_lxcfs.context.RenderContext.looking_only`."""
        with self.context.looking_only():
            return len(self._read(path, pid, None))

    def read(self, path: str, pid: int) -> bytes:
        """The content of ``path`` for process ``pid``; the host's on any fault.

        With ``on_render_error="eio"`` a fault raises :class:`HostAnswerRefused` instead.
        """
        observe = self.observer
        if observe is None:
            return self._read(path, pid, None)
        note = _Note()
        started = time.perf_counter()
        try:
            data = self._read(path, pid, note)
        except HostAnswerRefused:
            observe(note.label, "eio", note.cause, 0.0, pid)
            raise
        if note.cause is not None:
            outcome = "host"
        elif note.rendered:
            outcome = "rendered"
        elif note.scope is Scope.CGROUP:
            outcome = "cache_hit"
        else:
            outcome = "host"
        took = time.perf_counter() - started if outcome == "rendered" else 0.0
        observe(note.label, outcome, note.cause, took, pid)
        return data

    def _read(self, path: str, pid: int, note: _Note | None) -> bytes:
        served = self._files.get(path)
        try:
            if served is None:
                served = self._per_cpu(path)
                if served is None:
                    if note is not None:
                        note.label = MIRROR_LABEL
                    return self.mirror.read(path)  # b"" for anything outside the mirror
            if note is not None:
                note.label = served.label
                note.scope = served.scope
            if served.scope is Scope.CGROUP:
                data = self.context.render_for_cgroup(path, pid, served.render, served.ttl, note)
                if note is not None and note.root:
                    note.cause = "root_cgroup"
                return data
            if served.scope is Scope.PID_NAMESPACE:
                if note is not None:
                    note.rendered = True
                return served.render(pid)
            return self.context.host_bytes(path)
        except Exception as exc:
            self._log_once(path, exc)
            if note is not None:
                note.cause = fault_cause(exc)
                note.rendered = False
            if self.options.on_render_error == "eio":
                raise HostAnswerRefused(path) from exc
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


class _Note(ReadNote):
    """A :class:`ReadNote` plus what the tree learns on the way (label, scope, host cause)."""

    __slots__ = ("cause", "label", "scope")

    def __init__(self) -> None:
        super().__init__()
        self.label = ""
        self.scope: Scope | None = None
        self.cause: str | None = None


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


__all__ = ["CgroupUnavailable", "HostAnswerRefused", "ProcTree", "build_tree"]

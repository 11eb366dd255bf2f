"""The table of virtual files: every file kube-lxcfs serves, one row each, in one place.

Everything else derives from these rows: the tree's ``lookup``/``listdir``/``read``
and how long a render is kept (:mod:`kube_lxcfs.table` binds each row's ``render``
name to a renderer), the files the webhook and the runtime wrapper mount by default,
the ``--help`` lists and the docs' tables (:mod:`kube_lxcfs.files_text`).

Standard library only and free of the renderers: the runtime wrapper
(``kube-lxcfs-runc``, a zipapp of stdlib-only modules) imports it for its default
file list, on every container start.  Where the files are mounted on a node
(``/var/lib/lxcfs``) is :mod:`kube_lxcfs.defaults`'s.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Freshness(str, enum.Enum):  # noqa: UP042 (StrEnum is 3.11; the wrapper runs on 3.10)
    """How long a render may be kept (the periods are ``render_cache.CachePolicy``'s)."""

    USAGE = "usage"
    """Shows usage (memory in use, CPU time): kept at most 250 ms."""
    LIMITS = "limits"
    """Shows only limits (cpuset, CPU quota): kept at most 1 s."""
    PER_READ = "per-read"
    """Rendered on every read."""


class Scope(str, enum.Enum):  # noqa: UP042 (StrEnum is 3.11; the wrapper runs on 3.10)
    """Whose view a file shows."""

    CGROUP = "cgroup"
    """The deciding process's cgroups (the reader, or its namespace init with --cgroup-of init)."""
    PID_NAMESPACE = "pid-namespace"
    """The reader's pid namespace (its init's start time and cgroup)."""
    HOST = "host"
    """The host's file, unchanged."""


class Presence(str, enum.Enum):  # noqa: UP042 (StrEnum is 3.11; the wrapper runs on 3.10)
    """When a file exists in the mount."""

    ALWAYS = "always"
    HOST_FILE = "host-file"
    """Only where the host has the file (/proc/pressure/* needs a PSI kernel)."""
    HOST_CPU = "host-cpu"
    """For every CPU directory the host's sysfs has (cpuN/online, added where the host has none)."""


@dataclass(frozen=True, slots=True)
class VirtualFile:
    """One served file."""

    path: str
    """Absolute inside the mount; ``{n}`` stands for a CPU number (one file per host CPU)."""
    render: str | None
    """Name of its renderer in :mod:`kube_lxcfs.table`; ``None``: the host's file."""
    freshness: Freshness
    scope: Scope
    about: str
    """One line for the docs and ``--help``: what the reader sees."""
    present: Presence = Presence.ALWAYS
    inject: bool = False
    """Mounted by default by the webhook, the runtime wrapper and ``kube-lxcfs run``."""
    controller: str | None = None
    """The cgroup controller whose hierarchy answers (when the renderer needs to be told)."""
    option: str | None = None
    """The ``FsOptions`` flag that turns it on; off, the host's file is served."""

    @property
    def relative(self) -> str:
        """The path under the mount directory, e.g. ``proc/meminfo``."""
        return self.path.lstrip("/")


@dataclass(frozen=True, slots=True)
class VirtualDir:
    """A directory of the tree that a pod may mount as a whole."""

    path: str
    about: str
    inject: bool = False
    mirror: bool = False
    """A mirror of the host's directory of the same path (with the table's files rendered)."""


U, L, R = Freshness.USAGE, Freshness.LIMITS, Freshness.PER_READ
CG, NS, HOST = Scope.CGROUP, Scope.PID_NAMESPACE, Scope.HOST

FILES: tuple[VirtualFile, ...] = (
    VirtualFile("/proc/cpuinfo", "cpuinfo", L, CG, "a processor block per visible CPU",
                inject=True),
    VirtualFile("/proc/diskstats", "diskstats", U, CG, "the cgroup's IO per device", inject=True),
    VirtualFile("/proc/meminfo", "meminfo", U, CG, "memory and swap: limit, usage, cache",
                inject=True),
    VirtualFile("/proc/stat", "stat", U, CG, "visible CPUs, the cgroup's CPU time", inject=True),
    VirtualFile("/proc/swaps", "swaps", U, CG, "the cgroup's swap limit and usage", inject=True),
    VirtualFile("/proc/uptime", "uptime", R, NS, "since the pid namespace's init started",
                inject=True),
    VirtualFile("/proc/loadavg", "loadavg", U, CG, "the cgroup's sampled load", inject=True,
                option="loadavg"),
    VirtualFile("/proc/slabinfo", None, R, HOST, "the host's (as lxcfs)"),
    VirtualFile("/proc/pressure/cpu", "pressure", U, CG, "the cgroup's PSI (v2)",
                present=Presence.HOST_FILE, controller="cpu"),
    VirtualFile("/proc/pressure/io", "pressure", U, CG, "the cgroup's PSI (v2)",
                present=Presence.HOST_FILE, controller="blkio"),
    VirtualFile("/proc/pressure/memory", "pressure", U, CG, "the cgroup's PSI (v2)",
                present=Presence.HOST_FILE, controller="memory"),
    VirtualFile("/sys/devices/system/cpu/online", "cpus_online", L, CG, "the visible CPUs"),
    VirtualFile("/sys/devices/system/cpu/offline", "cpus_offline", L, CG,
                "possible CPUs that are not visible"),
    VirtualFile("/sys/devices/system/cpu/cpu{n}/online", "cpu_online", L, CG,
                "1 for a visible CPU, else 0", present=Presence.HOST_CPU),
)  # fmt: skip
"""Every rendered or passed-through file, in listing order."""

DIRECTORIES: tuple[VirtualDir, ...] = (
    VirtualDir("/proc/pressure", "present when the host has a PSI file"),
    VirtualDir("/sys/devices/system/cpu", "the host's directory; the files above rendered",
               inject=True, mirror=True),
)  # fmt: skip
"""Directories a pod may mount as a whole (the rest of the tree is their parents)."""

CPU_DIR = "/sys/devices/system/cpu"


def injected_files() -> tuple[str, ...]:
    """The default list to mount, relative to the mount dir; a trailing ``/`` marks a directory."""
    return tuple(f.relative for f in FILES if f.inject) + tuple(
        d.path.lstrip("/") + "/" for d in DIRECTORIES if d.inject
    )


INJECTED_FILES: tuple[str, ...] = injected_files()
"""What the webhook, the runtime wrapper and ``kube-lxcfs run`` mount by default."""


def _parents(path: str) -> list[str]:
    parts = path.strip("/").split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


KNOWN_DIRECTORIES: frozenset[str] = frozenset(
    {d.path.lstrip("/") for d in DIRECTORIES}
    | {p for f in FILES for p in _parents(f.path) if "{" not in p}
)
"""Every directory of the tree, relative (a hostPath of type Directory, with or without "/")."""

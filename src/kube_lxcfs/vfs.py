"""The contract between the virtual tree (core) and the FUSE adapter (shell).

The core builds a :class:`VirtualTree` that knows every served path and how to
render it for a given reader; the adapter only translates kernel requests into
these three calls and keeps per-open snapshots and offsets.  Paths are absolute
inside the mount, e.g. ``/proc/meminfo`` or ``/sys/devices/system/cpu/online``.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

NodeKind = Literal["file", "dir", "symlink"]


@dataclass(frozen=True, slots=True)
class Node:
    """One entry of the tree, as ``getattr`` needs it."""

    kind: NodeKind
    mode: int
    """Permission bits only (e.g. ``0o444``); the adapter adds the file type."""
    target: str | None = None
    """Link target, for ``kind == "symlink"``."""
    size: int = 0
    """Size reported by ``getattr`` (unless ``per_reader_size``)."""
    per_reader_size: bool = False
    """The size is the length of the text the asking process would read
    (:meth:`VirtualTree.text_length`).  /proc says 0, but a ``sendfile(2)`` reader
    (busybox cat, Python's ``shutil.copyfile``) of a FUSE file stops at the size, and
    one larger than the text breaks ``tail -c`` and ``wc -c``
    (docs/differences-from-lxcfs.md)."""


class VirtualTree(Protocol):
    """What the FUSE adapter serves."""

    def lookup(self, path: str) -> Node | None:
        """The node at ``path``, or ``None`` if there is none (ENOENT)."""
        ...

    def listdir(self, path: str) -> list[str]:
        """Names in the directory ``path`` (without ``.`` and ``..``)."""
        ...

    def read(self, path: str, pid: int) -> bytes:
        """The whole content of file ``path`` as process ``pid`` must see it.

        Never raises for a served file: faults (vanished pid, removed cgroup,
        malformed cgroup file) fall back to the host's content and are logged once.
        """
        ...

    def text_length(self, path: str, pid: int) -> int:
        """``len(read(path, pid))`` now, for ``st_size`` of ``per_reader_size`` files.

        Keeps nothing for later reads: a stat is not a read, and the runtime that
        bind-mounts a container's files stats them before the container's limits exist.
        """
        ...


@runtime_checkable
class Lifecycle(Protocol):
    """A tree with background work (the loadavg sampler): the daemon starts and stops it."""

    def start(self) -> None:
        """Start background work, before the mount serves."""
        ...

    def close(self) -> None:
        """Stop background work after the loop ended; idempotent."""
        ...


@runtime_checkable
class SysinfoSource(Protocol):
    """A tree that can answer sysinfo(2) for wrapped containers (the seccomp listener)."""

    def sysinfo(self, pid: int) -> Any:
        """The sysinfo figures ``pid`` must see; raises on faults (the call passes through)."""
        ...


class HostAnswerRefused(OSError):
    """A render failed and ``on_render_error="eio"`` forbids the host's file: the read fails."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.EIO, f"{path}: render failed and --on-render-error=eio")


@dataclass(frozen=True, slots=True)
class FsOptions:
    """How the filesystem renders; set from ``kube-lxcfs fs`` flags.

    The roots make every reader testable against a recorded tree.
    """

    swap: bool = True
    """Virtualize swap (``-u/--disable-swap`` turns it off: SwapTotal/SwapFree 0)."""
    loadavg: bool = True
    """Per-cgroup loadavg (``--disable-loadavg`` serves the host's)."""
    cpu_view: Literal["quota", "cpuset"] = "quota"
    """Visible CPUs = min(cpuset, ceil(quota/period)) or just the cpuset."""
    cgroup_of: Literal["reader", "init"] = "reader"
    """Whose cgroup answers: the reading process's, or its pid-namespace init's (lxcfs)."""
    on_render_error: Literal["host", "eio"] = "host"
    """A failed render serves the host's file (lxcfs's behaviour) or fails the read (EIO)."""
    proc_root: str = "/proc"
    sys_root: str = "/sys"
    mountinfo: str = "/proc/self/mountinfo"
    """Where the cgroup hierarchies are discovered from."""

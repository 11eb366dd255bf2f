"""Mount-point state: is a directory free, a live mount, or a dead FUSE mount?

A FUSE daemon killed with SIGKILL leaves its mount behind: every access then
fails with ENOTCONN ("Transport endpoint is not connected") and a new daemon
cannot mount there until it is detached.  These helpers tell the cases apart
and detach a dead mount lazily (``umount2(MNT_DETACH)``), which also succeeds
while bind mounts of its files still exist in containers.
"""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path

from kube_lxcfs import linux
from kube_lxcfs.mountinfo import STALE_ERRNOS, MountEntry, parse_mountinfo


class MountState(Enum):
    """What is at a mount point right now."""

    MISSING = "missing"
    """Nothing exists at the path."""
    FREE = "free"
    """A directory that is not a mount point."""
    STALE = "stale"
    """A mount whose daemon is gone (ENOTCONN)."""
    MOUNTED = "mounted"
    """A live mount (ours or anybody's)."""


def mount_at(path: str | Path, mountinfo_path: str = "/proc/self/mountinfo") -> MountEntry | None:
    """The topmost mount whose mount point is exactly ``path`` (absolute), if any."""
    target = os.path.abspath(path)
    found = None
    for entry in parse_mountinfo(Path(mountinfo_path).read_text(errors="surrogateescape")):
        if entry.mount_point == target:
            found = entry
    return found


def mount_state(path: str | Path) -> MountState:
    """Classify ``path``; a dead FUSE mount answers every request with an error of
    :data:`~kube_lxcfs.mountinfo.STALE_ERRNOS` (ENOTCONN).

    ``stat`` alone is not enough: for up to attr_timeout after the daemon died the
    kernel answers it from cached attributes.  STATFS is never cached, so a mount
    point is probed with ``statvfs``.
    """
    try:
        os.stat(path)
        if mount_at(path) is None:
            return MountState.FREE
        os.statvfs(path)
    except FileNotFoundError:
        return MountState.MISSING
    except OSError as exc:
        if exc.errno in STALE_ERRNOS:
            return MountState.STALE
        raise
    return MountState.MOUNTED


def lazy_unmount(path: str | Path) -> None:
    """Detach the mount at ``path`` (``umount -l``); raises OSError on failure."""
    linux.umount2(os.path.abspath(path), linux.MNT_DETACH)

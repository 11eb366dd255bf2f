"""Parse ``/proc/<pid>/mountinfo`` (proc(5)) into records: the one parser of mountinfo.

Pure: text in, records out. Paths are unescaped (the kernel writes space, tab,
newline and backslash as ``\\ooo`` octal escapes). Used by cgroup discovery, the FUSE
daemon's mount-point checks and the repair of containers' mounts.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass

from kube_lxcfs.errors import KubeLxcfsError

_OCTAL = re.compile(r"\\([0-7]{3})")


class MountinfoError(KubeLxcfsError, ValueError):
    """A mountinfo line without the layout proc(5) describes."""


STALE_ERRNOS = frozenset({errno.ENOTCONN, errno.ECONNABORTED})
"""What a statvfs of a FUSE mount (or of a file of it) returns once its daemon is gone: the
daemon's start detaches such a mount, the repair replaces containers' binds of it."""

DELETED_SUFFIX = "//deleted"
"""Appended by the kernel to a path whose dentry was unhashed, e.g. the root of a bind mount
of a dead FUSE file after a lookup failed on it; the path itself is still the one mounted."""


def unescape(field: str) -> str:
    """Undo the kernel's octal escaping of a mountinfo path field."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def _path(field: str) -> str:
    path = unescape(field)
    if path.endswith(DELETED_SUFFIX):
        path = path[: -len(DELETED_SUFFIX)] or "/"
    return path


@dataclass(frozen=True, slots=True)
class MountEntry:
    """One line of mountinfo."""

    mount_id: int
    parent_id: int
    dev: tuple[int, int]
    root: str
    """Path inside the filesystem that is mounted here (``/proc/meminfo`` for a file bind)."""
    mount_point: str
    """Where, relative to the root directory of the process whose mountinfo this is."""
    mount_options: tuple[str, ...]
    """Per-mount flags: ``ro``/``rw``, ``nosuid``, ``nodev``, ``noexec``, atime flags."""
    fstype: str
    source: str
    super_options: tuple[str, ...]

    @property
    def read_only(self) -> bool:
        return "ro" in self.mount_options


def parse_line(line: str) -> MountEntry:
    """Parse one mountinfo line; :class:`MountinfoError` if it is malformed."""
    left, sep, right = line.rstrip("\n").partition(" - ")
    if not sep:
        raise MountinfoError(f"mountinfo line without separator: {line!r}")
    fields = left.split(" ")
    tail = right.split(" ")
    if len(fields) < 6 or len(tail) < 2:
        raise MountinfoError(f"mountinfo line too short: {line!r}")
    major, _, minor = fields[2].partition(":")
    try:
        ids = int(fields[0]), int(fields[1]), int(major), int(minor)
    except ValueError:
        raise MountinfoError(f"mountinfo line with bad numbers: {line!r}") from None
    return MountEntry(
        mount_id=ids[0],
        parent_id=ids[1],
        dev=(ids[2], ids[3]),
        root=_path(fields[3]),
        mount_point=_path(fields[4]),
        mount_options=tuple(fields[5].split(",")),
        fstype=tail[0],
        source=unescape(tail[1]),
        super_options=tuple(tail[2].split(",")) if len(tail) > 2 else (),
    )


def parse_mountinfo(text: str) -> list[MountEntry]:
    """All entries of a mountinfo text, in the kernel's order; blank lines ignored."""
    # split at "\n" only: the kernel escapes only space, tab, newline and backslash in paths,
    # and str.splitlines would also split a mount point holding "\r" or "\v"
    return [parse_line(line) for line in text.split("\n") if line.strip()]


def topmost_at(mounts: list[MountEntry], mount_point: str) -> MountEntry | None:
    """The mount a path lookup of ``mount_point`` ends on (the last one stacked there).

    A mount stacked on another one at the same path has the covered mount as its
    parent, so the top is the one no other entry at that path sits on.
    """
    here = [m for m in mounts if m.mount_point == mount_point]
    covered = {m.parent_id for m in here}
    tops = [m for m in here if m.mount_id not in covered]
    return tops[-1] if tops else None


def is_visible(mounts: list[MountEntry], entry: MountEntry) -> bool:
    """Whether a path lookup of ``entry.mount_point`` reaches ``entry``.

    False when another mount is stacked on it, or when one of the mounts its path
    runs through is itself covered (e.g. a new /proc mounted over the old one).
    """
    by_id = {m.mount_id: m for m in mounts}
    current: MountEntry | None = entry
    seen: set[int] = set()
    while current is not None and current.mount_id not in seen:
        seen.add(current.mount_id)
        if topmost_at(mounts, current.mount_point) is not current:
            return False
        parent = by_id.get(current.parent_id)
        while parent is not None and parent.mount_point == current.mount_point:
            parent = by_id.get(parent.parent_id)
        current = parent
    return True

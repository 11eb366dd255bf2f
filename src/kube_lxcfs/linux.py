"""The Linux system calls Python 3.11 has no binding for, through ctypes: libc is loaded here once.

``mount``, ``umount2``, ``unshare``, ``setns`` and ``prctl`` have libc wrappers; the new mount
API (``open_tree``, ``move_mount``, ``mount_setattr``) goes through libc's generic ``syscall()``
with the numbers of the unified syscall table, the same on x86_64 and aarch64. Every function
raises ``OSError`` with the kernel's errno (one helper, :func:`check`), so callers report the
real reason.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform

_SYSCALL_NUMBERS: dict[str, dict[str, int]] = {
    # The new mount API was added after the tables were unified (>= 403), so the
    # numbers agree across architectures.
    "x86_64": {"open_tree": 428, "move_mount": 429, "mount_setattr": 442},
    "aarch64": {"open_tree": 428, "move_mount": 429, "mount_setattr": 442},
}

CLONE_NEWNS = 0x0002_0000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x4_0000
MS_SLAVE = 0x8_0000
MS_SHARED = 0x10_0000

MNT_DETACH = 2
"""umount2 flag: detach now, clean up when no longer busy (``umount -l``)."""
UMOUNT_NOFOLLOW = 8

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000

OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC

MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_BENEATH = 0x200
"""Linux >= 6.5: attach beneath the top mount, so unmounting it is the atomic switch."""

MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8

PR_SET_PDEATHSIG = 1

M_ARENA_MAX = -8
"""mallopt(3) parameter: how many malloc arenas glibc may create."""


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.mount.argtypes = (
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
)
_libc.prctl.argtypes = (
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
)


def check(result: int, what: str, path: str | os.PathLike[str] | None = None) -> int:
    """``result`` unless it is negative (libc's failure), then ``OSError`` with errno."""
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", os.fspath(path) if path else None)
    return result


def _fs(value: str | os.PathLike[str] | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def _number(name: str) -> int:
    table = _SYSCALL_NUMBERS.get(platform.machine())
    if table is None:
        raise OSError(errno.ENOSYS, f"{name}: unsupported architecture {platform.machine()}")
    return table[name]


def mount(
    source: str | os.PathLike[str] | None,
    target: str | os.PathLike[str],
    fstype: str | None,
    flags: int,
) -> None:
    """mount(2) without data."""
    check(_libc.mount(_fs(source), _fs(target), _fs(fstype), flags, None), "mount", target)


def bind_mount(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Classic ``mount --bind`` (the fallback when the new mount API is missing)."""
    check(_libc.mount(_fs(source), _fs(target), None, MS_BIND, None), "mount(MS_BIND)", target)


def remount_bind_flags(target: str | os.PathLike[str], ms_flags: int) -> None:
    """Apply per-mount flags (``MS_RDONLY``...) to the bind mount at ``target``."""
    flags = MS_REMOUNT | MS_BIND | ms_flags
    check(_libc.mount(None, _fs(target), None, flags, None), "mount(MS_REMOUNT)", target)


def umount2(path: str | os.PathLike[str], flags: int = MNT_DETACH | UMOUNT_NOFOLLOW) -> None:
    """Unmount the top mount at ``path`` (lazily, not following a symlink, by default)."""
    check(_libc.umount2(_fs(path), flags), "umount2", path)


def unshare(flags: int) -> None:
    """unshare(2), e.g. ``CLONE_NEWNS`` for a private mount namespace."""
    check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = CLONE_NEWNS) -> None:
    """Join the namespace ``fd`` refers to (the calling process must be single-threaded)."""
    check(_libc.setns(fd, nstype), "setns")


def set_parent_death_signal(signum: int) -> None:
    """Get ``signum`` when the parent thread dies, even by SIGKILL (``PR_SET_PDEATHSIG``)."""
    check(_libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")


def set_malloc_arena_max(arenas: int) -> bool:
    """Cap glibc's malloc arenas (``mallopt(M_ARENA_MAX)``); False if glibc refused."""
    return bool(_libc.mallopt(M_ARENA_MAX, arenas))


def open_tree_clone(path: str) -> int:
    """A detached copy of the mount at ``path`` (our namespace), as an fd.

    The clone belongs to no namespace yet, so it can be attached in any
    namespace the caller enters later.
    """
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW
    result = _libc.syscall(
        ctypes.c_long(_number("open_tree")),
        ctypes.c_int(AT_FDCWD),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.c_uint(flags),
    )
    return check(result, "open_tree", path)


def move_mount_fd(mount_fd: int, target: str, *, beneath: bool = False) -> None:
    """Attach the detached mount ``mount_fd`` at ``target`` (caller's namespace)."""
    flags = MOVE_MOUNT_F_EMPTY_PATH | (MOVE_MOUNT_BENEATH if beneath else 0)
    result = _libc.syscall(
        ctypes.c_long(_number("move_mount")),
        ctypes.c_int(mount_fd),
        ctypes.c_char_p(b""),
        ctypes.c_int(AT_FDCWD),
        ctypes.c_char_p(os.fsencode(target)),
        ctypes.c_uint(flags),
    )
    check(result, "move_mount", target)


def set_mount_attrs(mount_fd: int, attrs: int) -> None:
    """Set ``MOUNT_ATTR_*`` flags (read-only, nosuid...) on a mount fd."""
    attr = _MountAttr(attr_set=attrs, attr_clr=0, propagation=0, userns_fd=0)
    result = _libc.syscall(
        ctypes.c_long(_number("mount_setattr")),
        ctypes.c_int(mount_fd),
        ctypes.c_char_p(b""),
        ctypes.c_uint(AT_EMPTY_PATH),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    check(result, "mount_setattr")

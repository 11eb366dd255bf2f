"""The mount syscalls repair needs, through ctypes.

Python has no binding for the new mount API (``open_tree``, ``move_mount``,
``mount_setattr``), so they go through libc's generic ``syscall()``; the
numbers are from the unified syscall table, the same on x86_64 and aarch64.
``setns``, ``umount2`` and ``mount`` have libc wrappers. Every function raises
``OSError`` with the kernel's errno, so callers report the real reason.
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

MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000

CLONE_NEWNS = 0x00020000


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
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.mount.argtypes = (
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
)


def _number(name: str) -> int:
    table = _SYSCALL_NUMBERS.get(platform.machine())
    if table is None:
        raise OSError(errno.ENOSYS, f"{name}: unsupported architecture {platform.machine()}")
    return table[name]


def _check(result: int, what: str, path: str = "") -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path or None)
    return result


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
    return _check(result, "open_tree", path)


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
    _check(result, "move_mount", target)


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
    _check(result, "mount_setattr")


def setns(fd: int, nstype: int = CLONE_NEWNS) -> None:
    """Join the namespace ``fd`` refers to (the calling process must be single-threaded)."""
    _check(_libc.setns(fd, nstype), "setns")


def umount2(path: str, flags: int = MNT_DETACH | UMOUNT_NOFOLLOW) -> None:
    """Unmount the top mount at ``path`` (lazily by default)."""
    _check(_libc.umount2(os.fsencode(path), flags), "umount2", path)


def bind_mount(source: str, target: str) -> None:
    """Classic ``mount --bind`` (the fallback when the new API is missing)."""
    result = _libc.mount(os.fsencode(source), os.fsencode(target), None, MS_BIND, None)
    _check(result, "mount(MS_BIND)", target)


def remount_bind_flags(target: str, ms_flags: int) -> None:
    """Apply per-mount flags (``MS_RDONLY``...) to the bind mount at ``target``."""
    flags = MS_REMOUNT | MS_BIND | ms_flags
    _check(_libc.mount(None, os.fsencode(target), None, flags, None), "mount(MS_REMOUNT)", target)

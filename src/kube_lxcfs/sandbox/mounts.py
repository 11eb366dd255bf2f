"""Mount namespaces and the read-only binds of the virtual files (thin ctypes shell).

Python 3.11 has neither ``os.unshare`` nor ``mount``, so both come from libc.  The bind list
is the same one the admission webhook injects into pods, so a ``kube-lxcfs run`` command sees
exactly what a pod sees.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from pathlib import Path

from kube_lxcfs import files

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

INJECTED_FILES = tuple(path for path in files.INJECTED_FILES if not path.endswith("/"))
"""Files of the daemon's mount bound over the same path under ``/`` (the webhook's list)."""
INJECTED_DIRS = tuple(path.rstrip("/") for path in files.INJECTED_FILES if path.endswith("/"))
"""Directories bound the same way (glibc's CPU count reads ``cpu/online``, htop ``cpuN/``)."""

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]
_libc.unshare.argtypes = [ctypes.c_int]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _b(value: str | os.PathLike[str] | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(
    source: str | os.PathLike[str] | None,
    target: str | os.PathLike[str],
    fstype: str | None,
    flags: int,
) -> None:
    """mount(2)."""
    result = _libc.mount(_b(source), _b(target), _b(fstype), flags, None)
    _check(result, f"mount {source} on {target}")


def unshare_mount_namespace() -> None:
    """Move the calling process into a new mount namespace that receives but never sends mounts.

    ``/`` becomes a recursive slave: mounts made by the host later still appear, and nothing
    mounted here leaks out.  The namespace, and every mount in it, disappears with its last
    process, which is what makes cleanup after a crash automatic.
    """
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    mount(None, "/", None, MS_REC | MS_SLAVE)


def bind_readonly(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Bind ``source`` over ``target`` read-only (recursive, like a read-only hostPath mount)."""
    mount(source, target, None, MS_BIND | MS_REC)
    mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def injected_binds(
    mount_dir: str | os.PathLike[str], root: str = "/"
) -> Iterator[tuple[Path, Path]]:
    """``(source, target)`` for every virtual file and directory, in mount order."""
    for relative in (*INJECTED_FILES, *INJECTED_DIRS):
        yield Path(mount_dir) / relative, Path(root) / relative


def bind_virtual_files(mount_dir: str | os.PathLike[str]) -> None:
    """Bind every virtual file of the daemon at ``mount_dir`` over the real one."""
    for source, target in injected_binds(mount_dir):
        bind_readonly(source, target)

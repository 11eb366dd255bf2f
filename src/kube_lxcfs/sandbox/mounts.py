"""Mount namespaces and the read-only binds of the virtual files (thin shell over linux).

The bind list
is the same one the admission webhook injects into pods, so a ``kube-lxcfs run`` command sees
exactly what a pod sees.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from kube_lxcfs import files, linux
from kube_lxcfs.linux import MS_BIND, MS_NODEV, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT, MS_SLAVE

INJECTED_FILES = tuple(path for path in files.INJECTED_FILES if not path.endswith("/"))
"""Files of the daemon's mount bound over the same path under ``/`` (the webhook's list)."""
INJECTED_DIRS = tuple(path.rstrip("/") for path in files.INJECTED_FILES if path.endswith("/"))
"""Directories bound the same way (glibc's CPU count reads ``cpu/online``, htop ``cpuN/``)."""


def unshare_mount_namespace() -> None:
    """Move the calling process into a new mount namespace that receives but never sends mounts.

    ``/`` becomes a recursive slave: mounts made by the host later still appear, and nothing
    mounted here leaks out.  The namespace, and every mount in it, disappears with its last
    process, which is what makes cleanup after a crash automatic.
    """
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, MS_REC | MS_SLAVE)


def bind_readonly(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Bind ``source`` over ``target`` read-only (recursive, like a read-only hostPath mount)."""
    linux.mount(source, target, None, MS_BIND | MS_REC)
    linux.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


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

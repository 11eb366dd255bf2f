"""Start the virtual filesystem for container tests on a temporary mount directory.

``kube-lxcfs`` is our daemon (``kube-lxcfs fs``).  ``lxcfs`` is Debian's lxcfs 5.0.3 with the
options that match our defaults (``-l`` per-cgroup loadavg, ``--enable-cfs`` CPU count from the
quota) and its own pidfile: the oracle, serving the identical layout.
``KUBE_LXCFS_TEST_FS=lxcfs`` runs the container tier against it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kube_lxcfs.sandbox.daemon import private_daemon

IMPLEMENTATIONS = ("kube-lxcfs", "lxcfs")
DEFAULT_IMPLEMENTATION = os.environ.get("KUBE_LXCFS_TEST_FS", "lxcfs")


def daemon_command(implementation: str, workdir: Path) -> list[str]:
    """The command line that mounts ``implementation`` (the mount directory is appended)."""
    if implementation == "kube-lxcfs":
        return [sys.executable, "-m", "kube_lxcfs", "fs"]
    if implementation == "lxcfs":
        return ["lxcfs", "-l", "--enable-cfs", "-p", str(workdir / "lxcfs.pid")]
    raise ValueError(f"unknown filesystem {implementation!r}; one of {IMPLEMENTATIONS}")


@contextlib.contextmanager
def running_filesystem(implementation: str = DEFAULT_IMPLEMENTATION) -> Iterator[Path]:
    """Mount the filesystem on a fresh temporary directory; unmount and stop it afterwards."""
    with (
        tempfile.TemporaryDirectory(prefix="kube-lxcfs-test-fs-") as workdir,
        private_daemon(daemon_command(implementation, Path(workdir))) as mount_dir,
    ):
        yield mount_dir

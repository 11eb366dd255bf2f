"""The virtual filesystem the container tests bind into their containers.

``kube-lxcfs`` is our daemon (``kube-lxcfs fs``, default options).  ``lxcfs`` is Debian's
lxcfs 5.0.3 with the options closest to our defaults (``-l`` per-cgroup loadavg,
``--enable-cfs`` CPU count from the quota): the oracle, serving the identical layout.
``KUBE_LXCFS_TEST_FS=lxcfs`` runs the whole container tier against it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from support.fsdaemons import start_kube_lxcfs, start_lxcfs

IMPLEMENTATIONS = ("kube-lxcfs", "lxcfs")
DEFAULT_IMPLEMENTATION = os.environ.get("KUBE_LXCFS_TEST_FS", "kube-lxcfs")


@contextlib.contextmanager
def running_filesystem(implementation: str = DEFAULT_IMPLEMENTATION) -> Iterator[Path]:
    """Mount ``implementation`` on a fresh temporary directory; stop and unmount it afterwards."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"unknown filesystem {implementation!r}; one of {IMPLEMENTATIONS}")
    with tempfile.TemporaryDirectory(prefix="kube-lxcfs-test-fs-") as workdir:
        mountpoint = Path(workdir) / "mnt"
        if implementation == "kube-lxcfs":
            fs = start_kube_lxcfs(mountpoint)
        else:
            fs = start_lxcfs(mountpoint, "-l", "--enable-cfs")
        try:
            yield fs.mountpoint
        finally:
            fs.stop()

"""Fixtures for tests that run inside the pure cgroup v2 VM (see tests/vm/vmharness.py).

These tests are collected only when KUBE_LXCFS_IN_VM is set (the guest init sets it); on
the host, tests/vm/test_v2_tier.py boots the VM and runs them there.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from v2helpers import FuseDaemon, fuse_daemon

from kube_lxcfs.cgroups.transient import MiB


@pytest.fixture(scope="session")
def lxcfs() -> Iterator[FuseDaemon]:
    """Debian's lxcfs 5.0.3 as Debian runs it (no options): the differential oracle."""
    with fuse_daemon(
        "lxcfs", lambda mnt: ["lxcfs", "-f", "-p", str(mnt.parent / "lxcfs.pid"), str(mnt)]
    ) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def lxcfs_cfs() -> Iterator[FuseDaemon]:
    """lxcfs with ``--enable-cfs -l``: its CPU view from cpu.max, per-cgroup loadavg."""
    with fuse_daemon(
        "lxcfs-cfs",
        lambda mnt: [
            "lxcfs", "-f", "--enable-cfs", "-l", "-p", str(mnt.parent / "lxcfs.pid"), str(mnt)
        ],
    ) as daemon:  # fmt: skip
        yield daemon


@pytest.fixture(scope="session")
def kube_lxcfs() -> Iterator[FuseDaemon]:
    """Our daemon, ``python -m kube_lxcfs fs MOUNTPOINT``, with its defaults."""
    with fuse_daemon(
        "kube-lxcfs", lambda mnt: [sys.executable, "-m", "kube_lxcfs", "fs", str(mnt)]
    ) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def swap_file() -> Iterator[int]:
    """A 96 MiB swap file, active for the session; yields its size in kB."""
    path = Path("/var/klx-swapfile")
    size = 96 * MiB
    with path.open("wb") as f:
        # Written out, not sparse: the kernel refuses swap files with holes.
        chunk = b"\0" * MiB
        for _ in range(size // MiB):
            f.write(chunk)
    path.chmod(0o600)
    subprocess.run(["mkswap", "-q", str(path)], check=True)
    subprocess.run(["swapon", str(path)], check=True)
    try:
        yield size // 1024 - 4  # the first page holds the swap header
    finally:
        subprocess.run(["swapoff", str(path)], check=False)
        path.unlink()

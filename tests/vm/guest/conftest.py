"""Fixtures for tests that run inside the pure cgroup v2 VM (see tests/vm/vmharness.py).

These tests are collected only when KUBE_LXCFS_IN_VM is set (the guest init sets it); on
the host, tests/vm/test_v2_tier.py boots the VM and runs them there. The daemons are the
shared test daemons of tests/support/fsdaemons.py, started once per guest session.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube_lxcfs.cgroups.transient import MiB
from support.fsdaemons import RunningFs, start_kube_lxcfs, start_lxcfs


@pytest.fixture(scope="session")
def guest_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("v2")


@pytest.fixture(scope="session")
def ours(guest_tmp: Path) -> Iterator[RunningFs]:
    """``kube-lxcfs fs`` with its defaults."""
    fs = start_kube_lxcfs(guest_tmp / "kube-lxcfs")
    yield fs
    fs.stop()


@pytest.fixture(scope="session")
def lxcfs(guest_tmp: Path) -> Iterator[RunningFs]:
    """Debian's lxcfs 5.0.3 as Debian's unit runs it (no options)."""
    fs = start_lxcfs(guest_tmp / "lxcfs")
    yield fs
    fs.stop()


@pytest.fixture(scope="session")
def lxcfs_cfs(guest_tmp: Path) -> Iterator[RunningFs]:
    """lxcfs with ``-l --enable-cfs``: its CPU view from cpu.max (closest to our defaults)."""
    fs = start_lxcfs(guest_tmp / "lxcfs-cfs", "-l", "--enable-cfs")
    yield fs
    fs.stop()


@pytest.fixture(scope="session")
def swap_file() -> Iterator[int]:
    """A 96 MiB swap file, active for the session; yields its usable size in kB."""
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

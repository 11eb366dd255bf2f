"""Fixtures of the container tier: cached root filesystems, runc, and a virtual filesystem.

Every test here is real: runc containers with cgroup limits, the filesystem mounted with
FUSE and bound into the containers as the webhook does it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from rootfs import FULL, TINY, build_seconds, ensure_rootfs
from runc_harness import Runc
from virtual_fs import DEFAULT_IMPLEMENTATION, running_filesystem

from support.fsdaemons import start_kube_lxcfs


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of this directory is a root-only container test."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.containers)
            item.add_marker(pytest.mark.root)


@pytest.fixture(scope="session", autouse=True)
def _needs_root_and_runc() -> None:
    if os.geteuid() != 0:
        pytest.fail("the container tests need root (cgroups, mounts, runc)")
    if shutil.which("runc") is None or shutil.which("mmdebstrap") is None:
        pytest.fail(
            "the container tests need runc and mmdebstrap (bash scripts/bootstrap.sh --test)"
        )


ROOTFS_REPORT: list[str] = []
"""One line per root filesystem used, and measured costs, printed in the terminal summary
(CI logs)."""


def pytest_terminal_summary(terminalreporter) -> None:
    for line in ROOTFS_REPORT:
        terminalreporter.write_line(line)


def _rootfs(spec) -> Path:
    started = time.monotonic()
    path = ensure_rootfs(spec)
    ROOTFS_REPORT.append(
        f"rootfs {spec.name}: {path}, build took {build_seconds(path):.0f}s when it was built,"
        f" ready after {time.monotonic() - started:.1f}s in this run"
    )
    return path


@pytest.fixture(scope="session")
def summary_line() -> Callable[[str], None]:
    """Add a line to the terminal summary: what a test measured (times), for the CI log."""
    return ROOTFS_REPORT.append


@pytest.fixture(scope="session")
def full_rootfs() -> Path:
    """Debian minbase with procps, python3, psutil, busybox, nodejs, htop (cached)."""
    return _rootfs(FULL)


@pytest.fixture(scope="session")
def tiny_rootfs() -> Path:
    """Only Debian's static busybox (cached)."""
    return _rootfs(TINY)


@pytest.fixture(scope="session")
def fs_implementation() -> str:
    """Which filesystem serves the container tests: ``kube-lxcfs`` or the ``lxcfs`` oracle."""
    return DEFAULT_IMPLEMENTATION


@pytest.fixture(scope="session")
def fs_mount_dir(fs_implementation: str) -> Iterator[Path]:
    """The mount directory of a running virtual filesystem, for the whole session."""
    with running_filesystem(fs_implementation) as mount_dir:
        yield mount_dir


@pytest.fixture
def runc() -> Iterator[Runc]:
    """runc with private state; every container is force-deleted, and no cgroup may leak."""
    runner = Runc()
    try:
        yield runner
    finally:
        runner.cleanup()
    leaked = runner.leaked_cgroups()
    assert not leaked, f"cgroups left behind: {sorted(map(str, leaked))}"


@pytest.fixture(scope="module")
def sysinfo_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A node daemon answering sysinfo(2) on its own seccomp socket: (mount dir, socket)."""
    workdir = tmp_path_factory.mktemp("node")
    socket = workdir / "seccomp.sock"
    fs = start_kube_lxcfs(workdir / "mnt", "--seccomp-socket", str(socket))
    try:
        yield fs.mountpoint, socket
    finally:
        fs.stop()


@pytest.fixture(scope="session")
def probe_rootfs(tiny_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The static busybox image plus the static sysinfo probe."""
    root = tmp_path_factory.mktemp("probe") / "rootfs"
    # cp -a, not copytree: the image has device nodes (/dev/zero) whose content never ends.
    subprocess.run(["cp", "-a", str(tiny_rootfs), str(root)], check=True)
    subprocess.run(
        [
            "gcc",
            "-static",
            "-O2",
            "-o",
            str(root / "bin" / "sysinfo-probe"),
            str(Path(__file__).parent / "sysinfo_probe.c"),
        ],
        check=True,
    )
    return root

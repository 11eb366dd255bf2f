"""Shared test setup.

Subprocesses started by tests (``python -m kube_lxcfs ...``) must import the
package from this checkout, not from wherever it is installed, so the source
directory is put on PYTHONPATH for the whole run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p
)

# Property tests check behaviour, not speed (bench/ measures speed): no per-example
# deadline, which a loaded CI machine would turn into flaky failures.
from hypothesis import settings  # noqa: E402

settings.register_profile("kube-lxcfs", deadline=None)
settings.load_profile("kube-lxcfs")


# --- running filesystems (shared by every tier that reads through a mount) ---

from support.fsdaemons import (  # noqa: E402
    RunningFs,
    lxcfs_available,
    start_kube_lxcfs,
    start_lxcfs,
)


def _require_fuse() -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting FUSE filesystems and creating cgroups needs root")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("this kernel has no /dev/fuse")


@pytest.fixture
def start_fs(tmp_path: Path):
    """Factory: ``start_fs("kube-lxcfs", "--disable-swap")`` or ``start_fs("lxcfs", "-l")``.

    Each call mounts on a fresh temp directory; every daemon is stopped and
    unmounted at teardown, also when the test failed.
    """
    _require_fuse()
    started: list[RunningFs] = []

    def start(kind: str = "kube-lxcfs", *args: str) -> RunningFs:
        mountpoint = tmp_path / f"{kind}-{len(started)}"
        if kind == "kube-lxcfs":
            fs = start_kube_lxcfs(mountpoint, *args)
        elif kind == "lxcfs":
            if not lxcfs_available():
                pytest.skip("Debian's lxcfs is not installed (apt-get install lxcfs)")
            fs = start_lxcfs(mountpoint, *args)
        else:
            raise ValueError(f"unknown daemon kind {kind!r}")
        started.append(fs)
        return fs

    yield start
    for fs in reversed(started):
        fs.stop()


@pytest.fixture(scope="module")
def kube_lxcfs_fs(tmp_path_factory: pytest.TempPathFactory):
    """One ``kube-lxcfs fs`` with default options for the whole test module."""
    _require_fuse()
    fs = start_kube_lxcfs(tmp_path_factory.mktemp("kube-lxcfs") / "mnt")
    yield fs
    fs.stop()


@pytest.fixture(scope="module")
def lxcfs_fs(tmp_path_factory: pytest.TempPathFactory):
    """Debian's lxcfs 5.0.3 (``-l --enable-cfs``, the closest to our defaults), own mount."""
    _require_fuse()
    if not lxcfs_available():
        pytest.skip("Debian's lxcfs is not installed (apt-get install lxcfs)")
    fs = start_lxcfs(tmp_path_factory.mktemp("lxcfs") / "mnt", "-l", "--enable-cfs")
    yield fs
    fs.stop()


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    """A real ``helm`` built from its pinned Go module (tests/cluster/go/helm), cached.

    Skips only when there is no Go toolchain; a failed build fails the test.
    """
    from cluster.binaries import BuildError, GoMissingError, find_or_build_one

    try:
        return find_or_build_one("helm")
    except GoMissingError as exc:
        pytest.skip(str(exc))
    except BuildError as exc:
        pytest.fail(str(exc), pytrace=False)

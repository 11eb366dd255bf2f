"""Fixtures of the repair tests: a killable FUSE source and namespaces holding its files."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from .helpers import FuseSource, Holder, KubeLxcfsSource, LxcfsSource

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

CONTAINERS_DIR = Path(__file__).resolve().parents[1] / "containers"


def harness() -> ModuleType:
    """The runc harness of tests/containers (imported the way its own conftest does)."""
    if str(CONTAINERS_DIR) not in sys.path:
        sys.path.insert(0, str(CONTAINERS_DIR))
    import runc_harness

    return runc_harness


def rootfs_builder() -> ModuleType:
    """The cached root filesystems of tests/containers."""
    harness()
    import rootfs

    return rootfs


def _running(source: FuseSource) -> Iterator[FuseSource]:
    try:
        source.start()
        yield source
    finally:
        source.close()


@pytest.fixture
def lxcfs(tmp_path: Path) -> Iterator[LxcfsSource]:
    if shutil.which("lxcfs") is None:
        pytest.fail("lxcfs is not installed (deps/apt)")
    yield from _running(LxcfsSource(tmp_path / "lxcfs"))


@pytest.fixture
def shared_lxcfs(tmp_path: Path) -> Iterator[LxcfsSource]:
    """lxcfs under a shared mount, so its remounts propagate into slave namespaces."""
    yield from _running(LxcfsSource(tmp_path / "lxcfs-shared", shared=True))


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[KubeLxcfsSource]:
    """Our daemon, started; the test may kill and restart it."""
    yield from _running(KubeLxcfsSource(tmp_path / "kube-lxcfs"))


@pytest.fixture
def holders(tmp_path: Path) -> Iterator[Callable[..., Holder]]:
    """Factory of :class:`Holder` processes, all killed at teardown."""
    made: list[Holder] = []

    def make(mount_dir: Path, binds: dict[str, str], **kwargs: object) -> Holder:
        base = tmp_path / f"ns{len(made)}"
        holder = Holder(base, mount_dir, binds, **kwargs)
        made.append(holder)
        return holder

    try:
        yield make
    finally:
        for holder in made:
            holder.close()

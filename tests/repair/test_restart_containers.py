"""Daemon restarts under real runc containers that keep reading /proc/meminfo.

Several containers, one of them with a root filesystem that holds only a static
busybox (no shell path, no mount binary), read /proc/meminfo in a loop. The
FUSE daemon is killed with SIGKILL and started again; every container must read
its own correct MemTotal again within 5 s of the restart and never see an
error after that. The issue's "done when": 20 kill/restart rounds in one run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.waiting import wait_for

from .conftest import harness, needs_root, rootfs_builder
from .helpers import KubeLxcfsSource
from .readers import loop_args, make_bare_rootfs, memtotal_kib, read_status

containers_harness = harness()
rootfs_module = rootfs_builder()

pytestmark = [needs_root, pytest.mark.root, pytest.mark.fuse, pytest.mark.containers]

MIB = 1024 * 1024
RECOVERY_LIMIT = 5.0
ROUNDS = 20


@pytest.fixture(scope="module")
def rootfs_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tiny = rootfs_module.ensure_rootfs(rootfs_module.TINY)
    bare = make_bare_rootfs(tiny, tmp_path_factory.mktemp("bare") / "rootfs")
    return {"tiny": tiny, "bare": bare}


@pytest.fixture
def runc() -> Iterator[object]:
    with containers_harness.runc_session() as session:
        yield session


class Reader:
    def __init__(self, container, limit_mib: int) -> None:
        self.container = container
        self.pid = container.pid
        self.expected_kib = limit_mib * 1024

    def status(self):
        return read_status(self.pid)

    def reads_correctly(self) -> bool:
        return memtotal_kib(self.status()) == self.expected_kib


def start_readers(runc, images, mount_dir: Path) -> list[Reader]:
    readers = []
    for index, (image, busybox) in enumerate(
        [("tiny", None), ("tiny", None), ("tiny", None), ("bare", "/busybox")]
    ):
        limit = 128 + 64 * index
        container = runc.start(
            images[image],
            resources=containers_harness.Resources(memory=limit * MIB),
            mount_dir=mount_dir,
            args=loop_args(busybox),
        )
        readers.append(Reader(container, limit))
    for reader in readers:
        wait_for(reader.reads_correctly, what=f"container {reader.container.id} reads meminfo")
    return readers


def restart_round(source: KubeLxcfsSource, readers: list[Reader]) -> float:
    """kill -9 and restart; seconds from launching the new daemon to every reader being right.

    Nothing but the daemon's own start-up repair brings the containers back.
    """
    before = {r.pid: r.status() for r in readers}
    source.kill9()
    # every reader has hit the dead mount
    wait_for(
        lambda: all(r.status().errors > before[r.pid].errors for r in readers),
        what="readers see the dead mount",
    )
    restarted = time.monotonic()  # the new daemon is launched: the 5 s start here
    source.start()
    wait_for(
        lambda: all(r.reads_correctly() and r.status().ok > before[r.pid].ok for r in readers),
        timeout=RECOVERY_LIMIT,
        what="every container reads its MemTotal again",
    )
    recovered = time.monotonic() - restarted
    wait_for(source.repaired, what="the daemon's repair summary")
    assert "failed" not in source.log(), source.log()
    # no error after recovery: errors stay put while each reader reads 5 more times
    after = {r.pid: r.status() for r in readers}
    wait_for(
        lambda: all(r.status().ok >= after[r.pid].ok + 5 for r in readers),
        what="more reads",
    )
    for r in readers:
        assert r.status().errors == after[r.pid].errors, f"error after recovery in {r.container.id}"
        assert r.reads_correctly()
    return recovered


@pytest.mark.slow
def test_kill_restart_20_rounds_every_container_recovers(
    daemon: KubeLxcfsSource, runc, rootfs_images
) -> None:
    readers = start_readers(runc, rootfs_images, daemon.mount_dir)
    started = time.monotonic()
    times = [restart_round(daemon, readers) for _ in range(ROUNDS)]
    total = time.monotonic() - started
    print(
        f"\n{ROUNDS} kill/restart rounds with {len(readers)} containers: {total:.1f}s total, "
        f"recovery max {max(times):.2f}s, mean {sum(times) / len(times):.2f}s"
    )
    assert max(times) < RECOVERY_LIMIT


def test_on_stop_detach_containers_read_the_host_proc_while_down(
    tmp_path: Path, runc, rootfs_images
) -> None:
    daemon = KubeLxcfsSource(tmp_path / "kube-lxcfs", "--on-stop=detach")
    try:
        daemon.start()
        readers = start_readers(runc, rootfs_images, daemon.mount_dir)
        host_kib = int(Path("/proc/meminfo").read_text().split()[1])
        assert daemon.stop() == 0
        before = {r.pid: r.status() for r in readers}
        # down: every container reads the real /proc (the host's MemTotal), no error
        wait_for(
            lambda: all(memtotal_kib(r.status()) == host_kib for r in readers),
            what="containers read the host's /proc",
        )
        down = {r.pid: r.status() for r in readers}
        wait_for(
            lambda: all(r.status().ok >= down[r.pid].ok + 5 for r in readers),
            what="more reads while down",
        )
        for r in readers:
            assert r.status().errors == before[r.pid].errors
        daemon.start()
        wait_for(
            lambda: all(r.reads_correctly() for r in readers),
            timeout=RECOVERY_LIMIT,
            what="containers read their own MemTotal again",
        )
        wait_for(daemon.repaired, what="the daemon's repair summary")
        assert "reattached" in daemon.log()
        for r in readers:
            assert r.status().errors == before[r.pid].errors
    finally:
        daemon.close()

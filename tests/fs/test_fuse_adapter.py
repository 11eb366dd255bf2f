"""The FUSE adapter and daemon lifecycle through a real mount, with a test tree.

The counter tree (tests/fs/counter_tree.py) makes each render visible: it says
which pid asked and how many renders happened.  The daemon code is the one
``kube-lxcfs fs`` runs; only the tree differs.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube_lxcfs.fuse.mounts import MountState, mount_at, mount_state
from support.fsdaemons import RunningFs, start_script_daemon
from support.waiting import wait_for

COUNTER_TREE = Path(__file__).with_name("counter_tree.py")

pytestmark = [pytest.mark.root, pytest.mark.fuse]


@pytest.fixture
def counter_fs(tmp_path: Path) -> Iterator[RunningFs]:
    if os.geteuid() != 0:
        pytest.skip("FUSE mounts need root")
    fs = start_script_daemon(COUNTER_TREE, tmp_path / "mnt")
    try:
        yield fs
    finally:
        fs.stop()


def _header(data: bytes) -> tuple[int, int]:
    match = re.match(rb"pid=(\d+) render=(\d+)\n", data)
    assert match, data[:80]
    return int(match[1]), int(match[2])


def test_each_reader_gets_its_own_render(counter_fs: RunningFs) -> None:
    path = counter_fs.path("proc/counter")
    readers = [subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE) for _ in range(3)]
    renders = set()
    for reader in readers:
        out, _ = reader.communicate(timeout=10)
        pid, render = _header(out)
        assert pid == reader.pid
        renders.add(render)
    assert len(renders) == 3


def test_small_reads_come_from_one_snapshot(counter_fs: RunningFs) -> None:
    fd = os.open(counter_fs.path("proc/counter"), os.O_RDONLY)
    try:
        pieces = []
        while chunk := os.read(fd, 7):
            pieces.append(chunk)
        data = b"".join(pieces)
    finally:
        os.close(fd)
    pid, _ = _header(data)
    assert pid == os.getpid()
    assert data.endswith(b"line 0099\n")
    assert data.count(b"render=") == 1
    # one render served all ~150 requests
    assert len(pieces) > 100


def test_lseek_to_zero_renders_afresh_on_a_kept_open_fd(counter_fs: RunningFs) -> None:
    fd = os.open(counter_fs.path("proc/counter"), os.O_RDONLY)
    try:
        _, first = _header(os.read(fd, 4096))
        os.lseek(fd, 0, os.SEEK_SET)
        _, second = _header(os.read(fd, 4096))
        # pread at an offset of the same fd: from the second snapshot
        assert os.pread(fd, 9, len(f"pid={os.getpid()} render={second}\n")) == b"line 0000"
    finally:
        os.close(fd)
    assert second > first


def test_a_first_read_at_an_offset_returns_data(counter_fs: RunningFs) -> None:
    fd = os.open(counter_fs.path("proc/counter"), os.O_RDONLY)
    try:
        data = os.pread(fd, 10, 100)  # no read at offset 0 on this fd before
    finally:
        os.close(fd)
    # the render is "pid=P render=N\n" (< 40 bytes) + the line list: bytes 100..109 are
    # ten bytes of the line list (lxcfs would return b"" here)
    body = "".join(f"line {i:04d}\n" for i in range(100)).encode()
    assert len(data) == 10
    assert data in body


def test_reads_of_any_size(counter_fs: RunningFs) -> None:
    from counter_tree import BIG_SIZE

    big = counter_fs.path("proc/big")
    for size in (1, 4096, 65536, 1 << 20):
        fd = os.open(big, os.O_RDONLY)
        try:
            parts = []
            while chunk := os.read(fd, size):
                parts.append(chunk)
                if size == 1 and len(parts) > 2000:
                    break  # enough to prove byte-wise reads; the rest is the same path
        finally:
            os.close(fd)
        data = b"".join(parts)
        if size > 1:
            head_len = data.index(b"\n") + 1
            assert len(data) - head_len == BIG_SIZE // 65 * 65
            assert data.count(b"render=") == 1
        else:
            assert len(data) == 2001


def test_listing_links_and_attributes(counter_fs: RunningFs) -> None:
    assert sorted(os.listdir(counter_fs.mountpoint)) == ["proc", "sys"]
    assert sorted(os.listdir(counter_fs.path("proc"))) == ["big", "broken", "counter", "meminfo"]
    assert os.readlink(counter_fs.path("sys/link")) == "../proc/counter"
    st = os.stat(counter_fs.path("proc/counter"))
    assert (st.st_mode & 0o7777, st.st_uid, st.st_size) == (0o444, 0, 0)
    with pytest.raises(FileNotFoundError):
        os.stat(counter_fs.path("proc/nope"))


def test_the_mount_is_read_only(counter_fs: RunningFs) -> None:
    target = counter_fs.path("proc/counter")
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC):
        with pytest.raises(OSError) as exc:
            os.open(target, flags)
        assert exc.value.errno in (errno.EROFS, errno.EACCES)
    with pytest.raises(OSError) as exc:
        os.mkdir(counter_fs.path("proc/new"))
    assert exc.value.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
    entry = mount_at(counter_fs.mountpoint)
    assert entry is not None and (entry.fstype, entry.source) == ("fuse.lxcfs", "kube-lxcfs")


def test_a_broken_render_fails_that_read_only(counter_fs: RunningFs) -> None:
    with pytest.raises(OSError) as exc:
        counter_fs.path("proc/broken").read_bytes()
    assert exc.value.errno == errno.EIO
    pid, _ = _header(counter_fs.path("proc/counter").read_bytes())
    assert pid == os.getpid()
    assert counter_fs.process.poll() is None
    assert "rendering /proc/broken" in counter_fs.log()


def test_threads_are_callers_too(counter_fs: RunningFs) -> None:
    """The caller is the reading thread (its tid works as a /proc/<pid> key)."""
    import threading

    result: dict[str, int] = {}

    def read() -> None:
        result["tid"] = threading.get_native_id()
        result["pid"] = _header(counter_fs.path("proc/counter").read_bytes())[0]

    thread = threading.Thread(target=read)
    thread.start()
    thread.join(10)
    assert result["pid"] == result["tid"] != os.getpid()


def test_sigterm_unmounts_and_exits_zero(counter_fs: RunningFs) -> None:
    assert counter_fs.stop(signal.SIGTERM) == 0
    assert mount_at(counter_fs.mountpoint) is None
    log = counter_fs.log()
    assert "serving" in log and "unmounted" in log and "Traceback" not in log


def test_sigint_unmounts_and_exits_zero(counter_fs: RunningFs) -> None:
    assert counter_fs.stop(signal.SIGINT) == 0
    assert mount_at(counter_fs.mountpoint) is None


def test_restart_after_kill_detaches_the_dead_mount(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("FUSE mounts need root")
    mountpoint = tmp_path / "mnt"
    first = start_script_daemon(COUNTER_TREE, mountpoint)
    try:
        first.process.kill()
        first.process.wait(10)
        assert mount_state(mountpoint) is MountState.STALE
        second = start_script_daemon(COUNTER_TREE, mountpoint)
        try:
            pid, render = _header(second.path("proc/counter").read_bytes())
            assert (pid, render) == (os.getpid(), 1)
            assert "dead FUSE mount" in second.log()
        finally:
            assert second.stop() == 0
        assert mount_at(mountpoint) is None
    finally:
        first.stop()


def test_restart_after_an_aborted_connection(tmp_path: Path) -> None:
    """An operator aborts a hung daemon's connection (fusectl); the next daemon takes over."""
    if os.geteuid() != 0:
        pytest.skip("FUSE mounts need root")
    control = tmp_path / "fusectl"
    control.mkdir()
    subprocess.run(["mount", "-t", "fusectl", "fusectl", str(control)], check=True)
    mountpoint = tmp_path / "mnt"
    first = start_script_daemon(COUNTER_TREE, mountpoint)
    try:
        abort = control / str(os.minor(os.stat(mountpoint).st_dev)) / "abort"
        abort.write_text("1")
        assert mount_state(mountpoint) is MountState.STALE
        first.process.wait(10)
        second = start_script_daemon(COUNTER_TREE, mountpoint)
        try:
            assert _header(second.path("proc/counter").read_bytes())[1] == 1
            assert "dead FUSE mount" in second.log()
        finally:
            assert second.stop() == 0
    finally:
        first.stop()
        subprocess.run(["umount", str(control)], check=False)


def test_a_live_mount_is_not_taken_over(counter_fs: RunningFs, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(COUNTER_TREE), str(counter_fs.mountpoint)],
        capture_output=True,
        check=False,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "already a FUSE mount" in proc.stderr
    # the first daemon still serves
    assert _header(counter_fs.path("proc/counter").read_bytes())[0] == os.getpid()


def test_a_bind_mounted_directory_is_mounted_over(tmp_path: Path) -> None:
    """A hostPath volume in the agent's container is a bind mount: the daemon must take it."""
    if os.geteuid() != 0:
        pytest.skip("FUSE and bind mounts need root")
    volume, mountpoint = tmp_path / "host-dir", tmp_path / "mnt"
    volume.mkdir()
    mountpoint.mkdir()
    subprocess.run(["mount", "--bind", str(volume), str(mountpoint)], check=True)
    try:
        under = mount_at(mountpoint)
        assert under is not None and not under.fstype.startswith("fuse")
        fs = start_script_daemon(COUNTER_TREE, mountpoint)
        try:
            assert fs.path("proc/counter").read_bytes().startswith(b"pid=")
            top = mount_at(mountpoint)
            assert top is not None and top.fstype.startswith("fuse")
            assert f"mounting over the {under.fstype} mount" in fs.log()
        finally:
            assert fs.stop() == 0
        # the daemon's own mount is gone, the volume's bind mount stays
        left = mount_at(mountpoint)
        assert left is not None and left.mount_id == under.mount_id
    finally:
        subprocess.run(["umount", str(mountpoint)], check=False)


def test_a_missing_mountpoint_is_created(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("FUSE mounts need root")
    fs = start_script_daemon(COUNTER_TREE, tmp_path / "deep" / "er" / "mnt")
    try:
        assert fs.path("proc/counter").read_bytes().startswith(b"pid=")
    finally:
        fs.stop()


def test_wait_for_polls_until_true() -> None:
    calls = iter([0, 0, 3])
    assert wait_for(lambda: next(calls), 5, "the third call") == 3
    with pytest.raises(TimeoutError, match="never"):
        wait_for(lambda: False, 0.05, "never")


def test_fs_command_refuses_a_live_mount_with_one_line(counter_fs: RunningFs) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kube_lxcfs", "fs", str(counter_fs.mountpoint)],
        capture_output=True,
        check=False,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("kube-lxcfs fs: ") and "already a FUSE mount" in last
    assert "Traceback" not in proc.stderr


def test_a_locked_pidfile_refuses_a_second_daemon(tmp_path: Path) -> None:
    import fcntl

    pidfile = tmp_path / "fs.pid"
    fd = os.open(pidfile, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = subprocess.run(
            [sys.executable, "-m", "kube_lxcfs", "fs", "-p", str(pidfile), str(tmp_path / "m")],
            capture_output=True,
            check=False,
            text=True,
            timeout=30,
        )
    finally:
        os.close(fd)
    assert proc.returncode == 1
    assert "another daemon is running" in proc.stderr
    assert not (tmp_path / "m").exists() or mount_at(tmp_path / "m") is None

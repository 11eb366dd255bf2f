"""Helpers for the tests that run inside the pure cgroup v2 VM: daemons, readers, parsers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kube_lxcfs.cgroups.transient import TransientCgroup

CGROUP_ROOT = Path("/sys/fs/cgroup")
DATA_DISK = Path("/dev/vdb")  # a blank virtio disk the harness attaches for I/O tests
MOUNT_DEADLINE = 90.0  # seconds; emulated CPUs on a busy host are slow


def wait_for(condition: Callable[[], bool], what: str, deadline: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    delay = 0.01
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline:.0f} s waiting for {what}")
        time.sleep(delay)  # polling a condition with a deadline
        delay = min(delay * 2, 0.2)


def is_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as mounts:
        return any(line.split()[4] == target for line in mounts)


@dataclass
class FuseDaemon:
    """A FUSE filesystem process this test session started, and where it is mounted."""

    name: str
    mountpoint: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def path(self, relative: str) -> Path:
        return self.mountpoint / relative.lstrip("/")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def read_as(self, cg: TransientCgroup, relative: str) -> str:
        """``relative`` (e.g. ``proc/meminfo``) as a process inside ``cg`` reads it."""
        done = cg.run(["cat", str(self.path(relative))], timeout=60)
        assert done.returncode == 0, f"{self.name}: cat {relative}: {done.stderr}"
        return done.stdout

    def read_here(self, relative: str) -> str:
        return self.path(relative).read_text()


@contextlib.contextmanager
def fuse_daemon(name: str, argv_for: Callable[[Path], list[str]]) -> Iterator[FuseDaemon]:
    """Start a FUSE daemon on a fresh temp mountpoint; stop it and unmount, whatever happens."""
    workdir = Path(tempfile.mkdtemp(prefix=f"klx-{name}-"))
    mountpoint = workdir / "mnt"
    mountpoint.mkdir()
    log_path = workdir / "daemon.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv_for(mountpoint), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    daemon = FuseDaemon(name, mountpoint, process, log_path)
    try:

        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}:\n{daemon.log()}")
            return is_mounted(mountpoint) and (mountpoint / "proc" / "meminfo").exists()

        wait_for(ready, f"{name} to mount {mountpoint}", MOUNT_DEADLINE)
        yield daemon
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if is_mounted(mountpoint):
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        with contextlib.suppress(OSError):
            mountpoint.rmdir()


def block_device_numbers(device: Path) -> str:
    """``MAJ:MIN`` of a block device, as io.max and io.stat name it."""
    rdev = device.stat().st_rdev
    return f"{os.major(rdev)}:{os.minor(rdev)}"


def meminfo_kb(text: str) -> dict[str, int]:
    """``{"MemTotal": 262144, ...}`` from meminfo text (values in kB)."""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields:
            values[key] = int(fields[0])
    return values


def cpuinfo_processors(text: str) -> list[int]:
    """The ``processor : N`` ids of cpuinfo text, in order."""
    return [int(line.split(":")[1]) for line in text.splitlines() if line.startswith("processor")]


def stat_cpu_lines(text: str) -> list[str]:
    """Names of the per-CPU lines of /proc/stat text (``cpu0``, ``cpu1``...)."""
    return [
        line.split()[0]
        for line in text.splitlines()
        if line.startswith("cpu") and line.split()[0] != "cpu"
    ]


@contextlib.contextmanager
def holding_memory(cg: TransientCgroup, mib: int) -> Iterator[subprocess.Popen[str]]:
    """A process in ``cg`` that has touched ``mib`` MiB of anonymous memory until released."""
    code = (
        f"b = bytearray({mib} * 1024 * 1024)\n"
        "for i in range(0, len(b), 4096): b[i] = 1\n"
        "print('ready', flush=True)\n"
        "import sys; sys.stdin.read()\n"
    )
    proc = cg.popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", f"memory holder died: {proc.wait()}"
        yield proc
    finally:
        proc.kill()
        proc.wait()

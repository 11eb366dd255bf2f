"""Helpers for the tests that run inside the pure cgroup v2 VM: readers and parsers.

``meminfo_kb`` and ``processors`` are the shared ones of tests/support/readers.py.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from kube_lxcfs.cgroups.transient import TransientCgroup
from support.fsdaemons import RunningFs
from support.readers import meminfo_kb, processors

CGROUP_ROOT = Path("/sys/fs/cgroup")
DATA_DISK = Path("/dev/vdb")  # a blank virtio disk the harness attaches for I/O tests


def cgroup_dir(cg: TransientCgroup) -> Path:
    return CGROUP_ROOT / cg.path.lstrip("/")


def read_as(fs: RunningFs, cg: TransientCgroup, relative: str) -> str:
    """``relative`` (e.g. ``proc/meminfo``) of ``fs`` as a process inside ``cg`` reads it."""
    done = cg.run(["cat", str(fs.path(relative))], timeout=120)
    assert done.returncode == 0, f"{fs.name}: cat {relative}: {done.stderr}"
    return done.stdout


def poll(condition: Callable[[], object], what: str, deadline: float = 120.0) -> object:
    """Poll ``condition`` until truthy; fail naming ``what`` after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    delay = 0.01
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:.0f} s waiting for {what}")
        time.sleep(delay)  # polling a condition with a deadline
        delay = min(delay * 2, 0.2)


def block_device_numbers(device: Path) -> str:
    """``MAJ:MIN`` of a block device, as io.max and io.stat name it."""
    rdev = device.stat().st_rdev
    return f"{os.major(rdev)}:{os.minor(rdev)}"


def flat_keyed(text: str) -> dict[str, int]:
    """``{"usage_usec": 123, ...}`` from a flat-keyed cgroup file (cpu.stat, memory.stat)."""
    return {k: int(v) for k, v in (line.split() for line in text.splitlines() if line.strip())}


def stat_cpu_lines(text: str) -> dict[str, list[int]]:
    """``{"cpu": [...], "cpu0": [...]}``: the CPU lines of /proc/stat text, in order."""
    return {
        line.split()[0]: [int(v) for v in line.split()[1:]]
        for line in text.splitlines()
        if line.startswith("cpu")
    }


def diskstats_devices(text: str) -> dict[str, list[int]]:
    """``{"vdb": [reads completed, merged, sectors, ...]}`` from diskstats text."""
    return {
        parts[2]: [int(v) for v in parts[3:]]
        for parts in (line.split() for line in text.splitlines())
        if len(parts) > 3
    }


def pressure_totals(text: str) -> dict[str, int]:
    """``{"some": total_us, "full": total_us}`` from a PSI file."""
    totals = {}
    for line in text.splitlines():
        kind, *fields = line.split()
        totals[kind] = int(dict(f.split("=") for f in fields)["total"])
    return totals


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


__all__ = [
    "CGROUP_ROOT", "DATA_DISK", "block_device_numbers", "cgroup_dir", "diskstats_devices",
    "flat_keyed", "holding_memory", "meminfo_kb", "poll", "pressure_totals", "processors",
    "read_as", "stat_cpu_lines",
]  # fmt: skip

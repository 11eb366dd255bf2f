"""What a pod can do to the node daemon by reading: odd cgroup names, read floods.

A process that may create cgroups (a privileged pod, a pod with a delegated cgroup v2
subtree, systemd in a container) chooses their names; the kernel refuses only ``/`` and
``\\n``. Every reader here is a real process in a real cgroup reading through a real FUSE
mount (docs/security.md).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kube_lxcfs.cgroups.transient import Limits, MiB, create_cgroup, host_layout, unique_name
from support.fsdaemons import RunningFs
from support.readers import meminfo_kb, read_files

pytestmark = [pytest.mark.root, pytest.mark.fuse]

OWN_MIB = 200
OTHER_MIB = 300

ODD_NAMES = {
    "space": "with space",
    "colon": "a:b:c",
    "backslash": "back\\slash",
    "not UTF-8": "bytes-\udcff\udcfe",  # b"bytes-\xff\xfe" on disk
    "UTF-8": "été-ü",
    "tab": "tab\there",
    "deleted suffix": "x (deleted)",
    "255 bytes": "n" * 255,
    "dot dot prefix": "..x",
}
SPLITTERS = {
    "CR": "\r",
    "VT": "\x0b",
    "FF": "\x0c",
    "FS": "\x1c",
    "GS": "\x1d",
    "RS": "\x1e",
    "NEL": "\x85",
    "LINE SEPARATOR": "\u2028",
}
"""Characters ``str.splitlines`` splits at and the kernel allows in a cgroup name."""


def memtotal_mib(fs: RunningFs, cgroup) -> int:
    path = str(fs.mountpoint / "proc" / "meminfo")
    text = read_files([path], cgroup=cgroup)[path]
    return meminfo_kb(text)["MemTotal"] // 1024


def fake_line_for(victim_path: str) -> str:
    """A /proc/<pid>/cgroup line that would put its reader into ``victim_path``."""
    memory = host_layout().hierarchy("memory")
    assert memory is not None
    hierarchy_id = "0" if memory.version == 2 else memory_hierarchy_id()
    return f"{hierarchy_id}:{'' if memory.version == 2 else 'memory'}:{victim_path}"


def memory_hierarchy_id() -> str:
    for line in Path("/proc/self/cgroup").read_text().split("\n"):
        number, _, rest = line.partition(":")
        if "memory" in rest.partition(":")[0].split(","):
            return number
    raise AssertionError("no v1 memory hierarchy")


@pytest.mark.parametrize("name", list(ODD_NAMES.values()), ids=list(ODD_NAMES))
def test_a_cgroup_with_an_odd_name_reads_its_own_limits(kube_lxcfs_fs: RunningFs, name) -> None:
    with create_cgroup(f"{unique_name()}/{name}", Limits(memory=OWN_MIB * MiB)) as cg:
        assert memtotal_mib(kube_lxcfs_fs, cg) == OWN_MIB


@pytest.mark.parametrize("splitter", list(SPLITTERS.values()), ids=list(SPLITTERS))
def test_a_cgroup_name_cannot_claim_another_cgroups_limits(
    kube_lxcfs_fs: RunningFs, splitter: str
) -> None:
    """A name that carries a whole fake ``/proc/<pid>/cgroup`` line after a character that
    Python (not the kernel) treats as a line break: the reader gets its own limits, never the
    victim's (it used to get the victim's)."""
    base = unique_name()
    with create_cgroup(f"{base}/victim", Limits(memory=OTHER_MIB * MiB)) as victim:
        name = f"{base}/x{splitter}{fake_line_for(victim.path)}"
        with create_cgroup(name, Limits(memory=OWN_MIB * MiB)) as attacker:
            assert memtotal_mib(kube_lxcfs_fs, attacker) == OWN_MIB
            assert memtotal_mib(kube_lxcfs_fs, victim) == OTHER_MIB


FLOOD = """\
import sys, time
path, seconds = sys.argv[1], float(sys.argv[2])
reads, wrong, end = 0, 0, time.monotonic() + seconds
while time.monotonic() < end:
    with open(path, "rb") as f:
        first = f.readline().split()
    reads += 1
    wrong += int(first[1]) != int(sys.argv[3])
print(reads, wrong)
"""
FLOODERS = 24
FLOOD_SECONDS = 3.0
PROBES = 20
PROBE_LIMIT = 2.0  # seconds for one read by a bystander while the flood runs


def test_a_read_flood_from_many_readers_leaves_others_answered(kube_lxcfs_fs: RunningFs) -> None:
    """24 processes in 4 cgroups read /proc/meminfo as fast as they can for 3 s: each gets its
    own cgroup's value every time, and a bystander in a fifth cgroup is answered within 2 s on
    every one of its reads meanwhile (the daemon serves one request at a time; a flood costs
    the daemon's CPU and lengthens everybody's queue, it does not starve anyone)."""
    path = str(kube_lxcfs_fs.mountpoint / "proc" / "meminfo")
    parent = create_cgroup(unique_name())
    cgroups = [parent.child(f"flood{i}", Limits(memory=(100 + 20 * i) * MiB)) for i in range(4)]
    bystander = parent.child("bystander", Limits(memory=OWN_MIB * MiB))
    flooders: list[subprocess.Popen[str]] = []
    try:
        for n in range(FLOODERS):
            cg = cgroups[n % len(cgroups)]
            kib = cg.limits.memory // 1024
            argv = [sys.executable, "-c", FLOOD, path, str(FLOOD_SECONDS), str(kib)]
            flooders.append(cg.popen(argv, stdout=subprocess.PIPE, text=True))
        waits = []
        for _ in range(PROBES):
            started = time.monotonic()
            assert memtotal_mib(kube_lxcfs_fs, bystander) == OWN_MIB
            waits.append(time.monotonic() - started)
        results = [p.communicate(timeout=60)[0].split() for p in flooders]
    finally:
        for p in flooders:
            p.kill()
            p.wait()
        parent.remove()
    reads = sum(int(r[0]) for r in results)
    assert all(int(r[1]) == 0 for r in results), results
    print(
        f"\nflood: {FLOODERS} readers, {reads} reads in {FLOOD_SECONDS:.0f}s, all their own; "
        f"bystander reads (process start included) max {max(waits):.2f}s, "
        f"median {sorted(waits)[len(waits) // 2]:.2f}s"
    )
    assert reads > FLOODERS  # the flood really ran
    assert max(waits) < PROBE_LIMIT


def test_writes_odd_names_and_huge_offsets_through_the_mount(kube_lxcfs_fs: RunningFs) -> None:
    """The mount is read-only, names outside the tree do not exist, offsets past the end are
    the end: nothing a reader does changes or reveals more than the virtual files."""
    meminfo = kube_lxcfs_fs.mountpoint / "proc" / "meminfo"
    for attempt in (
        lambda: os.open(meminfo, os.O_WRONLY),
        lambda: os.open(meminfo, os.O_RDWR | os.O_TRUNC),
        lambda: os.open(kube_lxcfs_fs.mountpoint / "proc" / "new", os.O_CREAT | os.O_WRONLY),
        lambda: os.mkdir(kube_lxcfs_fs.mountpoint / "proc" / "dir"),
        lambda: os.chmod(meminfo, 0o777),
        lambda: os.truncate(meminfo, 0),
        lambda: os.unlink(meminfo),
        lambda: os.symlink("/etc/shadow", kube_lxcfs_fs.mountpoint / "proc" / "link"),
    ):
        with pytest.raises(OSError) as exc:
            attempt()
        assert exc.value.errno in (errno.EROFS, errno.EACCES), exc.value
    for name in ("...", "meminfo ", "MEMINFO", "\udcff", "x" * 255, "self", "1"):
        assert not (kube_lxcfs_fs.mountpoint / "proc" / name).exists(), name
    fd = os.open(meminfo, os.O_RDONLY)
    try:
        assert os.pread(fd, 4096, 1 << 62) == b""
        assert os.pread(fd, 4096, 0).startswith(b"MemTotal:")
    finally:
        os.close(fd)

"""Readers that copy with sendfile(2) or trust ``st_size``, through the real mount.

Since Linux 6.5 a splice from a direct_io FUSE file goes through the page cache
and stops at the inode's size: with /proc's size 0, busybox ``cat`` (sendfile) and
Python's ``shutil.copyfile`` printed nothing, and with a size larger than the text
``tail -c`` and ``wc -c`` go wrong.  One kernel inode serves every container, and a
splice of a shorter text shrinks it, so the next container's longer text would be
cut (lxcfs 5.0.3 does that: tests/lxcfs/test_differential.py).  The expected texts
here come from plain read(2) by the same reader, never from the code under test.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from kube_lxcfs.cgroups.transient import Limits, MiB, TransientCgroup, create_cgroup, unique_name
from support.fsdaemons import RunningFs
from support.readers import behind_bind_mounts, meminfo_kb, processors

pytestmark = [pytest.mark.root, pytest.mark.fuse]

BUSYBOX = shutil.which("busybox")
STABLE_FILES = ("proc/meminfo", "proc/cpuinfo", "proc/swaps", "sys/devices/system/cpu/online")
"""Files whose text does not change between two reads a moment apart (counts aside)."""
TIME_FILES = ("proc/uptime", "proc/stat", "proc/loadavg", "proc/diskstats")


@pytest.fixture(scope="module")
def busybox() -> str:
    if BUSYBOX is None:
        pytest.fail("busybox is missing: apt-get install busybox (busybox-static, deps/apt/vm.txt)")
    return BUSYBOX


@pytest.fixture
def one_cpu_256m():
    with create_cgroup(unique_name("sendfile"), Limits(memory=256 * MiB, cpuset="0")) as cg:
        yield cg


def _shape(text: str) -> list[str]:
    """Each line's words with digits masked: what two reads a moment apart share."""
    return [re.sub(r"\d+", "N", " ".join(line.split()[:2])) for line in text.splitlines()]


def _run(cg: TransientCgroup, argv: list[str], prefix: list[str] | None = None) -> str:
    done = cg.run([*(prefix or []), *argv], timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_busybox_cat_prints_the_whole_text(
    kube_lxcfs_fs: RunningFs, busybox: str, one_cpu_256m: TransientCgroup
) -> None:
    for name in (*STABLE_FILES, *TIME_FILES):
        path = str(kube_lxcfs_fs.path(name))
        by_read = _run(one_cpu_256m, ["cat", path])
        by_sendfile = _run(one_cpu_256m, [busybox, "cat", path])
        assert by_read, name
        if name in STABLE_FILES:
            assert by_sendfile.split()[:4] == by_read.split()[:4], name
            assert len(by_sendfile.splitlines()) == len(by_read.splitlines()), name
        else:  # counters move between the two reads; the shape does not
            assert _shape(by_sendfile) == _shape(by_read), name
    meminfo = _run(one_cpu_256m, [busybox, "cat", str(kube_lxcfs_fs.path("proc/meminfo"))])
    assert meminfo_kb(meminfo)["MemTotal"] == 262144
    cpuinfo = _run(one_cpu_256m, [busybox, "cat", str(kube_lxcfs_fs.path("proc/cpuinfo"))])
    assert processors(cpuinfo) == [0]


def test_python_shutil_copyfile_and_cp_copy_the_text(
    kube_lxcfs_fs: RunningFs, one_cpu_256m: TransientCgroup, tmp_path: Path
) -> None:
    source = str(kube_lxcfs_fs.path("proc/meminfo"))
    copy = tmp_path / "meminfo"
    script = "import shutil, sys; shutil.copyfile(sys.argv[1], sys.argv[2])"
    _run(one_cpu_256m, [sys.executable, "-c", script, source, str(copy)])
    assert meminfo_kb(copy.read_text())["MemTotal"] == 262144
    copy.unlink()
    _run(one_cpu_256m, ["cp", source, str(copy)])
    assert meminfo_kb(copy.read_text())["MemTotal"] == 262144


def test_size_seeking_readers_agree_with_read(
    kube_lxcfs_fs: RunningFs, busybox: str, one_cpu_256m: TransientCgroup
) -> None:
    """``tail -c`` seeks from st_size and ``wc -c`` may trust it: both must see the text."""
    path = str(kube_lxcfs_fs.path("proc/cpuinfo"))
    text = _run(one_cpu_256m, ["cat", path])
    assert _run(one_cpu_256m, ["tail", "-c", "30", path]) == text[-30:]
    assert _run(one_cpu_256m, [busybox, "tail", "-c", "30", path]) == text[-30:]
    assert _run(one_cpu_256m, ["wc", "-c", path]).split()[0] == str(len(text.encode()))
    script = (
        "import os, sys\n"
        "with open(sys.argv[1], 'rb') as f:\n"
        "    size = os.fstat(f.fileno()).st_size\n"
        "    data = f.read()\n"
        "    print(size, len(data), os.fstat(f.fileno()).st_size)\n"
    )
    before, read, after = _run(one_cpu_256m, [sys.executable, "-c", script, path]).split()
    assert before == read == after == str(len(text.encode()))


def test_a_shorter_text_does_not_cut_the_next_container(
    kube_lxcfs_fs: RunningFs, busybox: str
) -> None:
    """Two containers (own mount namespaces, the file bind-mounted over /proc) take turns."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs to give two containers different cpuinfo texts")
    source = str(kube_lxcfs_fs.path("proc/cpuinfo"))
    meminfo = str(kube_lxcfs_fs.path("proc/meminfo"))
    binds = behind_bind_mounts({source: "/proc/cpuinfo", meminfo: "/proc/meminfo"})
    small = Limits(memory=128 * MiB, cpuset="0")
    large = Limits(memory=1024 * MiB, cpuset="0-1")
    with (
        create_cgroup(unique_name("sendfile-small"), small) as one,
        create_cgroup(unique_name("sendfile-large"), large) as two,
    ):
        seen = []
        for cg in (two, one, two, one, two):
            cpuinfo = _run(cg, [busybox, "cat", "/proc/cpuinfo"], binds)
            mem = _run(cg, [busybox, "cat", "/proc/meminfo"], binds)
            seen.append((len(processors(cpuinfo)), meminfo_kb(mem)["MemTotal"]))
    assert seen == [(2, 1048576), (1, 131072), (2, 1048576), (1, 131072), (2, 1048576)]

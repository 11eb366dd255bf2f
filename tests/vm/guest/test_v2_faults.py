"""A reader whose cgroup is removed while it holds our files open, on cgroup v2.

A v2 cgroup can only be removed once empty, so the reader is moved out first; it keeps its
open file descriptions. Its snapshot stays readable, a re-read renders for its new cgroup,
and the daemon keeps serving everybody, with per-cgroup state of the removed cgroup gone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from v2guest import cgroup_dir, meminfo_kb, read_as

from kube_lxcfs.cgroups.transient import Limits, MiB, create_cgroup, unique_name
from support.fsdaemons import RunningFs

# The reader: on the first line from stdin it opens meminfo and loadavg; on every line it
# (re-)reads both from offset 0 and answers with the MemTotal and the loadavg tasks it saw.
READER = """
import os, sys
paths = [os.path.join(sys.argv[1], p) for p in ("proc/meminfo", "proc/loadavg")]
print("started", flush=True)
sys.stdin.readline()
fds = [os.open(p, os.O_RDONLY) for p in paths]
def read_all(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 1 << 16).decode()
def report():
    meminfo, loadavg = (read_all(fd) for fd in fds)
    total = next(l.split()[1] for l in meminfo.splitlines() if l.startswith("MemTotal:"))
    print(total, loadavg.split()[3], flush=True)
report()
for _ in sys.stdin:
    report()
"""


def test_reader_outlives_its_removed_cgroup(ours: RunningFs) -> None:
    host_total = meminfo_kb(Path("/proc/meminfo").read_text())["MemTotal"]
    name = unique_name("kube-lxcfs-test-v2")
    with create_cgroup(name + "-new") as new_home:
        cg = create_cgroup(name, Limits(memory=128 * MiB))
        # started outside the cgroup, so that removing the cgroup does not kill it
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, str(ours.mountpoint)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert reader.stdout is not None and reader.stdin is not None
            assert reader.stdout.readline() == "started\n"
            cg.add_pid(reader.pid)
            reader.stdin.write("go\n")
            reader.stdin.flush()
            assert reader.stdout.readline().split()[0] == "131072"
            # move the reader out, then remove its cgroup while the files stay open
            new_home.add_pid(reader.pid)
            cg.remove()
            assert not cgroup_dir(cg).exists()
            reader.stdin.write("again\n")
            reader.stdin.flush()
            answer = reader.stdout.readline()
            assert len(answer.split()) == 2, answer + reader.stdout.read()
            total, tasks = answer.split()
            assert int(total) == host_total  # its new cgroup has no limit
            running, total_tasks = (int(v) for v in tasks.split("/"))
            assert 0 <= running <= total_tasks
            # the daemon still serves other readers
            with create_cgroup(name + "-other", Limits(memory=64 * MiB)) as other:
                assert meminfo_kb(read_as(ours, other, "proc/meminfo"))["MemTotal"] == 65536
        finally:
            reader.kill()
            reader.wait()
            cg.remove()
    assert ours.process.poll() is None
    assert "Traceback" not in ours.log()


def test_every_file_still_reads_after_its_cgroup_is_removed(ours: RunningFs) -> None:
    """Per-cgroup state (loadavg samples, stat history) must not outlive the cgroup badly."""
    name = unique_name("kube-lxcfs-test-v2")
    with create_cgroup(name, Limits(memory=96 * MiB)) as cg:
        assert meminfo_kb(read_as(ours, cg, "proc/meminfo"))["MemTotal"] == 98304
        for relative in ("proc/loadavg", "proc/stat", "proc/uptime", "proc/diskstats"):
            read_as(ours, cg, relative)
    with create_cgroup(name) as again:  # the same path, a new cgroup without limits
        host_total = meminfo_kb(Path("/proc/meminfo").read_text())["MemTotal"]
        assert meminfo_kb(read_as(ours, again, "proc/meminfo"))["MemTotal"] == host_total
        assert read_as(ours, again, "proc/loadavg").startswith("0.00 0.00 0.00 ")
    for relative in ("proc/meminfo", "proc/stat", "proc/loadavg", "proc/diskstats"):
        assert ours.path(relative).read_text()
    assert ours.process.poll() is None

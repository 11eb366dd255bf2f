"""The CPU view on pure cgroup v2: cpu.max, cpuset.cpus, nesting, /proc/stat from cpu.stat.

The VM has 2 vCPUs. Our default CPU count is min(effective cpuset, ceil(quota/period)) with
the quota the smallest ratio over the ancestors, and CPUs keep their real ids. lxcfs 5.0.3
ignores cpu.max without --enable-cfs, reads only the cgroup's own cpu.max with it,
renumbers cpuinfo from 0 and has no per-CPU usage for /proc/stat on v2.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from v2guest import cgroup_dir, flat_keyed, poll, processors, read_as, stat_cpu_lines

from kube_lxcfs.cgroups.transient import Limits, TransientCgroup, create_cgroup, unique_name
from support.fsdaemons import RunningFs

USER_HZ = os.sysconf("SC_CLK_TCK")
assert os.cpu_count() == 2, "these tests are written for the tier's 2 vCPUs"


def name() -> str:
    return unique_name("kube-lxcfs-test-v2")


def cpu_view(fs: RunningFs, cg: TransientCgroup) -> tuple[list[int], str, list[str]]:
    """(cpuinfo processor ids, sys cpu/online, /proc/stat cpuN names) as seen from ``cg``."""
    return (
        processors(read_as(fs, cg, "proc/cpuinfo")),
        read_as(fs, cg, "sys/devices/system/cpu/online").strip(),
        [n for n in stat_cpu_lines(read_as(fs, cg, "proc/stat")) if n != "cpu"],
    )


def test_cpu_max_limits_the_cpus(ours: RunningFs, lxcfs: RunningFs, lxcfs_cfs: RunningFs) -> None:
    with create_cgroup(name(), Limits.for_cpus(1)) as cg:
        assert (cgroup_dir(cg) / "cpu.max").read_text() == "100000 100000\n"
        assert cpu_view(ours, cg) == ([0], "0", ["cpu0"])
        assert read_as(ours, cg, "sys/devices/system/cpu/offline").strip() == "1"
        assert read_as(ours, cg, "sys/devices/system/cpu/cpu1/online").strip() == "0"
        assert read_as(ours, cg, "sys/devices/system/cpu/cpu0/online").strip() == "1"
        # lxcfs: cpu.max ignored by default; with --enable-cfs the count agrees with ours,
        # but /proc/stat still lists every host CPU (no cpuacct on v2)
        assert cpu_view(lxcfs, cg) == ([0, 1], "0-1", ["cpu0", "cpu1"])
        assert cpu_view(lxcfs_cfs, cg) == ([0], "0", ["cpu0", "cpu1"])


def test_cpuset_keeps_real_cpu_ids(ours: RunningFs, lxcfs: RunningFs) -> None:
    with create_cgroup(name(), Limits(cpuset="1")) as cg:
        assert cpu_view(ours, cg) == ([1], "1", ["cpu1"])
        assert read_as(ours, cg, "sys/devices/system/cpu/offline").strip() == "0"
        # lxcfs agrees on the count and online, but renumbers cpuinfo from 0
        assert cpu_view(lxcfs, cg) == ([0], "1", ["cpu1"])


def test_nested_cpu_max_uses_the_smallest_ratio(ours: RunningFs, lxcfs_cfs: RunningFs) -> None:
    with create_cgroup(name(), Limits.for_cpus(0.5)) as parent:
        child = parent.child("wide", Limits.for_cpus(2))
        assert (cgroup_dir(child) / "cpu.max").read_text() == "200000 100000\n"
        assert cpu_view(ours, child)[:2] == ([0], "0")
        # lxcfs 5.0.3 reads only the reader's own cpu.max (fixed in lxcfs 7.0)
        assert cpu_view(lxcfs_cfs, child)[:2] == ([0, 1], "0-1")


def test_nested_cpuset_is_the_effective_one(ours: RunningFs, lxcfs: RunningFs) -> None:
    with create_cgroup(name(), Limits(cpuset="1")) as parent:
        child = parent.child("inherits")
        assert (cgroup_dir(child) / "cpuset.cpus").read_text().strip() == ""
        assert (cgroup_dir(child) / "cpuset.cpus.effective").read_text() == "1\n"
        assert cpu_view(ours, child) == ([1], "1", ["cpu1"])
        assert len(cpu_view(lxcfs, child)[0]) == 1


def test_a_reader_without_limits_sees_every_cpu(ours: RunningFs, lxcfs: RunningFs) -> None:
    with create_cgroup(name()) as cg:
        assert cpu_view(ours, cg) == ([0, 1], "0-1", ["cpu0", "cpu1"])
        assert cpu_view(lxcfs, cg) == ([0, 1], "0-1", ["cpu0", "cpu1"])


def test_proc_stat_is_the_cgroups_cpu_stat(ours: RunningFs, lxcfs_cfs: RunningFs) -> None:
    """Busy time in /proc/stat is the cgroup's cpu.stat usage, not the host's (lxcfs #593)."""
    with create_cgroup(name(), Limits.for_cpus(1)) as cg:
        burner = cg.popen(["sh", "-c", "while :; do :; done"])
        cpu_stat = cgroup_dir(cg) / "cpu.stat"
        poll(
            lambda: flat_keyed(cpu_stat.read_text())["usage_usec"] >= 300_000,
            "the burner to use 0.3 s of CPU",
        )
        burner.send_signal(signal.SIGKILL)
        burner.wait()

        def busy_ticks() -> int:
            usage = flat_keyed(cpu_stat.read_text())
            return (usage["user_usec"] + usage["system_usec"]) * USER_HZ // 1_000_000

        before = busy_ticks()
        lines = stat_cpu_lines(read_as(ours, cg, "proc/stat"))
        after = busy_ticks()  # includes the reading `cat`, which runs in the cgroup too
        assert list(lines) == ["cpu", "cpu0"]
        user, nice, system = lines["cpu"][:3]
        assert before - 1 <= user + nice + system <= after + 1  # ±1: two fields rounded
        assert lines["cpu0"][:3] == lines["cpu"][:3]
        host = stat_cpu_lines(Path("/proc/stat").read_text())["cpu"]
        assert sum(host[:3]) > after + 100  # the host ran far more than this cgroup
        theirs = stat_cpu_lines(read_as(lxcfs_cfs, cg, "proc/stat"))
        assert sum(theirs["cpu"][:3]) > after + 100  # lxcfs shows the host's figures

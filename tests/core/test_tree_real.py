"""The tree on this machine's real /proc, /sys and cgroups (no FUSE: that is the fs tier).

Readers are real processes placed in real cgroups under a test-owned prefix by
``cgroups.transient``; every cgroup and process is removed, also on failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from kube_lxcfs.cgroups.parse import parse_meminfo_kb
from kube_lxcfs.cgroups.transient import Limits, MiB, create_cgroup, unique_name
from kube_lxcfs.tree import ProcTree, build_tree
from kube_lxcfs.vfs import FsOptions
from support.cgroups import move_to_root
from support.waiting import wait_for

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="creating cgroups needs root"),
]

HOST_CPUS = os.cpu_count() or 1


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


@pytest.fixture
def tree() -> Iterator[ProcTree]:
    t = build_tree(FsOptions())
    t.start()
    try:
        yield t
    finally:
        t.close()


def meminfo(tree: ProcTree, pid: int) -> dict[str, int]:
    return parse_meminfo_kb(tree.read("/proc/meminfo", pid).decode())


def cpu_lines(tree: ProcTree, pid: int) -> list[str]:
    text = tree.read("/proc/stat", pid).decode()
    return [line.split()[0] for line in text.splitlines() if line.startswith("cpu")]


@pytest.mark.skipif(HOST_CPUS < 2, reason="needs 2 CPUs for cpuset 0-1")
def test_done_criteria_reader_in_limited_cgroup(tree: ProcTree) -> None:
    limits = Limits(memory=256 * MiB, cpu_quota=50_000, cpu_period=100_000, cpuset="0-1")
    with create_cgroup(unique_name("kube-lxcfs-test-core"), limits) as cg:
        proc = cg.popen(["sleep", "300"])
        mem = meminfo(tree, proc.pid)
        assert mem["MemTotal"] == 262144
        assert 0 < mem["MemFree"] <= 262144
        cpuinfo = tree.read("/proc/cpuinfo", proc.pid).decode()
        assert cpuinfo.count("processor\t:") == 1
        assert "processor\t: 0\n" in cpuinfo
        assert "cpu cores\t: 1\n" in cpuinfo
        assert tree.read("/sys/devices/system/cpu/online", proc.pid) == b"0\n"
        offline = "1" if HOST_CPUS == 2 else f"1-{HOST_CPUS - 1}"
        assert tree.read("/sys/devices/system/cpu/offline", proc.pid) == f"{offline}\n".encode()
        assert tree.read("/sys/devices/system/cpu/cpu0/online", proc.pid) == b"1\n"
        assert tree.read("/sys/devices/system/cpu/cpu1/online", proc.pid) == b"0\n"
        assert cpu_lines(tree, proc.pid) == ["cpu", "cpu0"]
        with open("/proc/uptime") as f:
            host_uptime = float(f.read().split()[0])
        uptime = float(tree.read("/proc/uptime", proc.pid).split()[0])
        assert 0 < uptime <= host_uptime + 1
        assert tree.read("/proc/loadavg", proc.pid).startswith(b"0.00 0.00 0.00 ")
        swaps = tree.read("/proc/swaps", proc.pid).decode()
        assert swaps.startswith("Filename\t\t\t\tType")


def test_root_cgroup_reader_sees_host_totals(tree: ProcTree) -> None:
    proc = subprocess.Popen(["sleep", "300"])
    try:
        move_to_root(proc.pid)
        with open("/proc/meminfo") as f:
            host = parse_meminfo_kb(f.read())
        assert meminfo(tree, proc.pid)["MemTotal"] == host["MemTotal"]
        assert cpu_lines(tree, proc.pid) == ["cpu"] + [f"cpu{i}" for i in range(HOST_CPUS)]
        assert tree.read("/proc/cpuinfo", proc.pid).count(b"processor\t:") == HOST_CPUS
        with open("/sys/devices/system/cpu/online", "rb") as f:
            assert tree.read("/sys/devices/system/cpu/online", proc.pid) == f.read()
    finally:
        proc.kill()
        proc.wait()


def test_nested_limit_is_the_minimum(tree: ProcTree) -> None:
    with create_cgroup(unique_name("kube-lxcfs-test-core"), Limits(memory=128 * MiB)) as parent:
        inner = parent.child("inner", Limits())
        proc = inner.popen(["sleep", "300"])
        assert meminfo(tree, proc.pid)["MemTotal"] == 131072


def test_swap_limit_from_memsw(tree: ProcTree) -> None:
    limits = Limits(memory=128 * MiB, memory_swap=192 * MiB)
    try:
        cg = create_cgroup(unique_name("kube-lxcfs-test-core"), limits)
    except Exception as exc:  # a kernel without swap accounting has no memsw files
        pytest.skip(f"no swap accounting here: {exc}")
    with cg:
        proc = cg.popen(["sleep", "300"])
        with open("/proc/meminfo") as f:
            host_swap = parse_meminfo_kb(f.read())["SwapTotal"]
        mem = meminfo(tree, proc.pid)
        assert mem["SwapTotal"] == min(65536, host_swap)
        assert mem["SwapFree"] <= mem["SwapTotal"]


def test_reader_rule_and_init_rule_in_a_pid_namespace(tree: ProcTree) -> None:
    init_rule = build_tree(FsOptions(cgroup_of="init"))
    name = unique_name("kube-lxcfs-test-core")
    with (
        create_cgroup(name + "-init", Limits(memory=128 * MiB)) as init_cg,
        create_cgroup(name + "-reader", Limits(memory=64 * MiB)) as reader_cg,
    ):
        unshare = init_cg.popen(
            ["unshare", "--fork", "--pid", "--mount-proc", "--kill-child",
             "sh", "-c", "sleep 300 & wait"]
        )  # fmt: skip
        try:
            ns_init = wait_for(lambda: children(unshare.pid), what="the namespace init")[0]
            reader = wait_for(lambda: children(ns_init), what="the reader")[0]
            reader_cg.add_pid(reader)
            assert meminfo(tree, reader)["MemTotal"] == 65536
            assert meminfo(init_rule, reader)["MemTotal"] == 131072
            # uptime is the age of the namespace's init: it started moments ago
            age, idle = (float(v) for v in tree.read("/proc/uptime", reader).split())
            assert 0 <= age < 60
            assert idle >= 0
        finally:
            unshare.send_signal(signal.SIGKILL)
            unshare.wait()
            wait_for(lambda: not reader_cg.pids(), what="the namespace to die")


def test_vanished_reader_gets_host_content(tree: ProcTree) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    with open("/proc/meminfo", "rb") as f:
        host_total = parse_meminfo_kb(f.read().decode())["MemTotal"]
    assert meminfo(tree, proc.pid)["MemTotal"] == host_total


def test_loadavg_counts_a_busy_process(tree: ProcTree) -> None:
    with create_cgroup(unique_name("kube-lxcfs-test-core"), Limits()) as cg:
        busy = cg.popen(["sh", "-c", "while :; do :; done"])
        first = tree.read("/proc/loadavg", busy.pid)
        assert first == f"0.00 0.00 0.00 0/1 {busy.pid}\n".encode()
        now = time.monotonic()
        for step in range(1, 13):  # one simulated minute of 5-second steps
            tree.context.sampler.tick(now + 5 * step + 10)
        # the first render is kept for the usage period (100 ms): poll for the new one
        later = wait_for(
            lambda: tree.read("/proc/loadavg", busy.pid) != first, what="a new loadavg render"
        )
        assert later
        a1, _, _, tasks, _ = tree.read("/proc/loadavg", busy.pid).split()
        running, total = (int(v) for v in tasks.split(b"/"))
        assert total >= 1
        assert running >= 1  # a busy loop is always runnable
        assert float(a1) > 0.5  # 1 - exp(-1) = 0.63 after a minute at load 1


def test_host_pid_1_reads_the_hosts_uptime(tree: ProcTree) -> None:
    # On some kernels even root may not read /proc/1/ns/pid; pid 1 is still ours.
    assert tree.context.processes.namespace_init(1) == 1
    with open("/proc/uptime") as f:
        host_age = float(f.read().split()[0])
    age = float(tree.read("/proc/uptime", 1).split()[0])
    assert host_age <= age < host_age + 5


def test_diskstats_is_never_emptier_than_the_kernel_allows(tree: ProcTree) -> None:
    with create_cgroup(unique_name("kube-lxcfs-test-core"), Limits()) as cg:
        proc = cg.popen(["sleep", "300"])
        ours = tree.read("/proc/diskstats", proc.pid).decode()
        entries = tree.context.processes.cgroups(proc.pid)
        _, io_cgroup = tree.context.cgroups.locate(entries, "blkio")
        snapshot = tree.context.cgroups.io(entries)
        with open("/proc/diskstats") as f:
            host_devices = [line.split()[2] for line in f]
        if snapshot is None:
            # no per-cgroup IO source on this kernel: the host's file, like lxcfs
            assert [line.split()[2] for line in ours.splitlines()] == host_devices
        else:
            # a fresh cgroup did no IO: no device lines
            assert io_cgroup != "/"
            assert ours == ""

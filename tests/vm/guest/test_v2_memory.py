"""meminfo and swaps on pure cgroup v2: memory.max, memory.high, memory.swap.max, nesting.

Each scenario reads through our mount and through Debian's lxcfs 5.0.3 from the same
cgroup: where lxcfs is right on v2 the two must agree, where it is not (swap, a reader
without limits) the difference is asserted on both sides.
"""

from __future__ import annotations

import os
from pathlib import Path

from v2guest import CGROUP_ROOT, cgroup_dir, flat_keyed, holding_memory, meminfo_kb, poll, read_as

from kube_lxcfs.cgroups.transient import Limits, MiB, create_cgroup, unique_name
from support.fsdaemons import RunningFs

HOST = Path("/proc/meminfo")
DRIFT_KB = 8 * 1024  # live counters move between two reads (page cache, the readers)


def host_meminfo() -> dict[str, int]:
    return meminfo_kb(HOST.read_text())


def name() -> str:
    return unique_name("kube-lxcfs-test-v2")


def test_memory_max_is_memtotal_and_usage_is_taken_from_it(
    ours: RunningFs, lxcfs: RunningFs
) -> None:
    with create_cgroup(name(), Limits(memory=256 * MiB)) as cg, holding_memory(cg, 48):
        mine = meminfo_kb(read_as(ours, cg, "proc/meminfo"))
        theirs = meminfo_kb(read_as(lxcfs, cg, "proc/meminfo"))
        current_kb = int((cgroup_dir(cg) / "memory.current").read_text()) // 1024
        assert mine["MemTotal"] == theirs["MemTotal"] == 262144
        # the 48 MiB held inside the cgroup are used, not free
        assert mine["MemFree"] <= 262144 - 48 * 1024
        assert abs(mine["MemFree"] - (262144 - current_kb)) <= DRIFT_KB
        assert abs(mine["MemFree"] - theirs["MemFree"]) <= DRIFT_KB
        assert mine["MemAvailable"] >= mine["MemFree"]
        assert mine["MemAvailable"] <= mine["MemTotal"]


def test_memory_high_is_a_throttle_not_the_total(ours: RunningFs, lxcfs: RunningFs) -> None:
    host_total = host_meminfo()["MemTotal"]
    with create_cgroup(name(), Limits(memory=256 * MiB)) as limited:
        (cgroup_dir(limited) / "memory.high").write_text(str(128 * MiB))
        assert meminfo_kb(read_as(ours, limited, "proc/meminfo"))["MemTotal"] == 262144
        assert meminfo_kb(read_as(lxcfs, limited, "proc/meminfo"))["MemTotal"] == 262144
    with create_cgroup(name()) as high_only:
        (cgroup_dir(high_only) / "memory.high").write_text(str(128 * MiB))
        assert meminfo_kb(read_as(ours, high_only, "proc/meminfo"))["MemTotal"] == host_total
        assert meminfo_kb(read_as(lxcfs, high_only, "proc/meminfo"))["MemTotal"] == host_total


def test_swap_max_with_a_swap_file_is_virtualized(
    ours: RunningFs, lxcfs: RunningFs, swap_file: int
) -> None:
    limits = Limits(memory=64 * MiB, memory_swap=(64 + 48) * MiB)
    with create_cgroup(name(), limits) as cg:
        directory = cgroup_dir(cg)
        assert (directory / "memory.swap.max").read_text() == f"{48 * MiB}\n"
        # Above memory.high the allocator is throttled and reclaimed into the swap file (at
        # memory.max, emulated disk I/O is too slow for reclaim and the OOM killer wins).
        (directory / "memory.high").write_text(str(40 * MiB))
        with holding_memory(cg, 80):
            swapped = poll(
                lambda: int((directory / "memory.swap.current").read_text()) >= 8 * MiB,
                "the cgroup to swap",
            )
            assert swapped
            mine = meminfo_kb(read_as(ours, cg, "proc/meminfo"))
            swap_used_kb = int((directory / "memory.swap.current").read_text()) // 1024
            assert mine["SwapTotal"] == 48 * 1024
            assert abs(mine["SwapTotal"] - mine["SwapFree"] - swap_used_kb) <= DRIFT_KB
            swaps = read_as(ours, cg, "proc/swaps").splitlines()
            assert swaps[0].startswith("Filename")
            fields = swaps[1].split()
            assert fields[:2] == ["none", "virtual"]
            assert int(fields[2]) == mine["SwapTotal"]
            assert abs(int(fields[3]) - swap_used_kb) <= DRIFT_KB
            # lxcfs 5.0.3 never virtualizes swap on v2 (differences-from-lxcfs.md)
            theirs = meminfo_kb(read_as(lxcfs, cg, "proc/meminfo"))
            assert theirs["SwapTotal"] == 0
            assert len(read_as(lxcfs, cg, "proc/swaps").splitlines()) <= 1
    with create_cgroup(name(), Limits(memory=64 * MiB)) as unlimited_swap:
        # memory.swap.max = max: the host's swap, as for a process outside any cgroup
        mine = meminfo_kb(read_as(ours, unlimited_swap, "proc/meminfo"))
        assert mine["SwapTotal"] == host_meminfo()["SwapTotal"] == swap_file


def test_nested_memory_limit_is_the_minimum_of_the_ancestors(
    ours: RunningFs, lxcfs: RunningFs
) -> None:
    with create_cgroup(name(), Limits(memory=128 * MiB)) as parent:
        wider = parent.child("wider", Limits(memory=512 * MiB))
        unlimited = parent.child("unlimited")
        for cg in (wider, unlimited):
            assert meminfo_kb(read_as(ours, cg, "proc/meminfo"))["MemTotal"] == 131072
            assert meminfo_kb(read_as(lxcfs, cg, "proc/meminfo"))["MemTotal"] == 131072
        narrower = parent.child("narrower", Limits(memory=64 * MiB))
        assert meminfo_kb(read_as(ours, narrower, "proc/meminfo"))["MemTotal"] == 65536


def test_a_reader_without_limits_sees_the_host(ours: RunningFs, lxcfs: RunningFs) -> None:
    host = host_meminfo()
    with create_cgroup(name()) as cg:
        mine = meminfo_kb(read_as(ours, cg, "proc/meminfo"))
        assert mine["MemTotal"] == host["MemTotal"]
        assert 0 < mine["MemFree"] <= host["MemTotal"]
        assert meminfo_kb(read_as(lxcfs, cg, "proc/meminfo"))["MemTotal"] == host["MemTotal"]


def test_a_reader_in_init_scope_gets_the_host_figures(ours: RunningFs, lxcfs: RunningFs) -> None:
    """/init.scope stands for the root: our MemFree is the host's; lxcfs says all is free."""
    assert Path("/proc/self/cgroup").read_text() == "0::/init.scope\n"
    used_kb = flat_keyed((CGROUP_ROOT / "memory.stat").read_text())["anon"] // 1024
    assert used_kb > 0
    host = host_meminfo()
    mine = meminfo_kb(ours.path("proc/meminfo").read_text())
    assert mine["MemTotal"] == host["MemTotal"]
    assert mine["MemFree"] < mine["MemTotal"]
    assert abs(mine["MemFree"] - host["MemFree"]) <= 4 * DRIFT_KB
    theirs = meminfo_kb(lxcfs.path("proc/meminfo").read_text())
    assert theirs["MemTotal"] == host["MemTotal"]
    assert theirs["MemFree"] == theirs["MemTotal"]  # lxcfs 5.0.3 on v2: usage unreadable


def test_memory_max_and_cpu_max_changed_in_place_are_seen(ours: RunningFs) -> None:
    """An in-place resize on v2 (the kubelet writes memory.max and cpu.max of a running
    container): the next reads show the new limits, up and down. The deadline is the 1 s
    freshness bound stretched by the emulation's KUBE_LXCFS_TEST_SLOWDOWN."""
    slowdown = float(os.environ.get("KUBE_LXCFS_TEST_SLOWDOWN", "1"))

    def view(cg) -> tuple[int, str]:
        total = meminfo_kb(read_as(ours, cg, "proc/meminfo"))["MemTotal"]
        return total, read_as(ours, cg, "sys/devices/system/cpu/online").strip()

    with create_cgroup(name(), Limits(memory=256 * MiB, cpu_quota=100_000)) as cg:
        assert view(cg) == (262144, "0")
        for memory_mib, quota, online in ((512, 200_000, "0-1"), (128, 100_000, "0")):
            (cgroup_dir(cg) / "memory.max").write_text(str(memory_mib * MiB))
            (cgroup_dir(cg) / "cpu.max").write_text(f"{quota} 100000")
            want = (memory_mib * 1024, online)
            poll(lambda want=want: view(cg) == want, f"the view {want}", deadline=slowdown)

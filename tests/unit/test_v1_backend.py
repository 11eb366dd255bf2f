"""The v1 back-end over fake cgroupfs trees built from the recorded v1 captures."""

from __future__ import annotations

from pathlib import Path

from kube_lxcfs.cgroups.hierarchy import Hierarchy
from kube_lxcfs.cgroups.parse import CpuTimes, IoCounters
from kube_lxcfs.cgroups.reader import V1
from unit.captures import cgroup_files, write_tree

UNLIMITED = "9223372036854771712\n"


def v1(tmp_path: Path, controller: str) -> Hierarchy:
    return Hierarchy(1, frozenset({controller}), str(tmp_path / "sys/fs/cgroup" / controller))


def with_root(tmp_path: Path, scenario: str) -> None:
    write_tree(tmp_path, cgroup_files(scenario))
    root = tmp_path / "sys/fs/cgroup/memory"
    (root / "memory.limit_in_bytes").write_text(UNLIMITED)
    (root / "memory.memsw.limit_in_bytes").write_text(UNLIMITED)


def test_memory_research_full(tmp_path: Path) -> None:
    with_root(tmp_path, "lxcfs503-researchfull-swap")
    mem = V1.memory(v1(tmp_path, "memory"), "/research-full")
    assert mem.limit == 134217728
    assert mem.usage == 131702784
    assert mem.swap_limit == 201326592 - 134217728
    assert mem.swap_usage == 179134464 - 131702784
    assert mem.swappiness == 60
    assert mem.stat.file == 1306624  # total_cache
    assert mem.stat.anon == 129449984  # total_rss
    assert mem.stat.inactive_anon == 129351680
    assert mem.stat.slab_reclaimable is None  # v1 has no slab figures


def test_memory_limit_is_minimum_over_ancestors(tmp_path: Path) -> None:
    with_root(tmp_path, "lxcfs503-researchfull")
    base = tmp_path / "sys/fs/cgroup/memory/research-full"
    child = base / "child"
    child.mkdir()
    for name in ("memory.usage_in_bytes", "memory.memsw.usage_in_bytes"):
        (child / name).write_text("4096\n")
    (child / "memory.stat").write_text("total_cache 0\ntotal_rss 4096\ntotal_rss_huge 2097152\n")
    (child / "memory.limit_in_bytes").write_text(UNLIMITED)
    (child / "memory.memsw.limit_in_bytes").write_text(UNLIMITED)
    mem = V1.memory(v1(tmp_path, "memory"), "/research-full/child")
    assert mem.limit == 134217728  # the parent's
    assert mem.swap_limit == 201326592 - 134217728
    assert mem.stat.anon_thp == 2097152  # total_rss_huge, which lxcfs never reads


def test_memory_without_swap_accounting(tmp_path: Path) -> None:
    with_root(tmp_path, "lxcfs503-researchfull")
    base = tmp_path / "sys/fs/cgroup/memory/research-full"
    (base / "memory.memsw.usage_in_bytes").unlink()
    mem = V1.memory(v1(tmp_path, "memory"), "/research-full")
    assert mem.swap_usage is None
    assert mem.swap_limit is None


def test_cpu_research_full(tmp_path: Path) -> None:
    write_tree(tmp_path, cgroup_files("lxcfs503-researchfull"))
    cpu = tmp_path / "sys/fs/cgroup/cpu"
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    assert V1.cpu_quota(v1(tmp_path, "cpu"), "/research-full") == 0.5
    assert V1.cpuset(v1(tmp_path, "cpuset"), "/research-full") == {1}
    usage = V1.cpu_usage(v1(tmp_path, "cpuacct"), "/research-full")
    assert usage.per_cpu == {0: CpuTimes(0, 0), 1: CpuTimes(5423870239, 167940574)}


def test_cpu_usage_percpu_fallback_counts_once(tmp_path: Path) -> None:
    write_tree(tmp_path, cgroup_files("lxcfs503-researchfull"))
    (tmp_path / "sys/fs/cgroup/cpuacct/research-full/cpuacct.usage_all").unlink()
    usage = V1.cpu_usage(v1(tmp_path, "cpuacct"), "/research-full")
    assert usage.per_cpu == {0: CpuTimes(0, 0), 1: CpuTimes(5195999116, 0)}
    assert usage.total == 5195999116


def test_io_from_throttle_files_when_cfq_is_gone(tmp_path: Path) -> None:
    write_tree(tmp_path, cgroup_files("lxcfs503-researchfull"))
    root = tmp_path / "sys/fs/cgroup/blkio"
    (root / "blkio.throttle.io_serviced_recursive").write_text("254:0 Read 30\nTotal 30\n")
    blkio = root / "research-full"
    (blkio / "blkio.throttle.io_serviced_recursive").write_text(
        "254:0 Read 3\n254:0 Write 5\n254:0 Discard 1\n254:0 Total 9\nTotal 9\n"
    )
    (blkio / "blkio.throttle.io_service_bytes_recursive").write_text(
        "254:0 Read 12288\n254:0 Write 20480\n254:0 Discard 4096\n254:0 Total 36864\nTotal 36864\n"
    )
    io = V1.io(v1(tmp_path, "blkio"), "/research-full")
    assert io.devices == {(254, 0): IoCounters(12288, 20480, 3, 5, 4096, 1)}


def test_io_source_that_accounts_nothing_is_no_source(tmp_path: Path) -> None:
    # The capture host (Linux 6.18, no throttle rules): every blkio file says only
    # "Total 0", the root's too, although the workload did direct IO.
    write_tree(tmp_path, cgroup_files("lxcfs503-rootcg"))
    write_tree(tmp_path, cgroup_files("lxcfs503-researchfull"))
    assert V1.io(v1(tmp_path, "blkio"), "/research-full") is None

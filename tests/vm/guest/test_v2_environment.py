"""The guest is what the tier claims: pure cgroup v2, with swap and a real disk available."""

from __future__ import annotations

import os
from pathlib import Path

from v2guest import CGROUP_ROOT, DATA_DISK, block_device_numbers, meminfo_kb

from kube_lxcfs.cgroups.transient import Limits, MiB, create_cgroup, host_layout, unique_name


def test_only_cgroup2_is_mounted_and_it_has_every_controller() -> None:
    layout = host_layout()
    assert [h.version for h in layout.hierarchies] == [2]
    assert layout.unified is not None and Path(layout.unified.mount_point) == CGROUP_ROOT
    enabled = set((CGROUP_ROOT / "cgroup.subtree_control").read_text().split())
    assert {"cpu", "cpuset", "io", "memory", "pids"} <= enabled
    assert Path("/proc/self/cgroup").read_text() == "0::/init.scope\n"


def test_a_transient_cgroup_gets_v2_limits() -> None:
    limits = Limits(memory=200 * MiB, memory_swap=232 * MiB, cpu_quota=50_000, cpuset="1")
    with create_cgroup(unique_name(), limits) as cg:
        directory = CGROUP_ROOT / cg.path.lstrip("/")
        assert (directory / "memory.max").read_text() == f"{200 * MiB}\n"
        assert (directory / "memory.swap.max").read_text() == f"{32 * MiB}\n"
        assert (directory / "cpu.max").read_text() == "50000 100000\n"
        assert (directory / "cpuset.cpus.effective").read_text() == "1\n"
        assert cg.run(["cat", "/proc/self/cgroup"]).stdout == f"0::{cg.path}\n"
    assert not directory.exists()


def test_the_swap_file_is_active(swap_file: int) -> None:
    assert meminfo_kb(Path("/proc/meminfo").read_text())["SwapTotal"] == swap_file


def test_the_data_disk_is_a_real_block_device() -> None:
    assert DATA_DISK.is_block_device()
    major_minor = block_device_numbers(DATA_DISK)
    assert f" {DATA_DISK.name}\n" in Path("/proc/partitions").read_text()
    assert major_minor.split(":")[0] != "0"
    assert os.cpu_count() == 2

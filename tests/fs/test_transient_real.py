"""cgroups/transient.py on this host's real cgroup hierarchies (root, v1 + unified)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kube_lxcfs.cgroups.transient import (
    CgroupBusyError,
    CgroupError,
    Limits,
    MiB,
    create_cgroup,
    host_layout,
    unique_name,
)
from support.cgroups import iter_cgroup_paths, move_to_root

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="creating cgroups needs root"),
]


def _hierarchy_dir(controller: str, path: str) -> Path:
    hierarchy = host_layout().hierarchy(controller)
    assert hierarchy is not None, f"{controller} is not mounted"
    return Path(hierarchy.mount_point, path.lstrip("/"))


def _cgroup_of(pid: int) -> dict[str, str]:
    return dict(iter_cgroup_paths(pid))


def test_limits_are_written_and_a_started_process_is_inside() -> None:
    if not _hierarchy_dir("memory", "memory.memsw.limit_in_bytes").exists():
        pytest.skip("kernel without swap accounting (memsw)")
    limits = Limits(memory=256 * MiB, memory_swap=320 * MiB, cpu_quota=50_000, cpuset="0")
    with create_cgroup(unique_name(), limits) as cg:
        memory = _hierarchy_dir("memory", cg.path)
        assert (memory / "memory.limit_in_bytes").read_text() == f"{256 * MiB}\n"
        assert (memory / "memory.memsw.limit_in_bytes").read_text() == f"{320 * MiB}\n"
        cpu = _hierarchy_dir("cpu", cg.path)
        assert (cpu / "cpu.cfs_quota_us").read_text() == "50000\n"
        assert (cpu / "cpu.cfs_period_us").read_text() == "100000\n"
        cpuset = _hierarchy_dir("cpuset", cg.path)
        assert (cpuset / "cpuset.cpus").read_text() == "0\n"
        parent_mems = (cpuset.parent / "cpuset.mems").read_text()
        assert (cpuset / "cpuset.mems").read_text() == parent_mems
        done = cg.run(["cat", "/proc/self/cgroup"])
        assert done.returncode == 0
        lines = done.stdout.splitlines()
        for controller in ("memory", "cpu", "cpuacct", "cpuset", "blkio", "pids"):
            assert any(
                line.split(":", 2)[1] == controller and line.endswith(":" + cg.path)
                for line in lines
            ), (controller, lines)
    for controller in ("memory", "cpu", "cpuacct", "cpuset"):
        assert not _hierarchy_dir(controller, cg.path).exists()


def test_nested_cgroups_and_created_ancestors_are_removed() -> None:
    top = unique_name()
    with create_cgroup(f"{top}/middle", Limits(memory=128 * MiB, cpuset="0-1")) as outer:
        with outer.child("leaf", Limits(memory=64 * MiB, cpu_quota=20_000)) as leaf:
            assert leaf.path == f"/{top}/middle/leaf"
            leaf_cpuset = _hierarchy_dir("cpuset", leaf.path)
            assert (leaf_cpuset / "cpuset.cpus").read_text() == "0-1\n"  # copied from parent
            sleeper = leaf.popen(["sleep", "60"])
            assert _cgroup_of(sleeper.pid)["memory"] == leaf.path
        # the child's exit killed what it started and removed it
        assert sleeper.poll() is not None
        assert not _hierarchy_dir("memory", leaf.path).exists()
        assert _hierarchy_dir("memory", outer.path).exists()
    assert not _hierarchy_dir("memory", top).exists()
    assert not _hierarchy_dir("cpuset", top).exists()


def test_children_are_removed_with_the_parent() -> None:
    with create_cgroup(unique_name()) as outer:
        inner = outer.child("a")
        inner.popen(["sleep", "60"])
    assert not _hierarchy_dir("memory", inner.path).exists()
    assert not _hierarchy_dir("memory", outer.path).exists()


def test_a_foreign_process_is_never_killed_and_blocks_removal() -> None:
    foreign = subprocess.Popen(["sleep", "60"])
    try:
        cg = create_cgroup(unique_name(), Limits(memory=64 * MiB))
        cg.add_pid(foreign.pid)
        assert _cgroup_of(foreign.pid)["memory"] == cg.path
        with pytest.raises(CgroupBusyError, match=str(foreign.pid)):
            cg.remove(timeout=0.3)
        assert foreign.poll() is None
        move_to_root(foreign.pid)
        cg.remove()
        assert not _hierarchy_dir("memory", cg.path).exists()
    finally:
        foreign.kill()
        foreign.wait()


def test_a_failed_limit_leaves_nothing_behind() -> None:
    name = unique_name()
    with pytest.raises(CgroupError, match=r"cpuset\.cpus"):
        create_cgroup(name, Limits(cpuset="4095"))
    for controller in ("memory", "cpu", "cpuset"):
        assert not _hierarchy_dir(controller, name).exists()


def test_an_existing_cgroup_is_not_taken_over() -> None:
    with create_cgroup(unique_name()) as cg:
        with pytest.raises(CgroupError, match="already exists"):
            create_cgroup(cg.path)
        assert _hierarchy_dir("memory", cg.path).exists()

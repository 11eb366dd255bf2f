"""Pure parts of cgroups/transient.py: mountinfo → layout, limits validation, v2 writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from kube_lxcfs.cgroups.errors import CgroupError
from kube_lxcfs.cgroups.hierarchy import Hierarchy, Layout, discover_layout
from kube_lxcfs.cgroups.transient import Limits, MiB, create_cgroup

# This machine's layout: cpu and cpuacct on separate v1 mounts, a cgroup2 "unified" mount.
HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
"""

# A typical systemd v1 host: cpu and cpuacct co-mounted, plus a bind mount inside a container.
COMOUNTED = """\
25 18 0:22 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct
26 18 0:23 / /sys/fs/cgroup/memory rw shared:10 - cgroup cgroup rw,memory
90 70 0:23 /kubepods /var/lib/x/cgroup\\040mem rw - cgroup cgroup rw,memory
"""

PURE_V2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"


def test_hybrid_layout_keeps_controllers_and_versions() -> None:
    layout = discover_layout(HYBRID, lambda _directory: "hugetlb\n")
    assert [(h.mount_point, h.version, sorted(h.controllers)) for h in layout.hierarchies] == [
        ("/sys/fs/cgroup/cpu", 1, ["cpu"]),
        ("/sys/fs/cgroup/cpuacct", 1, ["cpuacct"]),
        ("/sys/fs/cgroup/cpuset", 1, ["cpuset"]),
        ("/sys/fs/cgroup/memory", 1, ["memory"]),
        ("/sys/fs/cgroup/systemd", 1, ["name=systemd"]),
        ("/sys/fs/cgroup/unified", 2, ["hugetlb"]),
    ]
    assert str(layout.hierarchy("cpuacct").mount_point) == "/sys/fs/cgroup/cpuacct"
    assert str(layout.hierarchy("hugetlb").mount_point) == "/sys/fs/cgroup/unified"


def test_comounted_controllers_and_bind_mounts() -> None:
    layout = discover_layout(COMOUNTED, lambda _directory: None)
    cpu = layout.hierarchy("cpu")
    assert cpu is layout.hierarchy("cpuacct")
    assert cpu.mount_point == "/sys/fs/cgroup/cpu,cpuacct"
    # the container's bind mount of the memory hierarchy is not a second hierarchy
    assert str(layout.hierarchy("memory").mount_point) == "/sys/fs/cgroup/memory"
    assert len(layout.hierarchies) == 2


def test_pure_v2_serves_every_enabled_controller() -> None:
    layout = discover_layout(PURE_V2, lambda _directory: "cpuset cpu io memory pids\n")
    unified = layout.unified
    assert unified is not None and unified.mount_point == "/sys/fs/cgroup"
    for controller in ("memory", "cpu", "cpuacct", "cpuset", "blkio", "pids"):
        assert layout.hierarchy(controller) is unified


def _layout(*hierarchies: Hierarchy) -> Layout:
    return Layout.of(hierarchies)


def test_v1_controller_wins_over_the_unified_mount() -> None:
    v1_memory = Hierarchy(1, frozenset({"memory"}), "/m")
    unified = Hierarchy(2, frozenset({"memory", "hugetlb"}), "/u")
    layout = _layout(unified, v1_memory)
    assert layout.hierarchy("memory") is v1_memory
    assert layout.hierarchy("hugetlb") is unified
    assert layout.hierarchy("cpu") is None
    # cpu.stat exists in every v2 cgroup, so cpuacct is always served by the unified mount
    assert layout.hierarchy("cpuacct") is unified


def test_v2_names_blkio_as_io() -> None:
    unified = Hierarchy(2, frozenset({"io"}), "/u")
    assert _layout(unified).hierarchy("blkio") is unified


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"memory_swap": 10 * MiB}, "needs a memory limit"),
        ({"memory": 10 * MiB, "memory_swap": 5 * MiB}, "cannot be below"),
        ({"memory": 0}, "positive"),
        ({"cpu_quota": 10}, "at least 1000"),
        ({"cpu_period": 10}, "period"),
        ({"cpuset": " "}, "empty"),
    ],
)
def test_limits_reject_nonsense(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Limits(**kwargs)  # type: ignore[arg-type]


def test_limits_for_cpus_and_needed_controllers() -> None:
    limits = Limits.for_cpus(1.5, memory=64 * MiB)
    assert (limits.cpu_quota, limits.cpu_period) == (150_000, 100_000)
    assert limits.controllers == {"cpu", "memory"}
    assert Limits().controllers == frozenset()


def test_missing_controller_for_a_limit_is_an_error(tmp_path: Path) -> None:
    layout = _layout(Hierarchy(1, frozenset({"memory"}), str(tmp_path)))
    with pytest.raises(CgroupError, match="no cpuset controller"):
        create_cgroup("x", Limits(cpuset="0"), layout=layout)
    assert list(tmp_path.iterdir()) == []


def test_relative_paths_only(tmp_path: Path) -> None:
    layout = _layout(Hierarchy(1, frozenset({"memory"}), str(tmp_path)))
    for bad in ("", "/", "a/../b"):
        with pytest.raises(ValueError):
            create_cgroup(bad, layout=layout)


def test_v2_writes_limits_and_enables_controllers_in_every_ancestor(tmp_path: Path) -> None:
    """A fake cgroup2 tree: the files a pure v2 host gets, in the v2 units."""
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids hugetlb\n")
    (tmp_path / "cgroup.subtree_control").write_text("memory\n")
    unified = Hierarchy(
        2, frozenset(["cpuset", "cpu", "io", "memory", "pids", "hugetlb"]), str(tmp_path)
    )
    limits = Limits(memory=256 * MiB, memory_swap=384 * MiB, cpu_quota=50_000, cpuset="0-1")
    cg = create_cgroup("outer/inner", limits, layout=_layout(unified))
    leaf = tmp_path / "outer" / "inner"
    assert set(cg.directories.values()) == {leaf}
    assert cg.path == "/outer/inner"
    assert (leaf / "memory.max").read_text() == str(256 * MiB)
    assert (leaf / "memory.swap.max").read_text() == str(128 * MiB)
    assert (leaf / "cpu.max").read_text() == "50000 100000"
    assert (leaf / "cpuset.cpus").read_text() == "0-1"
    # only what was missing is enabled, in the root and in the intermediate cgroup
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpu +cpuset +io +pids"
    assert (tmp_path / "outer" / "cgroup.subtree_control").read_text() == (
        "+cpu +cpuset +io +memory +pids"
    )
    assert not (leaf / "cgroup.subtree_control").exists()
    cg.add_pid(4242)
    assert (leaf / "cgroup.procs").read_text() == "4242"


def test_v1_cpuset_cgroups_get_their_parents_cpus_and_mems(tmp_path: Path) -> None:
    """A fake v1 hierarchy with cpuset co-mounted with cpu: whichever controller creates
    the directory, the new cpusets (ancestors included) are populated before any task."""
    (tmp_path / "cpuset.cpus").write_text("0-3\n")
    (tmp_path / "cpuset.mems").write_text("0\n")
    comounted = Hierarchy(1, frozenset({"cpu", "cpuset"}), str(tmp_path))
    cg = create_cgroup(
        "outer/inner",
        Limits(cpuset="2", cpu_quota=50_000),
        controllers=("cpu", "cpuset"),
        layout=_layout(comounted),
    )
    assert (tmp_path / "outer" / "cpuset.cpus").read_text() == "0-3"
    assert (tmp_path / "outer" / "cpuset.mems").read_text() == "0"
    inner = tmp_path / "outer" / "inner"
    assert (inner / "cpuset.mems").read_text() == "0"
    assert (inner / "cpuset.cpus").read_text() == "2"  # the limit, after the copy
    assert (inner / "cpu.cfs_quota_us").read_text() == "50000"
    assert cg.procs_files == [inner / "cgroup.procs"]

"""Hierarchy discovery (v1 with separate cpu/cpuacct, hybrid, pure v2) and path resolution."""

from __future__ import annotations

import pytest

from kube_lxcfs.cgroups.errors import CgroupUnavailable
from kube_lxcfs.cgroups.hierarchy import (
    ancestors,
    cgroup_of,
    discover_layout,
    normalize_cgroup_path,
)
from kube_lxcfs.cgroups.parse import parse_proc_cgroup

# This machine's layout: cpu and cpuacct are separate v1 mounts, plus a named
# hierarchy and a cgroup2 mount that holds only hugetlb.
HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

PURE_V2 = """\
25 1 0:22 / /sys/fs/cgroup rw,nosuid,nodev shared:4 - cgroup2 cgroup2 rw,nsdelegate
"""

COMBINED_V1 = """\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
"""


def test_hybrid_v1_controller_wins_over_unified() -> None:
    layout = discover_layout(HYBRID, lambda mount: "hugetlb\n")
    assert layout.kind == "hybrid"
    assert layout.hierarchy("cpu").mount_point == "/sys/fs/cgroup/cpu"
    assert layout.hierarchy("cpuacct").mount_point == "/sys/fs/cgroup/cpuacct"
    assert layout.hierarchy("memory").version == 1
    assert layout.hierarchy("name=systemd").mount_point == "/sys/fs/cgroup/systemd"
    # The unified mount answers only for what it has (and nothing of ours).
    assert layout.hierarchy("hugetlb") is None or layout.hierarchy("hugetlb").version == 2
    assert layout.hierarchy("pids") is None


def test_pure_v2_maps_v1_names() -> None:
    layout = discover_layout(PURE_V2, lambda mount: "cpuset cpu io memory pids\n", "/fake/sys")
    assert layout.kind == "v2"
    mem = layout.hierarchy("memory")
    assert mem.version == 2
    assert mem.mount_point == "/fake/sys/fs/cgroup"
    assert layout.hierarchy("blkio") is mem  # io
    assert layout.hierarchy("cpuacct") is mem  # cpu.stat is always there


def test_pure_v2_without_io_controller() -> None:
    layout = discover_layout(PURE_V2, lambda mount: "cpu memory\n")
    assert layout.hierarchy("blkio") is None
    assert layout.hierarchy("cpuset") is None


def test_combined_cpu_cpuacct_mount() -> None:
    layout = discover_layout(COMBINED_V1, lambda mount: None)
    assert layout.kind == "v1"
    assert layout.hierarchy("cpu") is layout.hierarchy("cpuacct")
    entries = parse_proc_cgroup("3:memory:/m\n2:cpu,cpuacct:/c\n")
    assert cgroup_of(entries, layout.hierarchy("cpuacct")) == "/c"
    assert cgroup_of(entries, layout.hierarchy("memory")) == "/m"


def test_cgroup_of_per_controller_and_init_scope() -> None:
    layout = discover_layout(HYBRID, lambda mount: "hugetlb\n")
    entries = parse_proc_cgroup(
        "9:name=systemd:/init.scope\n4:memory:/research-full\n3:cpuset:/\n2:cpuacct:/a/init.scope\n1:cpu:/a\n0::/\n"
    )
    assert cgroup_of(entries, layout.hierarchy("memory")) == "/research-full"
    assert cgroup_of(entries, layout.hierarchy("cpuset")) == "/"
    assert cgroup_of(entries, layout.hierarchy("cpuacct")) == "/a"
    assert cgroup_of(entries, layout.hierarchy("name=systemd")) == "/"
    with pytest.raises(CgroupUnavailable):
        cgroup_of(entries, layout.hierarchy("blkio"))


@pytest.mark.parametrize(
    ("path", "root", "expected"),
    [
        ("/init.scope", "/", "/"),
        ("/a/init.scope", "/", "/a"),
        ("/a/b/../c", "/", "/a/c"),
        ("/kubepods/pod1/c1", "/kubepods", "/pod1/c1"),
        ("/kubepods", "/kubepods", "/"),
    ],
)
def test_normalize(path: str, root: str, expected: str) -> None:
    assert normalize_cgroup_path(path, root) == expected


@pytest.mark.parametrize(
    ("path", "root"), [("/../..", "/"), ("/../sibling/x", "/"), ("/other", "/kubepods")]
)
def test_normalize_out_of_view(path: str, root: str) -> None:
    with pytest.raises(CgroupUnavailable):
        normalize_cgroup_path(path, root)


def test_ancestors() -> None:
    assert ancestors("/a/b") == ["/a/b", "/a", "/"]
    assert ancestors("/") == ["/"]

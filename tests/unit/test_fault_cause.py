"""Which cause a host-file answer is counted under (kube_lxcfs_host_answers_total{cause})."""

from __future__ import annotations

import pytest

from kube_lxcfs.cgroups.errors import CgroupUnavailable, ParseError, ProcessGone
from kube_lxcfs.context import is_root_cgroup
from kube_lxcfs.render_cache import CgroupSlow
from kube_lxcfs.tree import fault_cause


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        (CgroupSlow("slow"), "slow_cgroup"),
        (ProcessGone("process 7 is gone"), "vanished_process"),
        (CgroupUnavailable("cgroup /a is gone"), "cgroup_error"),
        (ParseError("memory.max", "x"), "cgroup_error"),
        (PermissionError(13, "denied"), "cgroup_error"),
        (KeyError("a bug"), "bug"),
        (AssertionError(), "bug"),
    ],
)
def test_fault_cause(exc: Exception, cause: str) -> None:
    assert fault_cause(exc) == cause


@pytest.mark.parametrize(
    ("text", "root"),
    [
        ("0::/\n", True),
        ("12:memory:/\n11:cpu,cpuacct:/init.scope\n0::/init.scope\n", True),
        ("0::/kubepods/pod1/c1\n", False),
        ("12:memory:/\n0::/system.slice/x.service\n", False),
    ],
)
def test_is_root_cgroup(text: str, root: bool) -> None:
    assert is_root_cgroup(text) is root

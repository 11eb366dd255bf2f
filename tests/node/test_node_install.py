"""The seed's walkthrough on a real node with `kube-lxcfs install`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .node import Node
from .workloads import (
    IMAGE_OPTIONS,
    check_installed,
    kube_lxcfs,
    walkthrough,
)

pytestmark = [pytest.mark.node, pytest.mark.slow]


@pytest.fixture(scope="module")
def installed(node: Node) -> Iterator[Node]:
    """kube-lxcfs installed with `kube-lxcfs install --wait` and the locally built images."""
    kube_lxcfs(node, "install", *IMAGE_OPTIONS, "--wait", "--timeout=180")
    yield node
    kube_lxcfs(node, "uninstall", *IMAGE_OPTIONS, "--wait")


def test_install_walkthrough(installed: Node, make_namespace) -> None:
    check_installed(installed)
    walkthrough(installed, make_namespace)
    # Everything happened inside the node's namespaces: the host sees none of it.
    assert _fuse_mounts(installed)
    host_mounts = [line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    assert not [m for m in host_mounts if m[4].startswith("/var/lib/lxcfs")], host_mounts
    assert not [m for m in host_mounts if m[4].startswith(str(installed.workdir))]
    assert not Path("/sys/class/net/cni0").exists()


def _fuse_mounts(node: Node) -> list[str]:
    """FUSE mounts in the node's mount namespace (where the kubelet and the pods' sources are)."""
    assert node.holder is not None
    mountinfo = Path(f"/proc/{node.holder.pid}/mountinfo").read_text()
    return [line for line in mountinfo.splitlines() if " - fuse." in line or " - fuse " in line]

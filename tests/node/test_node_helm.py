"""The seed's walkthrough installed with the pinned helm and the chart, as docs/kubernetes.md
tells users to; `helm uninstall` leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.binaries import find_or_build_one
from cluster.control_plane import wait_until

from . import images
from .node import Node
from .test_node_install import assert_nothing_left
from .workloads import (
    INSTALL_NAMESPACE,
    REPO,
    check_installed,
    delete_enabled_namespaces,
    walkthrough,
)

pytestmark = [pytest.mark.node, pytest.mark.slow]


def _helm(node: Node, helm: Path, *args: str) -> str:
    home = node.workdir / "helm"  # helm's cache/config/data, not the host's ~/.cache
    env = {f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}
    command = [str(helm), *args, f"--kubeconfig={node.kubeconfig}"]
    return node.run(command, env=env, timeout=300).stdout


def test_helm_install_walkthrough_and_uninstall(node: Node, make_namespace) -> None:
    helm = find_or_build_one("helm")
    node.kubectl("create", "namespace", INSTALL_NAMESPACE)
    node.kubectl(
        "label", "namespace", INSTALL_NAMESPACE, "pod-security.kubernetes.io/enforce=privileged"
    )
    agent_repo, agent_tag = images.NODE_AGENT.rsplit(":", 1)
    webhook_repo, webhook_tag = images.WEBHOOK.rsplit(":", 1)
    try:
        _helm(
            node, helm, "install", "kube-lxcfs", str(REPO / "deploy" / "helm" / "kube-lxcfs"),
            "--namespace", INSTALL_NAMESPACE, "--set", "createNamespace=false",
            "--set", f"nodeAgent.image.repository={agent_repo}",
            "--set", f"nodeAgent.image.tag={agent_tag}",
            "--set", f"webhook.image.repository={webhook_repo}",
            "--set", f"webhook.image.tag={webhook_tag}",
            "--wait", "--timeout=180s",
        )  # fmt: skip
        wait_until(
            lambda: check_installed(node) is None, 60, "the webhook's certificate", interval=0.5
        )
        walkthrough(node, make_namespace)
        delete_enabled_namespaces(node)
    finally:
        _helm(node, helm, "uninstall", "kube-lxcfs", "--namespace", INSTALL_NAMESPACE, "--wait")
        node.kubectl("delete", "namespace", INSTALL_NAMESPACE, "--wait=true", timeout=180)
    assert_nothing_left(node)

"""RuntimeClass mode on a real node: the agent's init container runs `kube-lxcfs setup-node`,
which registers the kube-lxcfs-runc handler in /etc/containerd/config.toml; after the
containerd restart the docs ask for, a pod in a namespace enforcing Pod Security
`restricted` gets the files without any hostPath volume, and busybox `free` (sysinfo(2))
shows its limit; resized in place, it sees the new limits."""

from __future__ import annotations

import re

import pytest

from . import images
from .conftest import record
from .node import Node
from .workloads import (
    ENABLED,
    IMAGE_OPTIONS,
    apply,
    check_installed,
    check_resize,
    injected,
    kube_lxcfs,
    memtotal_kib,
    resizable_pod,
    wait_pod_ready,
)

pytestmark = [pytest.mark.node, pytest.mark.slow]
RUNTIME_CLASS = ("--set", "injection.mode=runtimeClass", "--set", "runtimeClass.enabled=true")


def _restricted_busybox(name: str, namespace: str) -> dict:
    """Limits cpu 1 / 1Gi, resizable in place, printing what it sees (sysinfo included)."""
    body = resizable_pod(name, namespace, image=images.BUSYBOX, sysinfo=True)
    body["spec"]["securityContext"] = {
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    body["spec"]["containers"][0]["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    return body


def test_runtime_class_mode_in_a_restricted_namespace(node: Node, make_namespace) -> None:
    kube_lxcfs(node, "install", *IMAGE_OPTIONS, *RUNTIME_CLASS, "--wait", "--timeout=180")
    try:
        check_installed(node)
        config = node.host_path("/etc/containerd").joinpath("config.toml").read_text()
        assert "/usr/local/bin/kube-lxcfs-runc" in config, config
        node.restart_containerd()  # docs/kubernetes.md: restart the runtime after setup-node

        namespace = make_namespace(
            "strict", {**ENABLED, "pod-security.kubernetes.io/enforce": "restricted"}
        )
        apply(node, _restricted_busybox("strict", namespace))
        created = node.get("pod", "strict", "-n", namespace)
        assert created["spec"].get("runtimeClassName") == "kube-lxcfs"
        assert not [v for v in created["spec"].get("volumes", []) if "hostPath" in v]
        assert injected(node, namespace, "strict")
        wait_pod_ready(node, namespace, "strict", timeout=120)
        # busybox cat copies with sendfile(2): it needs the file's size to be the text's
        meminfo = node.exec(namespace, "strict", "cat", "/proc/meminfo")
        assert memtotal_kib(meminfo) == 1048576
        free = node.exec(namespace, "strict", "free")  # busybox: sysinfo(2), in KiB
        mem_row = next(line.split() for line in free.splitlines() if line.startswith("Mem:"))
        assert mem_row[1] == "1048576", free
        cpuinfo = node.exec(namespace, "strict", "cat", "/proc/cpuinfo")
        assert len(re.findall(r"^processor", cpuinfo, re.M)) == 1

        # Resized in place: the files and sysinfo(2) follow (the wrapper passes `update`
        # through to runc; the agent renders from the cgroup on every read).
        measured = check_resize(node, namespace, "strict", sysinfo=True)
        for step, seconds in measured.items():
            record(f"resize {step} after done (RuntimeClass)", seconds)
    finally:
        kube_lxcfs(node, "uninstall", *IMAGE_OPTIONS, *RUNTIME_CLASS, "--wait")

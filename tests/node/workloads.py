"""What the scenarios deploy and read: app Deployments/pods and the seed walkthrough's checks."""

from __future__ import annotations

import datetime
import json
import re
import sys
from pathlib import Path

from cluster.control_plane import wait_until

from . import images
from .node import Node

REPO = Path(__file__).resolve().parents[2]
INSTALL_NAMESPACE = "lxcfs"
AGENT = "kube-lxcfs-agent"
AGENT_SELECTOR = "app.kubernetes.io/component=node-agent"
WEBHOOK_SELECTOR = "app.kubernetes.io/component=webhook"
ENABLED = {"lxcfs-admission-webhook": "enabled"}
SLEEP = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]


def kube_lxcfs(node: Node, *args: str, timeout: float = 300) -> str:
    """``kube-lxcfs ARGS --kubeconfig ...`` from this checkout, inside the node's namespaces."""
    command = [sys.executable, "-m", "kube_lxcfs", *args, f"--kubeconfig={node.kubeconfig}"]
    return node.run(command, timeout=timeout).stdout


IMAGE_OPTIONS = ("--image", images.NODE_AGENT, "--webhook-image", images.WEBHOOK)


def container(
    name: str = "app",
    image: str = images.APP,
    cpu: str = "1",
    memory: str = "1Gi",
    command: list[str] | None = None,
) -> dict:
    """A container with the limits under test and small requests, so that several fit."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command or SLEEP,
        "resources": {
            "limits": {"cpu": cpu, "memory": memory},
            "requests": {"cpu": "50m", "memory": "32Mi"},
        },
    }


def pod(name: str, namespace: str, **kwargs) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [container(**kwargs)], "terminationGracePeriodSeconds": 1},
    }


def deployment(name: str, namespace: str, **kwargs) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container(**kwargs)], "terminationGracePeriodSeconds": 1},
            },
        },
    }


def apply(node: Node, *objects: dict) -> None:
    document = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    node.kubectl("apply", "-f", "-", input=json.dumps(document))


def wait_pod_ready(node: Node, namespace: str, name: str, timeout: float = 120) -> dict:
    def ready() -> dict | None:
        found = node.get("pod", name, "-n", namespace)
        conditions = found.get("status", {}).get("conditions", [])
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return found
        return None

    return wait_until(ready, timeout, f"pod {namespace}/{name} Ready", interval=0.5)


def deployment_pod(node: Node, namespace: str, name: str, timeout: float = 120) -> str:
    """The name of the Ready pod of a one-replica Deployment, after its rollout."""
    node.kubectl(
        "rollout", "status", f"deployment/{name}", "-n", namespace, f"--timeout={timeout:.0f}s",
        timeout=timeout + 10,
    )  # fmt: skip
    pods = node.get("pods", "-n", namespace, "-l", f"app={name}")["items"]
    running = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(running) == 1, [p["metadata"]["name"] for p in pods]
    return running[0]["metadata"]["name"]


def memtotal_kib(meminfo: str) -> int:
    match = re.search(r"^MemTotal:\s+(\d+) kB$", meminfo, re.M)
    assert match, meminfo[:300]
    return int(match.group(1))


def host_memtotal_kib() -> int:
    return memtotal_kib(Path("/proc/meminfo").read_text())


def host_processors() -> int:
    return len(re.findall(r"^processor\s*:", Path("/proc/cpuinfo").read_text(), re.M))


def processors(cpuinfo: str) -> int:
    return len(re.findall(r"^processor\s*:", cpuinfo, re.M))


def age_seconds(timestamp: str) -> float:
    started = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return (datetime.datetime.now(datetime.UTC) - started).total_seconds()


def injected(node: Node, namespace: str, name: str) -> str:
    annotations = node.get("pod", name, "-n", namespace)["metadata"].get("annotations", {})
    return annotations.get("kube-lxcfs.io/status", "")


def check_installed(node: Node, namespace: str = INSTALL_NAMESPACE) -> None:
    """Agent DaemonSet and webhook Deployment (2 replicas) ready, its certificate provisioned."""
    daemonset = node.get("daemonset", AGENT, "-n", namespace)
    status = daemonset["status"]
    assert status["desiredNumberScheduled"] == 1, status
    assert status.get("numberReady") == 1, status
    deployment_status = node.get("deployment", "kube-lxcfs-webhook", "-n", namespace)["status"]
    assert deployment_status.get("readyReplicas") == 2, deployment_status
    secret = node.get("secret", "kube-lxcfs-webhook-tls", "-n", namespace)
    assert {"tls.crt", "tls.key"} <= set(secret["data"]), sorted(secret["data"])
    config = node.get("mutatingwebhookconfiguration", "kube-lxcfs-webhook")
    assert all(w["clientConfig"].get("caBundle") for w in config["webhooks"]), config


def walkthrough(node: Node, make_namespace) -> None:
    """The seed's walkthrough, after an install: a labelled namespace sees its limits."""
    namespace = make_namespace("app", ENABLED)
    apply(node, deployment("app", namespace, cpu="1", memory="1Gi"))
    name = deployment_pod(node, namespace, "app")
    assert injected(node, namespace, name) == "injected"
    meminfo = node.exec(namespace, name, "cat", "/proc/meminfo")
    assert memtotal_kib(meminfo) == 1048576
    cpuinfo = node.exec(namespace, name, "cat", "/proc/cpuinfo")
    assert processors(cpuinfo) == 1
    assert re.search(r"^cpu cores\s*: 1$", cpuinfo, re.M), cpuinfo[:500]
    free = node.exec(namespace, name, "free", "-m")
    mem_row = next(line.split() for line in free.splitlines() if line.startswith("Mem:"))
    assert mem_row[1] == "1024", free
    top = node.exec(namespace, name, "top", "-bn1")
    assert re.search(r"MiB Mem :\s+1024\.0 total", top), top[:400]
    assert node.exec(namespace, name, "cat", "/sys/devices/system/cpu/online").strip() == "0"
    uptime = float(node.exec(namespace, name, "cat", "/proc/uptime").split()[0])
    started = node.get("pod", name, "-n", namespace)["status"]["startTime"]
    host_uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert 0 <= uptime <= age_seconds(started) + 2, (uptime, started)
    assert uptime < host_uptime - 5, (uptime, host_uptime)

    apply(node, pod("seed", namespace, cpu="2", memory="4Gi"))
    wait_pod_ready(node, namespace, "seed")
    assert memtotal_kib(node.exec(namespace, "seed", "cat", "/proc/meminfo")) == 4194304

    plain = make_namespace("plain")
    apply(node, pod("plain", plain))
    wait_pod_ready(node, plain, "plain")
    assert injected(node, plain, "plain") == ""
    assert memtotal_kib(node.exec(plain, "plain", "cat", "/proc/meminfo")) == host_memtotal_kib()
    assert processors(node.exec(plain, "plain", "cat", "/proc/cpuinfo")) == host_processors()


def parse_time(timestamp: str) -> datetime.datetime:
    """An RFC 3339 time from the API or ``kubectl logs --timestamps`` (nanoseconds cut)."""
    match = re.fullmatch(r"(\S+?T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", timestamp)
    assert match, timestamp
    fraction = (match.group(2) or "0")[:6].ljust(6, "0")
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.datetime.fromisoformat(f"{match.group(1)}.{fraction}{zone}")


def ready_since(found: dict) -> datetime.datetime | None:
    """When a pod became Ready (its condition's lastTransitionTime), None if it is not."""
    for condition in found.get("status", {}).get("conditions", []):
        if condition["type"] == "Ready" and condition["status"] == "True":
            return parse_time(condition["lastTransitionTime"])
    return None


def pods(node: Node, namespace: str, selector: str) -> list[dict]:
    return node.get("pods", "-n", namespace, "-l", selector)["items"]


def pod_uids(node: Node, namespace: str, selector: str) -> set[str]:
    return {p["metadata"]["uid"] for p in pods(node, namespace, selector)}


def delete_enabled_namespaces(node: Node) -> None:
    """Delete every namespace labelled for injection and wait: no injected pod is left, so
    an uninstall may leave nothing on the node (the agent keeps its generation record while
    a container still holds its files, for the next agent's repair)."""
    selector = ",".join(f"{k}={v}" for k, v in ENABLED.items())
    node.kubectl("delete", "namespace", "-l", selector, "--wait=true", timeout=300)

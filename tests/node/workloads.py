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


# -- in-place resize (issue 18) ------------------------------------------------------------

RESIZE_POLICY = [
    {"resourceName": "cpu", "restartPolicy": "NotRequired"},
    {"resourceName": "memory", "restartPolicy": "NotRequired"},
]
RESIZE_CONDITIONS = frozenset({"PodResizePending", "PodResizeInProgress"})


def read_limits(sysinfo: bool = False) -> str:
    """A shell command printing what a program sees as one line
    ``mem=KIB cpus=N online=LIST nproc=N getconf=N`` (``free=KIB`` instead of ``getconf``
    with ``sysinfo``). ``getconf`` is glibc's _NPROCESSORS_ONLN (/sys/devices/system/cpu/
    online), ``nproc`` the affinity, ``free`` busybox's (sysinfo(2)). ``cat`` of the online
    list: busybox cat copies with sendfile(2), which needs the file's size to follow the
    text's length when a resize changes it ("0" to "0-1")."""
    fields = [
        "mem=$(awk '/^MemTotal:/{print $2}' /proc/meminfo)",
        "cpus=$(grep -c ^processor /proc/cpuinfo)",
        "online=$(cat /sys/devices/system/cpu/online)",
        "nproc=$(nproc)",
        "free=$(free | awk '/^Mem:/{print $2}')"
        if sysinfo
        else "getconf=$(getconf _NPROCESSORS_ONLN)",
    ]
    return f'echo "{" ".join(fields)}"'


def limits_reader(sysinfo: bool = False) -> list[str]:
    """A container command printing :func:`read_limits` five times a second (to the
    container log, which the runtime timestamps)."""
    loop = f'trap "exit 0" TERM; while :; do {read_limits(sysinfo)}; sleep 0.2; done'
    return ["sh", "-c", loop]


def seen_line(memory_kib: int, cpus: int, sysinfo: bool = False) -> str:
    """The line :func:`limits_reader` prints under these limits (nproc: the host's CPUs)."""
    online = "0" if cpus == 1 else f"0-{cpus - 1}"
    last = f"free={memory_kib}" if sysinfo else f"getconf={cpus}"
    return f"mem={memory_kib} cpus={cpus} online={online} nproc={host_processors()} {last}"


def resize(node: Node, namespace: str, name: str, check: bool = True, **limits: str):
    """``kubectl patch pod --subresource resize`` of the first container's limits."""
    container_name = node.get("pod", name, "-n", namespace)["spec"]["containers"][0]["name"]
    patch = {"spec": {"containers": [{"name": container_name, "resources": {"limits": limits}}]}}
    return node.kubectl(
        "patch", "pod", name, "-n", namespace, "--subresource", "resize", "-p", json.dumps(patch),
        check=check,
    )  # fmt: skip


def resize_done(found: dict, cpu: str, memory: str) -> bool:
    """Whether the kubelet reports the resize to these limits done (Kubernetes 1.33: no
    PodResizePending/PodResizeInProgress condition, and the container status's
    ``resources`` — what the runtime applied — are the new limits)."""
    from kube_lxcfs.sandbox.quantity import parse_memory, parse_quantity

    status = found.get("status", {})
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    pending = conditions.get("PodResizePending")
    assert pending is None or pending.get("reason") != "Infeasible", pending
    if RESIZE_CONDITIONS & set(conditions):
        return False
    applied = status["containerStatuses"][0].get("resources", {}).get("limits", {})
    return (
        "cpu" in applied
        and "memory" in applied
        and parse_quantity(applied["cpu"]) == parse_quantity(cpu)
        and parse_memory(applied["memory"]) == parse_memory(memory)
    )


def wait_resized(
    node: Node, namespace: str, name: str, *, cpu: str, memory: str, timeout: float = 60
) -> datetime.datetime:
    """Wait for the kubelet to report the resize done; the (wall clock) time it was seen."""

    def done() -> datetime.datetime | None:
        if resize_done(node.get("pod", name, "-n", namespace), cpu, memory):
            return datetime.datetime.now(datetime.UTC)
        return None

    return wait_until(done, timeout, f"the kubelet to resize {namespace}/{name}", interval=0.1)


def container_log(node: Node, namespace: str, name: str) -> list[tuple[datetime.datetime, str]]:
    """The container's log lines with the runtime's timestamps."""
    logs = node.kubectl("logs", "--timestamps", "-n", namespace, name).stdout
    result = []
    for line in logs.splitlines():
        stamp, _, text = line.partition(" ")
        result.append((parse_time(stamp), text))
    return result


def first_seen(
    node: Node, namespace: str, name: str, *, expected: str, since: datetime.datetime
) -> tuple[datetime.datetime, list[tuple[datetime.datetime, str]]]:
    """When the pod's reader first printed ``expected`` after ``since`` (waiting until its
    log reaches 2 s past that line, and checking it printed nothing else then), and the
    lines it printed before, since ``since``."""

    def settled() -> list[tuple[datetime.datetime, str]] | None:
        lines = [(t, text) for t, text in container_log(node, namespace, name) if t >= since]
        first = next((t for t, text in lines if text == expected), None)
        if first is None or lines[-1][0] < first + datetime.timedelta(seconds=2):
            return None
        return lines

    lines = wait_until(settled, 60, f"{namespace}/{name} to print {expected!r}", interval=0.3)
    first = next(i for i, (_, text) in enumerate(lines) if text == expected)
    wrong = [(t.isoformat(), text) for t, text in lines[first:] if text != expected]
    assert not wrong, wrong[:5]
    return lines[first][0], lines[:first]


def resizable_pod(name: str, namespace: str, *, sysinfo: bool = False, **kwargs) -> dict:
    """A pod with limits cpu 1 / memory 1Gi that may be resized in place, reading its limits."""
    body = pod(name, namespace, cpu="1", memory="1Gi", command=limits_reader(sysinfo), **kwargs)
    body["spec"]["containers"][0]["resizePolicy"] = RESIZE_POLICY
    return body


def check_resize(
    node: Node, namespace: str, name: str, *, sysinfo: bool = False
) -> dict[str, float]:
    """Resize the pod in place (cpu 1 / 1Gi → cpu 2 / 2Gi → cpu 1, memory staying 2Gi) and
    check what its reader and ``kubectl exec`` see after each step; the seconds from "the
    kubelet reports the resize done" to "the reader prints the new figures" (negative: the
    reader saw them before the kubelet's status said so) and to "kubectl exec shows them".

    cpu 2 is all this two-CPU node has (the pod's requests stay 50m/32Mi, so it fits).
    Memory is not lowered in place: Kubernetes 1.33 refuses a smaller memory limit with
    resizePolicy NotRequired (1.34 allows it); the refusal is checked so that a newer
    pinned version shows up here.
    """
    measured: dict[str, float] = {}
    since = datetime.datetime.now(datetime.UTC)
    first_seen(node, namespace, name, expected=seen_line(1048576, 1, sysinfo), since=since)
    deadline = datetime.timedelta(seconds=1)
    steps = (("up", "2", "2Gi", 2097152, 2), ("down", "1", "2Gi", 2097152, 1))
    for step, cpu, memory, memory_kib, cpus in steps:
        patched = datetime.datetime.now(datetime.UTC)
        resize(node, namespace, name, cpu=cpu, memory=memory)
        done = wait_resized(node, namespace, name, cpu=cpu, memory=memory)
        expected = seen_line(memory_kib, cpus, sysinfo)
        exec_seconds = _exec_sees(
            node, namespace, name, expected=expected, sysinfo=sysinfo, done=done
        )
        seen, before = first_seen(node, namespace, name, expected=expected, since=patched)
        measured[f"{step} reader"] = (seen - done).total_seconds()
        measured[f"{step} exec"] = exec_seconds
        # Within 1 s: nothing the reader printed later than 1 s after "done" is old. (The
        # first new line itself may come later when the reader is slow: its loop forks six
        # programs, 0.2-1 s an iteration on this busy machine.)
        late = [(t.isoformat(), text) for t, text in before if t > done + deadline]
        assert not late, (step, done.isoformat(), late[:5])
    refused = resize(node, namespace, name, cpu="1", memory="512Mi", check=False)
    assert refused.returncode != 0
    assert "memory limits cannot be decreased" in refused.stderr, refused.stderr
    return measured


def _exec_sees(
    node: Node, namespace: str, name: str, *, expected: str, sysinfo: bool, done: datetime.datetime
) -> float:
    """Seconds from ``done`` until ``kubectl exec`` of :func:`read_limits` prints
    ``expected`` (one exec costs 0.2-0.5 s here: an upper bound)."""
    command = read_limits(sysinfo)

    def sees() -> bool:
        return node.exec(namespace, name, "sh", "-c", command).strip() == expected

    wait_until(sees, 10, f"kubectl exec in {namespace}/{name} to show {expected!r}", interval=0.05)
    return (datetime.datetime.now(datetime.UTC) - done).total_seconds()

"""The seed's walkthrough on a real node with `kube-lxcfs install`, what running pods see
while the agent restarts or is upgraded, webhook availability (one replica may go away while
pods are created; with both gone, creation follows the failurePolicy), and that uninstalling
leaves nothing behind. One install serves the module; the uninstall test runs last."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.control_plane import wait_until

from .conftest import record
from .node import CGROUP_ROOT, POD_CGROUP, Node, NodeError
from .workloads import (
    AGENT,
    AGENT_SELECTOR,
    ENABLED,
    IMAGE_OPTIONS,
    INSTALL_NAMESPACE,
    WEBHOOK_SELECTOR,
    apply,
    check_installed,
    check_resize,
    container_log,
    delete_enabled_namespaces,
    deployment,
    deployment_pod,
    host_memtotal_kib,
    injected,
    kube_lxcfs,
    memtotal_kib,
    parse_time,
    pod,
    pod_uids,
    pods,
    ready_since,
    resizable_pod,
    wait_pod_ready,
    walkthrough,
)

pytestmark = [pytest.mark.node, pytest.mark.slow]

LIMIT_LINE = "MemTotal: 1048576 kB"
# Reads /proc/meminfo five times a second; every line goes to the container log, which the
# kubelet timestamps: the test reads what the app saw and when.
READER = ["sh", "-c", "while :; do head -n1 /proc/meminfo 2>&1 | tr -s ' '; sleep 0.2; done"]


@pytest.fixture(scope="module")
def installed(node: Node) -> Iterator[Node]:
    """kube-lxcfs installed with `kube-lxcfs install --wait` and the locally built images."""
    started = time.monotonic()
    kube_lxcfs(node, "install", *IMAGE_OPTIONS, "--wait", "--timeout=180")
    record("kube-lxcfs install --wait", time.monotonic() - started)
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


def _agent_pod(node: Node) -> str:
    running = [
        p for p in pods(node, INSTALL_NAMESPACE, AGENT_SELECTOR)
        if not p["metadata"].get("deletionTimestamp")
    ]  # fmt: skip
    assert len(running) == 1, [p["metadata"]["name"] for p in running]
    return running[0]["metadata"]["name"]


def _new_agent_ready(node: Node, old: str) -> datetime.datetime:
    """Wait for the agent pod that replaces ``old``; when it became Ready."""

    def ready() -> datetime.datetime | None:
        for found in pods(node, INSTALL_NAMESPACE, AGENT_SELECTOR):
            if found["metadata"]["name"] != old and not found["metadata"].get("deletionTimestamp"):
                return ready_since(found)
        return None

    return wait_until(ready, 120, "the new agent pod to be Ready", interval=0.3)


def _check_reads_recover(node: Node, namespace: str, name: str, ready: datetime.datetime) -> None:
    """Within 5 s of the new agent's Ready the app reads its limit, and nothing else after."""
    first_good = _limit_read_again(node, namespace, name, ready, settle_seconds=8, timeout=30)
    assert (first_good - ready).total_seconds() <= 5, ready


def test_agent_restart_and_upgrade_while_an_app_reads(installed: Node, make_namespace) -> None:
    node = installed
    namespace = make_namespace("reader", ENABLED)
    apply(node, deployment("reader", namespace, command=READER))
    reader = deployment_pod(node, namespace, "reader")
    assert injected(node, namespace, reader) == "injected"

    old = _agent_pod(node)  # the DaemonSet recreates a deleted agent pod
    node.kubectl("delete", "pod", "-n", INSTALL_NAMESPACE, old, "--wait=true")
    _check_reads_recover(node, namespace, reader, _new_agent_ready(node, old))

    old = _agent_pod(node)  # an upgrade: a changed pod template rolls the DaemonSet
    node.kubectl("rollout", "restart", f"daemonset/{AGENT}", "-n", INSTALL_NAMESPACE)
    _check_reads_recover(node, namespace, reader, _new_agent_ready(node, old))


def test_pods_created_while_the_agent_is_down_start_once_it_is_back(
    installed: Node, make_namespace
) -> None:
    node = installed
    namespace = make_namespace("down", ENABLED)
    away = {"spec": {"template": {"spec": {"nodeSelector": {"kube-lxcfs-test/agent": "away"}}}}}
    back = {"spec": {"template": {"spec": {"nodeSelector": {"kube-lxcfs-test/agent": None}}}}}
    ds = f"daemonset/{AGENT}"
    node.kubectl("patch", ds, "-n", INSTALL_NAMESPACE, "--type=merge", "-p", json.dumps(away))
    try:
        wait_until(
            lambda: not pods(node, INSTALL_NAMESPACE, AGENT_SELECTOR),
            60,
            "the agent pod to be gone",
            interval=0.3,
        )
        apply(node, pod("early", namespace))

        def mount_failed() -> bool:
            events = node.get("events", "-n", namespace, "--field-selector=reason=FailedMount")
            return any(e["involvedObject"]["name"] == "early" for e in events["items"])

        wait_until(mount_failed, 60, "kubelet to report the missing lxcfs files", interval=0.5)
        assert ready_since(node.get("pod", "early", "-n", namespace)) is None
    finally:
        node.kubectl("patch", ds, "-n", INSTALL_NAMESPACE, "--type=merge", "-p", json.dumps(back))
    wait_pod_ready(node, namespace, "early", timeout=180)
    meminfo = node.exec(namespace, "early", "cat", "/proc/meminfo")
    assert memtotal_kib(meminfo) == 1048576


# -- in-place resize (issue 18) -----------------------------------------------------------


def test_a_pod_resized_in_place_sees_its_new_limits(installed: Node, make_namespace) -> None:
    """``kubectl patch pod --subresource resize`` (hostPath mode): the pod's reader and
    ``kubectl exec`` see the new MemTotal, processors, online CPUs and getconf within 1 s
    of the kubelet reporting the resize done."""
    node = installed
    namespace = make_namespace("resize", ENABLED)
    apply(node, resizable_pod("resized", namespace))
    wait_pod_ready(node, namespace, "resized")
    assert injected(node, namespace, "resized") == "injected"
    measured = check_resize(node, namespace, "resized")
    for step, seconds in measured.items():
        record(f"resize {step} after done (hostPath)", seconds)


# -- a hung agent (issue 15) ----------------------------------------------------------------


def _agent_processes(node: Node) -> tuple[dict, list[int]]:
    """The agent pod and the host pids of its ``kube-lxcfs fs`` container (the node shares
    the host's pid namespace: found through the container's cgroup)."""
    agent = next(
        p for p in pods(node, INSTALL_NAMESPACE, AGENT_SELECTOR)
        if not p["metadata"].get("deletionTimestamp")
    )  # fmt: skip
    uid = agent["metadata"]["uid"]
    status = next(c for c in agent["status"]["containerStatuses"] if c["name"] == "fs")
    container_id = status["containerID"].split("://", 1)[1]
    procs = next(CGROUP_ROOT.glob(f"pids/{POD_CGROUP}/**/pod{uid}/{container_id}/cgroup.procs"))
    pids = [int(p) for p in procs.read_text().split()]
    assert pids, procs
    return agent, pids


def test_a_hung_agent_is_restarted_by_its_liveness_probe_and_pods_read_again(
    installed: Node, make_namespace
) -> None:
    """SIGSTOP of the agent's process from the host: its /healthz stops answering, the
    kubelet's liveness probe fails and restarts the container, the new agent repairs the
    running app pod's mounts, and the app reads its limit again."""
    node = installed
    namespace = make_namespace("hung", ENABLED)
    apply(node, deployment("hung", namespace, command=READER))
    reader = deployment_pod(node, namespace, "hung")
    agent, pids = _agent_processes(node)
    restarts = next(c for c in agent["status"]["containerStatuses"] if c["name"] == "fs")[
        "restartCount"
    ]
    stopped = datetime.datetime.now(datetime.UTC)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:

        def restarted() -> dict | None:
            found = node.get("pod", agent["metadata"]["name"], "-n", INSTALL_NAMESPACE)
            fs = next(c for c in found["status"]["containerStatuses"] if c["name"] == "fs")
            return fs if fs["restartCount"] > restarts and fs.get("ready") else None

        fs = wait_until(restarted, 180, "the kubelet to restart the hung agent", interval=0.5)
    finally:
        for pid in pids:  # nothing left to resume once the kubelet killed it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    killed = parse_time(fs["lastState"]["terminated"]["finishedAt"])
    started = parse_time(fs["state"]["running"]["startedAt"])
    events = node.get("events", "-n", INSTALL_NAMESPACE, "--field-selector=reason=Killing")
    assert any("liveness probe" in e.get("message", "") for e in events["items"]), events
    recovered = _limit_read_again(node, namespace, reader, started)
    record("hung agent: SIGSTOP to killed", (killed - stopped).total_seconds())
    record("hung agent: SIGSTOP to app reads its limit", (recovered - stopped).total_seconds())
    assert recovered - started <= datetime.timedelta(seconds=10), (stopped, started, recovered)


def _limit_read_again(
    node: Node,
    namespace: str,
    name: str,
    started: datetime.datetime,
    *,
    settle_seconds: float = 12,
    timeout: float = 60,
) -> datetime.datetime:
    """When the app first read its limit after ``started``; nothing else (no host figure, no
    disconnected mount) after that, over ``settle_seconds`` of reads."""
    settle = started + datetime.timedelta(seconds=settle_seconds)
    wait_until(
        lambda: any(t > settle for t, _ in container_log(node, namespace, name)),
        timeout,
        f"reads {settle_seconds:g} s after {started.isoformat()}",
        interval=0.5,
    )
    after = [(t, text) for t, text in container_log(node, namespace, name) if t >= started]
    first_good = next((t for t, text in after if text == LIMIT_LINE), None)
    assert first_good is not None, after[-10:]
    wrong = [(t.isoformat(), text) for t, text in after if t >= first_good and text != LIMIT_LINE]
    assert not wrong, wrong[:10]
    return first_good


# -- webhook availability ----------------------------------------------------------------

WEBHOOK = "kube-lxcfs-webhook"


def _unscheduled(name: str, namespace: str) -> dict:
    """A pod that goes through admission but never runs (no node matches), to keep the node
    light while many are created."""
    body = pod(name, namespace)
    body["spec"]["nodeSelector"] = {"kube-lxcfs-test/nowhere": "true"}
    return body


def _create(node: Node, namespace: str) -> tuple[str, str]:
    """Create one pod; (name, '') or (name, error)."""
    name = f"p-{uuid.uuid4().hex[:8]}"
    result = node.kubectl(
        "create", "-f", "-", input=json.dumps(_unscheduled(name, namespace)), check=False
    )
    return name, "" if result.returncode == 0 else result.stderr.strip()


@pytest.fixture
def creating(node: Node, make_namespace) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """Pods created one after another in a labelled namespace until the test ends."""
    namespace = make_namespace("loop", ENABLED)
    results: list[tuple[str, str]] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            results.append(_create(node, namespace))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield namespace, results
    finally:
        stop.set()
        thread.join()


def test_one_webhook_replica_deleted_while_pods_are_created(
    installed: Node,
    creating,
) -> None:
    node = installed
    namespace, results = creating
    wait_until(lambda: len(results) >= 3, 60, "the first pods of the loop")
    victim = pods(node, INSTALL_NAMESPACE, WEBHOOK_SELECTOR)[0]["metadata"]["name"]
    node.kubectl("delete", "pod", "-n", INSTALL_NAMESPACE, victim, "--wait=true", timeout=120)
    wait_until(
        lambda: (
            node.get("deployment", WEBHOOK, "-n", INSTALL_NAMESPACE)["status"].get("readyReplicas")
            == 2
        ),
        120,
        "the replacement replica",
        interval=0.5,
    )
    count = len(results)
    wait_until(lambda: len(results) >= count + 3, 60, "pods created after the replacement")
    failed = [r for r in list(results) if r[1]]
    assert not failed, failed[:5]
    missed = [
        name for name, _ in list(results)[:-1] if injected(node, namespace, name) != "injected"
    ]
    assert not missed, f"{len(missed)} of {len(results)} pods not injected: {missed[:5]}"


def _set_failure_policy(node: Node, policy: str) -> None:
    config = node.get("mutatingwebhookconfiguration", WEBHOOK)
    patch = [
        {"op": "replace", "path": f"/webhooks/{i}/failurePolicy", "value": policy}
        for i in range(len(config["webhooks"]))
    ]
    node.kubectl(
        "patch", "mutatingwebhookconfiguration", WEBHOOK, "--type=json", "-p", json.dumps(patch)
    )


def test_without_replicas_creation_follows_the_failure_policy(
    installed: Node,
    make_namespace,
) -> None:
    node = installed
    namespace = make_namespace("none", ENABLED)
    configured = node.get("mutatingwebhookconfiguration", WEBHOOK)["webhooks"][0]
    assert configured["failurePolicy"] == "Ignore"  # the chart's default
    node.kubectl("scale", f"deployment/{WEBHOOK}", "-n", INSTALL_NAMESPACE, "--replicas=0")
    try:
        wait_until(
            lambda: not pods(node, INSTALL_NAMESPACE, WEBHOOK_SELECTOR),
            120,
            "every webhook replica to be gone",
            interval=0.5,
        )
        name, error = _create(node, namespace)  # Ignore: created, without the files
        assert not error, error
        assert injected(node, namespace, name) == ""
        _set_failure_policy(node, "Fail")
        name, error = _create(node, namespace)  # Fail: refused, saying why
        assert "kube-lxcfs" in error and "failed calling webhook" in error, error
        with pytest.raises(NodeError):
            node.kubectl("get", "pod", "-n", namespace, name)
    finally:
        _set_failure_policy(node, "Ignore")
        node.kubectl("scale", f"deployment/{WEBHOOK}", "-n", INSTALL_NAMESPACE, "--replicas=2")
    wait_until(
        lambda: (
            node.get("deployment", WEBHOOK, "-n", INSTALL_NAMESPACE)["status"].get("readyReplicas")
            == 2
        ),
        120,
        "both replicas back",
        interval=0.5,
    )


# -- uninstall ----------------------------------------------------------------------------


def assert_nothing_left(node: Node) -> None:
    """After an uninstall: no webhook configuration, FUSE mount, mount-dir entry or state."""
    assert not node.get("mutatingwebhookconfigurations")["items"]
    wait_until(lambda: not _fuse_mounts(node), 60, "no FUSE mount left on the node")
    assert not list(node.host_path("/var/lib/lxcfs").iterdir())
    # The stopping agent removes its record after scanning every mount namespace.
    wait_until(
        lambda: not list(node.host_path("/run/kube-lxcfs").rglob("*")),
        30,
        "no state left in /run/kube-lxcfs",
    )


def _fuse_mounts(node: Node) -> list[str]:
    """FUSE mounts in the node's mount namespace (where the kubelet and the pods' sources are)."""
    assert node.holder is not None
    mountinfo = Path(f"/proc/{node.holder.pid}/mountinfo").read_text()
    return [line for line in mountinfo.splitlines() if " - fuse." in line or " - fuse " in line]


def _pod_cgroups(uids: set[str]) -> list[Path]:
    return [
        path
        for uid in uids
        for path in CGROUP_ROOT.glob(f"*/{POD_CGROUP}/**/pod{uid}")
    ]  # fmt: skip


def test_uninstall_leaves_nothing_and_installing_again_works(
    installed: Node, make_namespace
) -> None:
    node = installed
    ours = pod_uids(node, INSTALL_NAMESPACE, AGENT_SELECTOR)
    ours |= pod_uids(node, INSTALL_NAMESPACE, WEBHOOK_SELECTOR)
    assert len(ours) == 3 and _fuse_mounts(node)
    assert list(node.host_path("/run/kube-lxcfs").glob("generations-*"))
    delete_enabled_namespaces(node)

    kube_lxcfs(node, "uninstall", *IMAGE_OPTIONS, "--wait")
    assert node.kubectl("get", "namespace", INSTALL_NAMESPACE, check=False).returncode != 0
    assert_nothing_left(node)
    wait_until(lambda: not _pod_cgroups(ours), 60, "the cgroups of our pods to be removed")

    namespace = make_namespace("after", ENABLED)
    apply(node, pod("after", namespace))
    wait_pod_ready(node, namespace, "after")
    assert injected(node, namespace, "after") == ""
    meminfo = node.exec(namespace, "after", "cat", "/proc/meminfo")
    assert memtotal_kib(meminfo) == host_memtotal_kib()

    kube_lxcfs(node, "install", *IMAGE_OPTIONS, "--wait", "--timeout=180")
    check_installed(node)
    apply(node, deployment("again", namespace))
    again = deployment_pod(node, namespace, "again")
    assert memtotal_kib(node.exec(namespace, again, "cat", "/proc/meminfo")) == 1048576

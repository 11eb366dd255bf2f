"""``kube-lxcfs doctor``: a real mounted filesystem (alive, dead, absent) and a cluster."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube_lxcfs.deploy.doctor import FAIL, OK, WARN, check_files, cluster_findings
from kube_lxcfs.deploy.kubeapi import connect
from kube_lxcfs.deploy.render import render
from kube_lxcfs.deploy.selfprovision import SelfProvisioner
from kube_lxcfs.deploy.values import DEFAULT_FILES, resolve
from support.fake_apiserver import FakeApiServer, fake_apiserver
from support.fsdaemons import force_unmount, start_kube_lxcfs


def _doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kube_lxcfs", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.root
@pytest.mark.fuse
def test_node_with_a_live_filesystem_is_healthy(tmp_path: Path) -> None:
    fs = start_kube_lxcfs(tmp_path / "mnt")
    try:
        proc = _doctor("--node", "--mount-dir", str(fs.mountpoint))
    finally:
        fs.stop()
    assert proc.returncode == 0, proc.stdout
    lines = proc.stdout.splitlines()
    assert lines[0] == "ok   fuse: /dev/fuse available"
    assert lines[2].startswith(f"ok   mount: {fs.mountpoint} mounted (fuse")
    for rel in DEFAULT_FILES:
        assert any(line.startswith(f"ok   file {rel}: ") for line in lines), rel
    assert lines[-1] == "no problems found"


@pytest.mark.root
@pytest.mark.fuse
def test_node_with_a_dead_filesystem_says_how_to_recover(tmp_path: Path) -> None:
    fs = start_kube_lxcfs(tmp_path / "mnt")
    try:
        fs.send(signal.SIGKILL)
        fs.process.wait(timeout=30)
        proc = _doctor("--node", "--mount-dir", str(fs.mountpoint))
    finally:
        fs.stop()
        force_unmount(fs.mountpoint)
    assert proc.returncode == 1
    assert "FAIL mount: " in proc.stdout
    assert "Transport endpoint is not connected" in proc.stdout
    assert "fix: restart the node agent" in proc.stdout


def test_node_without_a_mount(tmp_path: Path) -> None:
    proc = _doctor("--node", "--mount-dir", str(tmp_path))
    assert proc.returncode == 1
    assert f"FAIL mount: nothing is mounted on {tmp_path}" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "1 problem(s) found"


def test_files_that_do_not_answer_or_lie(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/meminfo").write_text("garbage\n")
    (tmp_path / "proc/uptime").write_text("12.5 3.0\n")
    findings = {
        f.check: f for f in check_files(str(tmp_path), ["proc/meminfo", "proc/uptime", "proc/stat"])
    }
    assert findings["file proc/meminfo"].level == FAIL
    assert findings["file proc/uptime"].level == OK
    assert findings["file proc/stat"].level == FAIL
    assert "No such file" in findings["file proc/stat"].detail


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeApiServer]:
    with fake_apiserver(tmp_path) as running:
        yield running


READYZ = "/api/v1/namespaces/lxcfs/services/http:kube-lxcfs-webhook:metrics/proxy/readyz"


def _healthy_cluster(server: FakeApiServer, tmp_path: Path) -> None:
    api = connect(str(server.kubeconfig))
    for obj in render(resolve()):
        api.apply(obj)
    SelfProvisioner(
        api=api,
        namespace="lxcfs",
        secret_name="kube-lxcfs-webhook-tls",
        webhook_config="kube-lxcfs-webhook",
        service="kube-lxcfs-webhook",
        cert_dir=tmp_path / "tls",
    ).run_once()
    for path, status in (
        ("/apis/apps/v1/namespaces/lxcfs/daemonsets/kube-lxcfs-agent",
         {"desiredNumberScheduled": 3, "numberReady": 3}),
        ("/apis/apps/v1/namespaces/lxcfs/deployments/kube-lxcfs-webhook", {"readyReplicas": 2}),
    ):  # fmt: skip
        obj = server.get(path) or {}
        obj["status"] = status
        server.put(path, obj)
    server.state.answers[READYZ] = (200, {"status": "ok"})
    for name, labels in (
        ("team-a", {"lxcfs-admission-webhook": "enabled"}),
        ("hardened", {"lxcfs-admission-webhook": "enabled",
                      "pod-security.kubernetes.io/enforce": "restricted"}),
    ):  # fmt: skip
        server.put(
            f"/api/v1/namespaces/{name}",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}},
        )


def test_healthy_cluster(server: FakeApiServer, tmp_path: Path) -> None:
    _healthy_cluster(server, tmp_path)
    proc = _doctor("--kubeconfig", str(server.kubeconfig))
    assert proc.returncode == 0, proc.stdout
    out = proc.stdout
    assert "ok   node agent: 3/3 nodes ready" in out
    assert "ok   webhook: 2/2 replicas ready" in out
    assert "ok   caBundle: 1 CA(s), valid until" in out
    assert "ok   serving certificate: expires" in out
    assert "ok   webhook reachable" in out
    assert "ok   namespaces: injected: team-a" in out
    assert "warn namespace hardened: enforces Pod Security restricted" in out


def test_cluster_problems_are_named_with_fixes(server: FakeApiServer, tmp_path: Path) -> None:
    _healthy_cluster(server, tmp_path)
    api = connect(str(server.kubeconfig))
    mwc_path = (
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/kube-lxcfs-webhook"
    )
    mwc = server.get(mwc_path) or {}
    for hook in mwc["webhooks"]:
        hook["clientConfig"].pop("caBundle")
    server.put(mwc_path, mwc)
    del server.state.answers[READYZ]
    findings = {f.check: f for f in cluster_findings(api, "lxcfs")}
    assert findings["caBundle"].level == FAIL
    assert "pods are admitted without injection" in findings["caBundle"].detail
    assert findings["webhook reachable"].level == FAIL
    assert "NetworkPolicies" in findings["webhook reachable"].fix
    assert findings["namespace hardened"].level == WARN


def test_serving_certificate_from_another_ca_is_caught(
    server: FakeApiServer, tmp_path: Path
) -> None:
    _healthy_cluster(server, tmp_path)
    secret_path = "/api/v1/namespaces/lxcfs/secrets/kube-lxcfs-webhook-tls"
    server.state.objects.pop(secret_path)
    api = connect(str(server.kubeconfig))
    SelfProvisioner(  # a new CA whose cert never reaches the caBundle
        api=api,
        namespace="lxcfs",
        secret_name="kube-lxcfs-webhook-tls",
        webhook_config="not-this-one",
        service="kube-lxcfs-webhook",
        cert_dir=tmp_path / "other",
    ).run_once()
    findings = {f.check: f for f in cluster_findings(api, "lxcfs")}
    assert findings["serving certificate"].level == FAIL
    assert "not signed by a CA of the caBundle" in findings["serving certificate"].detail


def test_empty_cluster(server: FakeApiServer) -> None:
    proc = _doctor("--kubeconfig", str(server.kubeconfig))
    assert proc.returncode == 1
    assert "FAIL webhook configuration: kube-lxcfs-webhook not found" in proc.stdout
    assert "fix: kube-lxcfs install" in proc.stdout

"""``install``/``uninstall`` through the real kubernetes client against a recording API server.

The fake server (tests/support/fake_apiserver.py) checks the requests the client
sends; the real kube-apiserver tier (tests/cluster) checks that the server accepts them.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube_lxcfs.deploy.kubeapi import connect, object_path
from kube_lxcfs.deploy.lifecycle import readiness, wait_ready
from kube_lxcfs.deploy.render import render
from kube_lxcfs.deploy.values import resolve
from support.fake_apiserver import FakeApiServer, fake_apiserver

MWC_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/kube-lxcfs-webhook"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeApiServer]:
    with fake_apiserver(tmp_path) as running:
        yield running


def _kl(server: FakeApiServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kube_lxcfs", *args, "--kubeconfig", str(server.kubeconfig)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_install_applies_every_object_then_is_idempotent(server: FakeApiServer) -> None:
    first = _kl(server, "install")
    assert first.returncode == 0, first.stderr
    objects = render(resolve())
    lines = first.stdout.splitlines()
    assert lines[: len(objects)] == [
        f"{o['kind'].lower()}/{o['metadata']['name']}"
        + (f" -n {o['metadata']['namespace']}" if "namespace" in o["metadata"] else "")
        + " created"
        for o in objects
    ]
    assert "lxcfs-admission-webhook=enabled" in lines[-1]
    for obj in objects:
        stored = server.get(object_path(obj))
        assert stored is not None
        assert stored["spec" if "spec" in obj else "metadata"] == (
            obj["spec"] if "spec" in obj else stored["metadata"]
        )
    applies = [r for r in server.requests() if r.method == "PATCH"]
    assert len(applies) == len(objects)
    assert {r.content_type for r in applies} == {"application/apply-patch+yaml"}
    assert all(r.query.get("fieldManager") == "kube-lxcfs" for r in applies)
    # The webhook configuration goes last: the webhook exists before anything routes to it.
    assert applies[-1].path == MWC_PATH

    second = _kl(server, "install")
    assert second.returncode == 0, second.stderr
    assert all(line.endswith(" unchanged") for line in second.stdout.splitlines()[:-1])

    changed = _kl(server, "install", "--set", "webhook.replicaCount=3")
    assert "deployment/kube-lxcfs-webhook -n lxcfs configured" in changed.stdout


def test_uninstall_removes_the_webhook_configuration_first(server: FakeApiServer) -> None:
    assert _kl(server, "install").returncode == 0
    server.put("/api/v1/namespaces/team-a", _namespace("team-a", labelled=True))
    server.put("/api/v1/namespaces/team-b", _namespace("team-b", labelled=False))
    # The Secret the webhook provisions at run time goes too.
    secret_path = "/api/v1/namespaces/lxcfs/secrets/kube-lxcfs-webhook-tls"
    server.put(secret_path, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}})
    before = len(server.requests())
    proc = _kl(server, "uninstall")
    assert proc.returncode == 0, proc.stderr
    deletes = [r.path for r in server.requests()[before:] if r.method == "DELETE"]
    assert deletes[0] == MWC_PATH
    assert deletes[-1] == "/api/v1/namespaces/lxcfs"
    assert deletes.index(secret_path) < deletes.index("/api/v1/namespaces/lxcfs")
    assert server.paths() == ["/api/v1/namespaces/team-a", "/api/v1/namespaces/team-b"]
    assert "namespaces still labelled lxcfs-admission-webhook=enabled: team-a;" in proc.stdout
    assert "kubectl label namespace team-a lxcfs-admission-webhook-" in proc.stdout

    again = _kl(server, "uninstall")
    assert again.returncode == 0
    assert "mutatingwebhookconfiguration/kube-lxcfs-webhook not found" in again.stdout


def _namespace(name: str, *, labelled: bool) -> dict:
    labels = {"lxcfs-admission-webhook": "enabled"} if labelled else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def test_client_dry_run_sends_nothing(server: FakeApiServer) -> None:
    for command in ("install", "uninstall"):
        proc = _kl(server, command, "--dry-run")
        assert proc.returncode == 0, proc.stderr
        assert "(client dry run)" in proc.stdout
    assert server.requests() == []


def test_server_dry_run_stores_nothing(server: FakeApiServer) -> None:
    proc = _kl(server, "install", "--dry-run=server")
    assert proc.returncode == 0, proc.stderr
    assert "created (server dry run)" in proc.stdout
    assert server.paths() == []
    patches = [r for r in server.requests() if r.method == "PATCH"]
    assert patches and all(r.query.get("dryRun") == "All" for r in patches)


def test_missing_cert_manager_is_explained(server: FakeApiServer) -> None:
    server.state.absent_groups.add("cert-manager.io")
    proc = _kl(server, "install", "--set", "certManager.enabled=true")
    assert proc.returncode == 1
    assert "cert-manager is not installed" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unreachable_api_server_is_one_line_error(tmp_path: Path) -> None:
    with fake_apiserver(tmp_path) as gone:
        kubeconfig = gone.kubeconfig
    proc = subprocess.run(
        [sys.executable, "-m", "kube_lxcfs", "install", "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert "kube-lxcfs install:" in proc.stderr


def test_wait_reports_progress_until_ready(server: FakeApiServer) -> None:
    api = connect(str(server.kubeconfig))
    objects = render(resolve())
    assert _kl(server, "install").returncode == 0
    assert not any(r.ready for r in readiness(api, objects))

    ds_path = "/apis/apps/v1/namespaces/lxcfs/daemonsets/kube-lxcfs-agent"
    dep_path = "/apis/apps/v1/namespaces/lxcfs/deployments/kube-lxcfs-webhook"
    said: list[str] = []
    ticks = iter(range(1000))

    def advance(_: float) -> None:
        """Each poll interval, the 'controllers' make one step of progress."""
        step = next(ticks)
        if step == 0:
            ds = server.get(ds_path) or {}
            ds["status"] = {
                "desiredNumberScheduled": 2,
                "numberReady": 1,
                "updatedNumberScheduled": 1,
                "observedGeneration": 1,
            }
            server.put(ds_path, ds)
        elif step == 1:
            ds = server.get(ds_path) or {}
            ds["status"] = {
                "desiredNumberScheduled": 2,
                "numberReady": 2,
                "updatedNumberScheduled": 2,
                "observedGeneration": 1,
            }
            server.put(ds_path, ds)
            dep = server.get(dep_path) or {}
            dep["status"] = {"readyReplicas": 2, "observedGeneration": 1}
            server.put(dep_path, dep)
        elif step == 2:
            mwc = server.get(MWC_PATH) or {}
            for hook in mwc["webhooks"]:
                hook["clientConfig"]["caBundle"] = "Q0E="
            server.put(MWC_PATH, mwc)

    assert wait_ready(api, objects, said.append, timeout=60, sleep=advance)
    assert said[:3] == [
        "daemonset/kube-lxcfs-agent -n lxcfs: 0/0 nodes ready",
        "deployment/kube-lxcfs-webhook -n lxcfs: 0/2 replicas ready",
        "mutatingwebhookconfiguration/kube-lxcfs-webhook: caBundle not set yet",
    ]
    assert "daemonset/kube-lxcfs-agent -n lxcfs: 1/2 nodes ready" in said
    assert said[-1] == "mutatingwebhookconfiguration/kube-lxcfs-webhook: caBundle set"


def test_wait_times_out_with_what_is_missing(server: FakeApiServer) -> None:
    api = connect(str(server.kubeconfig))
    objects = render(resolve())
    assert _kl(server, "install").returncode == 0
    now = [0.0]
    said: list[str] = []

    def tick(seconds: float) -> None:
        now[0] += seconds

    assert not wait_ready(api, objects, said.append, timeout=10, clock=lambda: now[0], sleep=tick)
    assert said[-1] == (
        "timed out after 10s waiting for daemonset/kube-lxcfs-agent -n lxcfs, "
        "deployment/kube-lxcfs-webhook -n lxcfs, mutatingwebhookconfiguration/kube-lxcfs-webhook"
    )

"""``install`` / ``uninstall`` / ``doctor`` and certificate self-provisioning against a real
kube-apiserver (+ controller-manager) with RBAC and Pod Security admission.

No kubelet runs here, so pods are stored but never start: what is proven is that the API
server accepts every object (server-side validation and defaulting), that applying twice
changes nothing, that uninstall leaves nothing behind, that the webhook's RBAC is enough for
self-provisioning and no more, and that the webhook pod passes Pod Security "restricted".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kube_lxcfs.deploy.kubeapi import ApiError, KubeApi, connect, object_path
from kube_lxcfs.deploy.lifecycle import ca_bundle_of
from kube_lxcfs.deploy.render import render
from kube_lxcfs.deploy.selfprovision import SelfProvisioner
from kube_lxcfs.deploy.values import resolve

from .control_plane import free_port, wait_until

pytestmark = pytest.mark.cluster

NS = "kube-lxcfs-test-deploy"
MWC = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/kube-lxcfs-webhook"


def _kl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kube_lxcfs", *args, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def installed(kubeconfig: Path) -> Iterator[KubeApi]:
    """kube-lxcfs installed in NS; always uninstalled afterwards (the MWC is cluster-wide)."""
    proc = _kl(kubeconfig, "install", "-n", NS)
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield connect(str(kubeconfig))
    finally:
        done = _kl(kubeconfig, "uninstall", "-n", NS, "--wait", "--timeout", "120")
        assert done.returncode == 0, done.stdout + done.stderr


def test_server_dry_run_stores_nothing(kubeconfig: Path) -> None:
    api = connect(str(kubeconfig))
    proc = _kl(kubeconfig, "install", "-n", NS, "--dry-run=server")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "namespace/kube-lxcfs-test-deploy created (server dry run)" in proc.stdout
    assert f"not validated: namespace {NS} does not exist yet" in proc.stdout
    assert "clusterrole/kube-lxcfs-webhook created (server dry run)\n" in proc.stdout
    assert api.get(f"/api/v1/namespaces/{NS}") is None
    assert api.get(MWC) is None
    # With the namespace there, the server validates (and admits) every object.
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    try:
        full = _kl(kubeconfig, "install", "-n", NS, "--dry-run=server")
        assert full.returncode == 0, full.stdout + full.stderr
        assert "not validated" not in full.stdout
        assert api.get(f"/apis/apps/v1/namespaces/{NS}/daemonsets/kube-lxcfs-agent") is None
    finally:
        api.delete(f"/api/v1/namespaces/{NS}")
        wait_until(lambda: api.get(f"/api/v1/namespaces/{NS}") is None, 120, f"{NS} deleted")


def test_install_is_accepted_idempotent_and_uninstall_leaves_nothing(kubeconfig: Path) -> None:
    objects = render(resolve(namespace=NS))
    api = connect(str(kubeconfig))
    first = _kl(kubeconfig, "install", "-n", NS)
    try:
        assert first.returncode == 0, first.stdout + first.stderr
        assert first.stdout.count(" created\n") == len(objects)
        for obj in objects:
            assert api.get(object_path(obj)) is not None, obj["kind"]
        again = _kl(kubeconfig, "install", "-n", NS)
        assert again.returncode == 0, again.stderr
        assert again.stdout.count(" unchanged\n") == len(objects), again.stdout
        # The controller-manager turned the Deployment into (pending) pods: admitted in the
        # install namespace, which the webhook configuration excludes.
        pods = wait_until(
            lambda: api.list(
                f"/api/v1/namespaces/{NS}/pods",
                label_selector="app.kubernetes.io/component=webhook",
            ),
            60,
            "webhook pods",
        )
        assert all(
            "kube-lxcfs.io/status" not in (p["metadata"].get("annotations") or {}) for p in pods
        )
    finally:
        gone = _kl(kubeconfig, "uninstall", "-n", NS, "--wait", "--timeout", "120")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    lines = gone.stdout.splitlines()
    assert lines[0] == "mutatingwebhookconfiguration/kube-lxcfs-webhook deleted"
    for obj in objects:
        assert api.get(object_path(obj)) is None, obj["kind"]


def _token_kubeconfig(admin: Path, api: KubeApi, tmp_path: Path) -> Path:
    """A kubeconfig that authenticates as the webhook's ServiceAccount (TokenRequest)."""
    answer = api.request(
        "POST",
        f"/api/v1/namespaces/{NS}/serviceaccounts/kube-lxcfs-webhook/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    config = yaml.safe_load(admin.read_text())
    config["users"] = [{"name": "webhook", "user": {"token": answer["status"]["token"]}}]
    config["contexts"] = [
        {
            "name": "webhook",
            "context": {"cluster": config["clusters"][0]["name"], "user": "webhook"},
        }
    ]
    config["current-context"] = "webhook"
    path = tmp_path / "webhook-sa.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def test_webhook_rbac_is_enough_for_self_provisioning_and_no_more(
    installed: KubeApi, kubeconfig: Path, tmp_path: Path
) -> None:
    as_webhook = connect(str(_token_kubeconfig(kubeconfig, installed, tmp_path)))
    provisioner = SelfProvisioner(
        api=as_webhook,
        namespace=NS,
        secret_name="kube-lxcfs-webhook-tls",
        webhook_config="kube-lxcfs-webhook",
        service="kube-lxcfs-webhook",
        cert_dir=tmp_path / "tls",
    )
    bundle, sync = provisioner.run_once()
    assert sync == "updated"
    assert ca_bundle_of(installed.get(MWC) or {}) == bundle.ca_cert
    assert provisioner.run_once()[1] == "in sync"
    # Everything else is forbidden to the webhook's identity.
    installed.create(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "other", "namespace": NS}}
    )
    for method, path in (
        ("GET", f"/api/v1/namespaces/{NS}/secrets/other"),
        ("GET", f"/api/v1/namespaces/{NS}/secrets"),
        ("GET", "/api/v1/namespaces/kube-system/secrets/anything"),
        ("GET", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"),
        ("DELETE", MWC),
        ("GET", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/x"),
    ):
        with pytest.raises(ApiError) as exc:
            as_webhook.request(method, path)
        assert exc.value.status == 403, (method, path)


def test_webhook_pod_passes_pod_security_restricted(installed: KubeApi, make_namespace) -> None:
    restricted = make_namespace("restricted", {"pod-security.kubernetes.io/enforce": "restricted"})

    def pod_from(kind: str) -> dict:
        (obj,) = [o for o in render(resolve(namespace=NS)) if o["kind"] == kind]
        template = obj["spec"]["template"]
        spec = dict(template["spec"])
        spec["serviceAccountName"] = "default"
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{kind.lower()}-probe", "namespace": restricted},
            "spec": spec,
        }

    installed.create(pod_from("Deployment"), dry_run=True)
    with pytest.raises(ApiError) as exc:
        installed.create(pod_from("DaemonSet"), dry_run=True)
    assert exc.value.status == 403
    assert "violates PodSecurity" in exc.value.message


def test_doctor_against_the_real_api_server(
    installed: KubeApi, kubeconfig: Path, tmp_path: Path
) -> None:
    SelfProvisioner(
        api=installed,
        namespace=NS,
        secret_name="kube-lxcfs-webhook-tls",
        webhook_config="kube-lxcfs-webhook",
        service="kube-lxcfs-webhook",
        cert_dir=tmp_path / "tls",
    ).run_once()
    proc = _kl(kubeconfig, "doctor", "-n", NS)
    out = proc.stdout
    assert proc.returncode == 1, out  # no kubelet: nothing runs
    assert "ok   api server: reachable, v1." in out
    assert "ok   caBundle: 1 CA(s)" in out
    assert "ok   serving certificate: expires" in out
    assert "FAIL node agent: 0/0 nodes ready" in out
    assert "FAIL webhook: 0/2 replicas ready" in out
    assert "FAIL webhook reachable" in out


def test_self_provisioned_webhook_is_trusted_by_the_api_server(
    installed: KubeApi, kubeconfig: Path, tmp_path: Path, make_namespace
) -> None:
    """The rendered webhook, run as its ServiceAccount, provisions a certificate that the
    API server accepts: an opted-in pod is stored with the virtual files injected.

    No kube-proxy here, so the installed configuration is pointed at the process on
    loopback (url instead of service) and the certificate is issued for ``localhost``.
    """
    port, health = free_port(), free_port()
    config = installed.get(MWC) or {}
    for hook in config["webhooks"]:
        hook["clientConfig"] = {"url": f"https://localhost:{port}/mutate"}
    installed.replace(config)
    (deployment,) = [o for o in render(resolve(namespace=NS)) if o["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    skip = ("--tls-cert", "--tls-key", "--port", "--health-port", "--webhook-service")
    args = [a for a in container["args"] if not a.startswith(skip)] + [
        f"--tls-cert={tmp_path}/tls/tls.crt",
        f"--tls-key={tmp_path}/tls/tls.key",
        f"--port={port}",
        f"--health-port={health}",
        "--address=127.0.0.1",
        "--webhook-service=localhost",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE_LXCFS_")}
    env["KUBE_LXCFS_KUBECONFIG"] = str(_token_kubeconfig(kubeconfig, installed, tmp_path))
    env["KUBE_LXCFS_WEBHOOK_NAMESPACE"] = NS  # what the downward API gives the pod
    log = tmp_path / "webhook.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kube_lxcfs", *container["command"][1:], *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                    f"http://127.0.0.1:{health}/readyz", timeout=5
                ) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(ready, 60, "the webhook's /readyz")
        assert ca_bundle_of(installed.get(MWC) or {})
        namespace = make_namespace("selfprov", {"lxcfs-admission-webhook": "enabled"})

        def probe(name: str, dry_run: bool) -> dict:
            return installed.create(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
                },
                dry_run=dry_run,
            )

        # The configuration reaches the admission chain through an informer: probe first.
        wait_until(
            lambda: probe("probe", True)["spec"].get("volumes"), 60, "injection to take effect"
        )
        stored = probe("app", False)
        volumes = {v["name"]: v for v in stored["spec"]["volumes"]}
        assert volumes["lxcfs-proc-meminfo"]["hostPath"]["path"] == "/var/lib/lxcfs/proc/meminfo"
        mounts = {m["mountPath"] for m in stored["spec"]["containers"][0]["volumeMounts"]}
        assert "/proc/meminfo" in mounts
        assert stored["metadata"]["annotations"]["kube-lxcfs.io/status"] == "injected"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_cert_manager_variant_without_cert_manager_is_explained(kubeconfig: Path) -> None:
    proc = _kl(kubeconfig, "install", "-n", NS, "--set", "certManager.enabled=true")
    try:
        assert proc.returncode == 1
        assert "cert-manager is not installed: its Issuer API is missing" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    finally:
        done = _kl(kubeconfig, "uninstall", "-n", NS, "--set", "certManager.enabled=true", "--wait")
        assert done.returncode == 0, done.stdout + done.stderr


def test_helm_installs_and_uninstalls_the_chart(
    kubeconfig: Path, helm_binary: Path, tmp_path: Path
) -> None:
    """The generated chart, installed by the pinned helm into a real API server."""
    from kube_lxcfs.deploy.generate import CHART_DIR

    chart = Path(__file__).resolve().parents[2] / CHART_DIR
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "HELM_CACHE_HOME": str(tmp_path / "helm-cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "helm-config"),
        "HELM_DATA_HOME": str(tmp_path / "helm-data"),
    }

    def helm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(helm_binary), *args, "--namespace", NS],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )

    api = connect(str(kubeconfig))
    # As docs/kubernetes.md says: the namespace first (privileged), then the chart without it.
    api.create(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": NS,
                "labels": {"pod-security.kubernetes.io/enforce": "privileged"},
            },
        }
    )
    objects = render(resolve(namespace=NS, sets=["createNamespace=false"]))
    try:
        installed = helm("install", "kube-lxcfs", str(chart), "--set", "createNamespace=false")
        assert installed.returncode == 0, installed.stdout + installed.stderr
        for obj in objects:
            live = api.get(object_path(obj))
            assert live is not None, obj["kind"]
            assert live["metadata"]["labels"]["app.kubernetes.io/name"] == "kube-lxcfs"
        removed = helm("uninstall", "kube-lxcfs", "--wait")
        assert removed.returncode == 0, removed.stdout + removed.stderr
        for obj in objects:
            assert api.get(object_path(obj)) is None, obj["kind"]
    finally:
        _kl(kubeconfig, "uninstall", "-n", NS, "--set", "createNamespace=false")
        api.delete(f"/api/v1/namespaces/{NS}")
        wait_until(lambda: api.get(f"/api/v1/namespaces/{NS}") is None, 120, f"{NS} deleted")

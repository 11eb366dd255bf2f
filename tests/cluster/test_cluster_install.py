"""The default install, end to end with the real webhook process: the webhook started
with the shipped Deployment's arguments self-provisions its certificate as its own
ServiceAccount, the API server's view of it (caBundle, served certificate for
``<svc>.<ns>.svc``) and doctor agree, the shipped MutatingWebhookConfiguration selects the
right pods (redirected to a loopback webhook by URL), and uninstall leaves nothing labelled
as ours anywhere. (test_cluster_deploy.py covers install/uninstall/dry-run/RBAC itself.)

There is no kubelet: the DaemonSet and Deployment are stored and validated but never run,
so the webhook runs here as a local process with the Deployment's own arguments.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .control_plane import ControlPlane, wait_until
from .pki import CertificateAuthority
from .webhooks import (
    WebhookProcess,
    create_pod,
    pod,
    registered,
    spawn_webhook,
    wait_for_injection,
    webhook_serving_cert,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NAMESPACE = "lxcfs"  # the default install namespace (the seed's)
PART_OF = "app.kubernetes.io/part-of=kube-lxcfs"
TLS_SECRET = "kube-lxcfs-webhook-tls"


def kube_lxcfs(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "kube_lxcfs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def shipped_objects() -> list[dict]:
    """What ``kube-lxcfs manifests`` prints with defaults: the objects install applies."""
    proc = kube_lxcfs("manifests")
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


class Discovery:
    """Maps apiVersion + kind to REST paths with the server's own discovery documents
    (deliberately not the product's mapping: a wrong path would make "gone" look true)."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self._cache: dict[str, list[dict]] = {}

    def _resources(self, api_version: str) -> list[dict]:
        if api_version not in self._cache:
            prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            found = self.plane.get(prefix)
            assert found is not None, f"the server does not serve {api_version}"
            self._cache[api_version] = found["resources"]
        return self._cache[api_version]

    def collection(self, api_version: str, kind: str, namespace: str | None = None) -> str:
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        for res in self._resources(api_version):
            if res["kind"] == kind and "/" not in res["name"]:
                if res["namespaced"] and namespace:
                    return f"{prefix}/namespaces/{namespace}/{res['name']}"
                return f"{prefix}/{res['name']}"
        raise AssertionError(f"the server does not know {api_version} {kind}")

    def path(self, obj: dict) -> str:
        meta = obj["metadata"]
        base = self.collection(obj["apiVersion"], obj["kind"], meta.get("namespace"))
        return f"{base}/{meta['name']}"


@pytest.fixture(scope="module")
def discovery(control_plane: ControlPlane) -> Discovery:
    return Discovery(control_plane)


def describe(obj: dict) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']} {meta.get('namespace', '')}/{meta['name']}"


def leftovers(plane: ControlPlane, discovery: Discovery, objects: list[dict]) -> list[str]:
    """Shipped objects still on the server, plus anything else labelled part-of=kube-lxcfs
    at cluster scope (where a namespace deletion does not clean up)."""
    left = [describe(o) for o in objects if plane.get(discovery.path(o)) is not None]
    for api_version, kind in (
        ("v1", "Namespace"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
        ("scheduling.k8s.io/v1", "PriorityClass"),
    ):
        listing = plane.get(f"{discovery.collection(api_version, kind)}?labelSelector={PART_OF}")
        assert listing is not None
        left += [f"{kind} {item['metadata']['name']}" for item in listing["items"]]
    return sorted(set(left))


# -- the installed webhook, run as a local process with the Deployment's arguments ---------


def token_kubeconfig(plane: ControlPlane, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as a ServiceAccount (TokenRequest API)."""
    status, body = plane.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    assert status == 201, body
    assert plane.ca is not None
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "test",
                "cluster": {
                    "server": plane.server,
                    "certificate-authority": str(plane.ca.cert_path),
                },
            }
        ],
        "users": [{"name": account, "user": {"token": json.loads(body)["status"]["token"]}}],
        "contexts": [{"name": account, "context": {"cluster": "test", "user": account}}],
        "current-context": account,
    }
    path.write_text(json.dumps(config))
    return path


def deployment_args(objects: list[dict], **overrides: str) -> list[str]:
    """The shipped webhook Deployment's container arguments, with ``--key=value`` overrides."""
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-1] == "webhook", container["command"]
    args = [a for a in container["args"] if a.split("=", 1)[0] not in overrides]
    return args + [f"{k}={v}" for k, v in overrides.items()]


@pytest.fixture(scope="module")
def installed(
    control_plane: ControlPlane, discovery: Discovery, shipped_objects: list[dict]
) -> Iterator[str]:
    """The default install (namespace lxcfs); at the end uninstalled and checked gone, by
    the server's discovery rather than the product's own paths."""
    kubeconfig = str(control_plane.kubeconfig)
    assert leftovers(control_plane, discovery, shipped_objects) == []
    proc = kube_lxcfs("install", "--kubeconfig", kubeconfig)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    try:
        yield kubeconfig
    finally:
        proc = kube_lxcfs("uninstall", "--kubeconfig", kubeconfig, "--wait", "--timeout", "120")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert leftovers(control_plane, discovery, shipped_objects) == []


@pytest.fixture(scope="module")
def provisioned_webhook(
    control_plane: ControlPlane,
    installed: str,
    shipped_objects: list[dict],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebhookProcess]:
    """The webhook as the Deployment runs it (self-provisioning), as its ServiceAccount."""
    workdir = tmp_path_factory.mktemp("provisioned-webhook")
    account = next(
        o["spec"]["template"]["spec"]["serviceAccountName"]
        for o in shipped_objects
        if o["kind"] == "Deployment"
    )
    kubeconfig = token_kubeconfig(control_plane, NAMESPACE, account, workdir / "sa.kubeconfig")
    tls = workdir / "tls"
    tls.mkdir()
    args = deployment_args(
        shipped_objects, **{"--tls-cert": str(tls / "tls.crt"), "--tls-key": str(tls / "tls.key")}
    )
    env = {"KUBE_LXCFS_KUBECONFIG": str(kubeconfig), "KUBE_LXCFS_WEBHOOK_NAMESPACE": NAMESPACE}
    process = spawn_webhook(args, workdir, env)
    try:
        yield process
    finally:
        process.stop()


def test_webhook_self_provisions_its_certificate_as_its_service_account(
    control_plane: ControlPlane, provisioned_webhook: WebhookProcess
) -> None:
    secret = control_plane.get(f"/api/v1/namespaces/{NAMESPACE}/secrets/{TLS_SECRET}")
    assert secret is not None, provisioned_webhook.log_tail()
    assert secret["type"] == "kubernetes.io/tls"
    ca_pem = base64.b64decode(secret["data"]["ca.crt"])

    def bundles() -> list[bytes] | None:
        config = control_plane.get(
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/kube-lxcfs-webhook"
        )
        assert config is not None
        found = [
            base64.b64decode(w["clientConfig"].get("caBundle", "")) for w in config["webhooks"]
        ]
        return found if all(found) else None

    for bundle in wait_until(bundles, 30, "the caBundle to be filled in"):
        assert bundle == ca_pem

    # What the API server does when it calls the Service: verify the served certificate
    # against caBundle for the name <svc>.<ns>.svc.
    context = ssl.create_default_context(cadata=ca_pem.decode())
    port = int(provisioned_webhook.url.rsplit(":", 1)[1].split("/")[0])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="kube-lxcfs-webhook.lxcfs.svc") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")

    doctor = kube_lxcfs("doctor", "--kubeconfig", str(control_plane.kubeconfig))
    failing = [line for line in doctor.stdout.splitlines() if line.startswith("FAIL")]
    assert not any("caBundle" in line or "serving certificate" in line for line in failing), (
        doctor.stdout
    )


@pytest.fixture(scope="module")
def loopback_webhook(
    installed: str, shipped_objects: list[dict], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[WebhookProcess, bytes]]:
    """The Deployment's webhook arguments, but a certificate for 127.0.0.1 from a test CA
    instead of self-provisioning (the API server can reach loopback only by URL)."""
    workdir = tmp_path_factory.mktemp("loopback-webhook")
    ca = CertificateAuthority(workdir / "pki", "kube-lxcfs-test-webhook-ca")
    cert = webhook_serving_cert(ca)
    args = deployment_args(
        shipped_objects,
        **{"--tls-cert": str(cert.cert), "--tls-key": str(cert.key), "--self-provision-secret": ""},
    )
    process = spawn_webhook(args, workdir, {"KUBE_LXCFS_WEBHOOK_NAMESPACE": NAMESPACE})
    try:
        yield process, ca.cert_pem
    finally:
        process.stop()


def shipped_configuration_by_url(objects: list[dict], url: str, ca_pem: bytes) -> dict:
    """The shipped MutatingWebhookConfiguration, each webhook reached at ``url`` instead."""
    shipped = next(o for o in objects if o["kind"] == "MutatingWebhookConfiguration")
    webhooks = copy.deepcopy(shipped["webhooks"])
    for webhook in webhooks:
        webhook["clientConfig"] = {"url": url, "caBundle": base64.b64encode(ca_pem).decode()}
        webhook["failurePolicy"] = "Fail"  # a broken call must show, not be ignored
    return webhooks


def restricted_compliant(body: dict) -> dict:
    """Make a pod pass Pod Security ``restricted`` on its own, so that only our volumes
    could make it fail."""
    body["spec"]["securityContext"] = {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for container in body["spec"]["initContainers"] + body["spec"]["containers"]:
        container["securityContext"] = {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }
    return body


@pytest.mark.parametrize(
    ("namespace_labels", "pod_labels", "expect_injected"),
    [
        pytest.param({"lxcfs-admission-webhook": "enabled"}, {}, True, id="labelled"),
        pytest.param({}, {}, False, id="unlabelled"),
        pytest.param({}, {"kube-lxcfs.io/inject": "true"}, True, id="pod-opt-in"),
        pytest.param(
            {"lxcfs-admission-webhook": "enabled"},
            {"kube-lxcfs.io/inject": "false"},
            False,
            id="pod-opt-out-label",
        ),
        pytest.param(
            {
                "lxcfs-admission-webhook": "enabled",
                "pod-security.kubernetes.io/enforce": "baseline",
            },
            {},
            False,
            id="baseline-excluded",
        ),
        pytest.param(
            {
                "lxcfs-admission-webhook": "enabled",
                "pod-security.kubernetes.io/enforce": "restricted",
            },
            {},
            False,
            id="restricted-excluded",
        ),
    ],
)
def test_shipped_configuration_selects_pods(  # noqa: PLR0917
    control_plane: ControlPlane,
    shipped_objects: list[dict],
    loopback_webhook: tuple[WebhookProcess, bytes],
    make_namespace,
    namespace_labels: dict,
    pod_labels: dict,
    expect_injected: bool,
) -> None:
    process, ca_pem = loopback_webhook
    webhooks = shipped_configuration_by_url(shipped_objects, process.url, ca_pem)
    probe_ns = make_namespace("probe", {"lxcfs-admission-webhook": "enabled"})
    ns = make_namespace("shipped", namespace_labels)
    with registered(control_plane, f"kube-lxcfs-test-shipped-{uuid.uuid4().hex[:6]}", *webhooks):
        wait_for_injection(control_plane, probe_ns)
        body = restricted_compliant(pod("subject"))
        body["metadata"]["labels"] = pod_labels
        status, answer = create_pod(control_plane, ns, body)
    assert status == 201, answer
    stored = control_plane.get(f"/api/v1/namespaces/{ns}/pods/subject")
    assert stored is not None
    volumes = [v for v in stored["spec"].get("volumes", []) if "hostPath" in v]
    if expect_injected:
        assert {v["hostPath"]["path"] for v in volumes} >= {"/var/lib/lxcfs/proc/meminfo"}
        assert stored["metadata"]["annotations"]["kube-lxcfs.io/status"] == "injected"
    else:
        assert volumes == []


def test_install_namespace_is_never_injected(
    control_plane: ControlPlane,
    shipped_objects: list[dict],
    loopback_webhook: tuple[WebhookProcess, bytes],
    make_namespace,
) -> None:
    process, ca_pem = loopback_webhook
    webhooks = shipped_configuration_by_url(shipped_objects, process.url, ca_pem)
    # Even labelled for injection (and privileged, as installed), the install namespace is
    # left out: the node agent must read the real /proc.
    status, body = control_plane.request(
        "PATCH",
        f"/api/v1/namespaces/{NAMESPACE}",
        {"metadata": {"labels": {"lxcfs-admission-webhook": "enabled"}}},
    )
    assert status == 200, body
    probe_ns = make_namespace("probe", {"lxcfs-admission-webhook": "enabled"})
    with registered(control_plane, "kube-lxcfs-test-shipped-own-ns", *webhooks):
        wait_for_injection(control_plane, probe_ns)
        status, answer = create_pod(control_plane, NAMESPACE, pod("own"), dry_run=True)
    assert status == 201, answer
    assert not [v for v in answer["spec"].get("volumes", []) if "hostPath" in v]

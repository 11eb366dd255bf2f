"""Webhook plumbing for the cluster tier: run ``kube-lxcfs webhook`` on loopback, register
MutatingWebhookConfigurations that call it by URL, and a second (test-double) webhook that
adds a container, to exercise reinvocation.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .control_plane import ControlPlane, die_with_parent, free_port, wait_until
from .pki import CertificateAuthority, Issued

SEED_LABEL = "lxcfs-admission-webhook"  # namespaces opt in with this label = "enabled"
# Injected hostPath volumes break Pod Security baseline/restricted: such namespaces are
# excluded by the selector, as the shipped configuration does.
PSA_EXCLUSION = {
    "key": "pod-security.kubernetes.io/enforce",
    "operator": "NotIn",
    "values": ["baseline", "restricted"],
}


@dataclass
class WebhookProcess:
    """A ``kube-lxcfs webhook`` we started; ``url`` is its /mutate endpoint."""

    popen: subprocess.Popen
    url: str
    health: str
    log: Path

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])


def webhook_serving_cert(ca: CertificateAuthority) -> Issued:
    """The webhook is called at https://127.0.0.1:PORT, so its certificate names that IP."""
    return ca.issue("webhook", "kube-lxcfs-webhook", ips=("127.0.0.1",), server=True)


def start_webhook(cert: Issued, workdir: Path, *extra: str) -> WebhookProcess:
    """Start ``python -m kube_lxcfs webhook`` with ``cert`` on free loopback ports."""
    args = ["--tls-cert", str(cert.cert), "--tls-key", str(cert.key), "--log-level", "debug"]
    return spawn_webhook([*args, *extra], workdir)


def spawn_webhook(
    args: list[str], workdir: Path, env: dict[str, str] | None = None
) -> WebhookProcess:
    """Run ``python -m kube_lxcfs webhook ARGS`` on 127.0.0.1 with free ports (appended to
    ARGS, so they win over ports in ARGS) and wait for its /readyz."""
    port, health_port = free_port(), free_port()
    log = workdir / f"webhook-{port}.log"
    ports = ["--address", "127.0.0.1", "--port", str(port), "--health-port", str(health_port)]
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            die_with_parent([sys.executable, "-m", "kube_lxcfs", "webhook", *args, *ports]),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    process = WebhookProcess(
        popen, f"https://127.0.0.1:{port}/mutate", f"http://127.0.0.1:{health_port}", log
    )

    def ready() -> bool:
        if popen.poll() is not None:
            raise RuntimeError(f"webhook exited with {popen.returncode}:\n{process.log_tail()}")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(process.health + "/readyz", timeout=5) as resp:
            return resp.status == 200

    try:
        wait_until(ready, 60, "kube-lxcfs webhook /readyz")
    except BaseException:
        process.stop()
        raise
    return process


def webhook_entry(
    name: str,
    url: str,
    ca_pem: bytes,
    *,
    case_label: str,
    failure_policy: str = "Fail",
    review_versions: tuple[str, ...] = ("v1", "v1beta1"),
    reinvocation: str = "IfNeeded",
    seed_selector: bool = True,
    exclude_pod_security: bool = True,
) -> dict:
    """One webhook of a configuration, shaped like the shipped one but reached by URL.

    ``case_label`` is an extra namespace label each test puts on its namespaces, so that a
    configuration still cached by the API server after its test never touches another test.
    """
    match_labels = {"kube-lxcfs-test/case": case_label}
    if seed_selector:
        match_labels[SEED_LABEL] = "enabled"
    return {
        "name": name,
        "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_pem).decode()},
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ],
        "namespaceSelector": {
            "matchLabels": match_labels,
            "matchExpressions": [PSA_EXCLUSION] if exclude_pod_security else [],
        },
        "sideEffects": "None",
        "admissionReviewVersions": list(review_versions),
        "failurePolicy": failure_policy,
        "reinvocationPolicy": reinvocation,
        "timeoutSeconds": 10,
    }


@contextlib.contextmanager
def registered(plane: ControlPlane, name: str, *webhooks: dict) -> Iterator[str]:
    """Create a MutatingWebhookConfiguration for the duration of a ``with`` block."""
    path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
    body = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": list(webhooks),
    }
    status, answer = plane.request("POST", path, body)
    if status != 201:
        raise AssertionError(f"creating {name}: HTTP {status}: {answer[:500]!r}")
    try:
        yield name
    finally:
        plane.request("DELETE", f"{path}/{name}")


def pod(name: str, annotations: dict | None = None, **spec: object) -> dict:
    """A small Pod with an init container; the image is never pulled (there is no kubelet)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "initContainers": [{"name": "init", "image": "registry.invalid/init:1"}],
            "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
            **spec,
        },
    }


def create_pod(plane: ControlPlane, namespace: str, body: dict, dry_run: bool = False):
    """POST a pod; returns (status, decoded answer)."""
    query = "?dryRun=All" if dry_run else ""
    status, answer = plane.request("POST", f"/api/v1/namespaces/{namespace}/pods{query}", body)
    return status, json.loads(answer)


def wait_for_injection(plane: ControlPlane, namespace: str) -> None:
    """Block until the API server applies a just-registered configuration.

    Configurations reach the admission chain through an informer, a moment after they are
    stored: probe with server-side dry-run pods until one comes back mutated.
    """

    def injected() -> bool:
        status, answer = create_pod(plane, namespace, pod(f"probe-{uuid.uuid4().hex[:6]}"), True)
        return status == 201 and bool(answer["spec"].get("volumes"))

    wait_until(injected, 30, f"the webhook configuration to take effect in {namespace}")


class SidecarWebhook:
    """Another team's mutating webhook (a test double): adds a ``sidecar`` container.

    Registered after ours, it changes the pod after we ran, so the API server must call us
    again (reinvocationPolicy IfNeeded) for the new container to get our mounts.
    """

    def __init__(self, cert: Issued) -> None:
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                request = review["request"]
                containers = request["object"]["spec"]["containers"]
                response = {"uid": request["uid"], "allowed": True}
                if not any(c["name"] == "sidecar" for c in containers):
                    outer.calls += 1
                    patch = [
                        {
                            "op": "add",
                            "path": "/spec/containers/-",
                            "value": {"name": "sidecar", "image": "registry.invalid/sidecar:1"},
                        }
                    ]
                    response["patchType"] = "JSONPatch"
                    response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
                data = json.dumps(
                    {
                        "apiVersion": review["apiVersion"],
                        "kind": "AdmissionReview",
                        "response": response,
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert.cert), str(cert.key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/sidecar"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> SidecarWebhook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def metric_value(metrics_text: str, metric: str, /, **labels: str) -> float:
    """Sum of the samples of ``metric`` whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith((metric + "{", metric + " ")):
            continue
        series, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total

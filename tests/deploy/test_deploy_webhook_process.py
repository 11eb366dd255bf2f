"""The real ``kube-lxcfs webhook`` process provisioning its own certificate.

Rendered Deployment args (the product's manifests) are run as they are, with the
in-cluster API replaced by the recording API server (``KUBE_LXCFS_KUBECONFIG``):
the process must create the Secret, fill the caBundle, and serve HTTPS that
verifies against that caBundle under the Service's DNS name.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube_lxcfs.cli import build_parser
from kube_lxcfs.deploy.lifecycle import ca_bundle_of
from kube_lxcfs.deploy.render import render
from kube_lxcfs.deploy.values import resolve
from support.fake_apiserver import FakeApiServer, fake_apiserver

MWC = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/kube-lxcfs-webhook"
SECRET = "/api/v1/namespaces/lxcfs/secrets/kube-lxcfs-webhook-tls"


def _container(kind: str, sets: list[str] | None = None) -> dict:
    (obj,) = [o for o in render(resolve(sets=sets or [])) if o["kind"] == kind]
    return obj["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("sets", [[], ["certManager.enabled=true"]])
def test_rendered_webhook_args_are_accepted_by_the_real_parser(sets: list[str]) -> None:
    container = _container("Deployment", sets)
    assert container["command"][0] == "kube-lxcfs"
    args = build_parser().parse_args(container["command"][1:] + container["args"])
    assert args.command == "webhook"
    assert args.port == 8443 and args.health_port == 8080
    assert args.files[-1] == "sys/devices/system/cpu/"
    assert bool(args.self_provision_secret) == (not sets)


def test_rendered_node_agent_args_are_accepted_by_the_real_parser() -> None:
    container = _container("DaemonSet", ["nodeAgent.extraArgs={--disable-loadavg}"])
    args = build_parser().parse_args(container["command"][1:] + container["args"])
    assert args.command == "fs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                url, timeout=2
            ) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)  # polling a condition with a deadline
    raise AssertionError(f"{url} not ready in {timeout}s")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeApiServer]:
    with fake_apiserver(tmp_path) as running:
        yield running


def test_webhook_provisions_its_certificate_and_serves_it(
    server: FakeApiServer, tmp_path: Path
) -> None:
    (mwc,) = [o for o in render(resolve()) if o["kind"] == "MutatingWebhookConfiguration"]
    server.put(MWC, mwc)
    container = _container("Deployment")
    port, health = _free_port(), _free_port()
    cert_dir = tmp_path / "tls"
    args = [
        a
        for a in container["args"]
        if not a.startswith(("--tls-cert", "--tls-key", "--port", "--health-port"))
    ]
    args += [
        f"--tls-cert={cert_dir}/tls.crt",
        f"--tls-key={cert_dir}/tls.key",
        f"--port={port}",
        f"--health-port={health}",
        "--address=127.0.0.1",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE_LXCFS_")}
    env["KUBE_LXCFS_KUBECONFIG"] = str(server.kubeconfig)
    env["KUBE_LXCFS_WEBHOOK_NAMESPACE"] = "lxcfs"  # the downward API in the Deployment
    proc = subprocess.Popen(
        [sys.executable, "-m", "kube_lxcfs", *container["command"][1:], *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_ready(f"http://127.0.0.1:{health}/readyz", proc)
        assert server.get(SECRET) is not None
        ca_bundle = ca_bundle_of(server.get(MWC))
        assert ca_bundle
        context = ssl.create_default_context(cadata=ca_bundle.decode())
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="kube-lxcfs-webhook.lxcfs.svc") as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0


def test_self_provisioning_needs_the_namespace(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE_LXCFS_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kube_lxcfs",
            "webhook",
            "--self-provision-secret=x",
            f"--tls-cert={tmp_path}/tls.crt",
            f"--tls-key={tmp_path}/tls.key",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "--namespace" in proc.stderr


def test_help_documents_the_self_provisioning_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["webhook", "--help"])
    out = " ".join(capsys.readouterr().out.split()).replace(" ", "")
    for flag, env in (
        ("--self-provision-secret", "KUBE_LXCFS_WEBHOOK_SELF_PROVISION_SECRET"),
        ("--webhook-config", "KUBE_LXCFS_WEBHOOK_WEBHOOK_CONFIG"),
        ("--webhook-service", "KUBE_LXCFS_WEBHOOK_WEBHOOK_SERVICE"),
    ):
        assert flag in out and env in out

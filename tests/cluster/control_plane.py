"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

No kubelet, no kube-proxy, no DNS: pods are stored (admission, validation, controllers)
but never run, which is exactly the part an admission webhook is about. Every process is
started by us, logs into the work directory and is stopped by its pid (SIGTERM, then
SIGKILL after a grace period). Ports are chosen free on 127.0.0.1 at start.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .pki import CertificateAuthority, Issued, service_account_key

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"  # the first address of SERVICE_CIDR: the `kubernetes` Service
ADMISSION_PLUGINS = (
    "NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,"
    "PodSecurity,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,"
    "ValidatingAdmissionPolicy,ResourceQuota"
)


class ControlPlaneError(RuntimeError):
    """A component did not start or become ready; carries the end of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _child_env() -> dict[str, str]:
    # Webhook calls and etcd traffic are loopback: a proxy from the environment would
    # intercept the API server's calls to https://127.0.0.1:PORT/mutate.
    return {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    }


def die_with_parent(command: list[str]) -> list[str]:
    """Prefix ``command`` with util-linux's ``setpriv --pdeathsig TERM``: the kernel then
    stops the child when the test process dies, even by SIGKILL, so that no etcd or API
    server outlives a killed pytest (setpriv execs the command: same pid)."""
    if shutil.which("setpriv"):
        return ["setpriv", "--pdeathsig", "TERM", "--", *command]
    return command


def wait_until(
    condition: Callable[[], object], timeout: float, what: str, interval: float = 0.1
) -> object:
    """Poll ``condition`` until it returns a truthy value or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = condition()
        except Exception as exc:  # the condition is still settling; remember why
            last_error = exc
            result = None
        if result:
            return result
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


@dataclass
class Process:
    """A started component: its pid, log file and how to describe it."""

    name: str
    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM by pid, SIGKILL if still there after ``grace`` seconds; always reaped."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class ControlPlane:
    """Starts and stops the components; ``kubeconfig`` is the admin's (system:masters)."""

    binaries: dict[str, Path]
    workdir: Path
    controller_manager: bool = True
    processes: list[Process] = field(default_factory=list)
    server: str = ""
    kubeconfig: Path = Path()
    ca: CertificateAuthority | None = None
    admin: Issued | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        pki_dir = self.workdir / "pki"
        self.ca = ca = CertificateAuthority(pki_dir)
        serving = ca.issue(
            "apiserver",
            "kube-apiserver",
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ips=("127.0.0.1", SERVICE_IP),
            server=True,
        )
        self.admin = ca.issue(
            "admin", "kube-lxcfs-test-admin", organizations=("system:masters",), client=True
        )
        controller = ca.issue("controller-manager", "system:kube-controller-manager", client=True)
        sa = service_account_key(pki_dir)

        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        self._start_etcd(etcd_port, peer_port)

        self.server = f"https://127.0.0.1:{api_port}"
        self.kubeconfig = self._write_kubeconfig("admin", self.admin)
        apiserver = self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.cert_path}",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                f"--enable-admission-plugins={ADMISSION_PLUGINS}",
                "--allow-privileged=true",
                "--profiling=false",
                "--endpoint-reconciler-type=none",
                "--v=1",
            ],
        )
        wait_until(lambda: self._readyz(apiserver), 180, "kube-apiserver /readyz", interval=0.2)

        if self.controller_manager:
            kcm_config = self._write_kubeconfig("controller-manager", controller)
            kcm = self._spawn(
                "kube-controller-manager",
                [
                    f"--kubeconfig={kcm_config}",
                    f"--authentication-kubeconfig={kcm_config}",
                    f"--authorization-kubeconfig={kcm_config}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={free_port()}",
                    f"--cert-dir={self.workdir / 'kcm-certs'}",
                    f"--service-account-private-key-file={sa.key}",
                    f"--root-ca-file={ca.cert_path}",
                    "--use-service-account-credentials=true",
                    "--leader-elect=false",
                    "--profiling=false",
                    "--v=1",
                ],
            )
            # Ready for us = its service-account controller has populated `default`.
            wait_until(
                lambda: (
                    self._alive_or_raise(kcm)
                    and self.get("/api/v1/namespaces/default/serviceaccounts/default")
                ),
                120,
                "kube-controller-manager to create the default ServiceAccount",
                interval=0.2,
            )

    def stop(self) -> None:
        """Stop every component we started, newest first, by pid."""
        while self.processes:
            self.processes.pop().stop()

    # -- HTTP helpers (also used by tests that want the raw API) -----------------------
    def ssl_context(self) -> ssl.SSLContext:
        assert self.ca is not None and self.admin is not None
        context = ssl.create_default_context(cafile=str(self.ca.cert_path))
        context.load_cert_chain(str(self.admin.cert), str(self.admin.key))
        return context

    def request(
        self, method: str, path: str, body: object | None = None, timeout: float = 30
    ) -> tuple[int, bytes]:
        """One admin request to the API server; returns (status, body) also for 4xx/5xx.

        PATCH bodies are JSON merge patches."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        if data is not None:
            patch = "application/merge-patch+json"
            req.add_header("Content-Type", patch if method == "PATCH" else "application/json")
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPSHandler(context=self.ssl_context()),
        )
        try:
            with opener.open(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def get(self, path: str) -> dict | None:
        """GET returning the decoded object, or None for 404."""
        status, body = self.request("GET", path)
        if status == 404:
            return None
        if status != 200:
            raise ControlPlaneError(f"GET {path}: HTTP {status}: {body[:500]!r}")
        return json.loads(body)

    def metrics(self) -> str:
        status, body = self.request("GET", "/metrics")
        if status != 200:
            raise ControlPlaneError(f"GET /metrics: HTTP {status}")
        return body.decode()

    # -- internals ---------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> Process:
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                die_with_parent([str(self.binaries[name]), *args]),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_child_env(),
                start_new_session=True,
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def _alive_or_raise(self, process: Process) -> bool:
        if not process.alive():
            raise ControlPlaneError(
                f"{process.name} exited with {process.popen.returncode}:\n{process.log_tail()}"
            )
        return True

    def _start_etcd(self, port: int, peer_port: int) -> None:
        peer = f"http://127.0.0.1:{peer_port}"
        etcd = self._spawn(
            "etcd",
            [
                "--name=kube-lxcfs-test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{port}",
                f"--advertise-client-urls=http://127.0.0.1:{port}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=kube-lxcfs-test={peer}",
                "--unsafe-no-fsync",  # throwaway data: don't pay for durability
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            self._alive_or_raise(etcd)
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"http://127.0.0.1:{port}/health", timeout=5
            ) as resp:
                return json.loads(resp.read()).get("health") == "true"

        wait_until(healthy, 60, "etcd /health")

    def _readyz(self, apiserver: Process) -> bool:
        self._alive_or_raise(apiserver)
        status, _ = self.request("GET", "/readyz", timeout=5)
        return status == 200

    def _write_kubeconfig(self, user: str, identity: Issued) -> Path:
        assert self.ca is not None
        return write_kubeconfig(
            self.workdir / f"{user}.kubeconfig",
            server=self.server,
            ca_cert=self.ca.cert_path,
            identity=identity,
            user=user,
            cluster="kube-lxcfs-test",
        )


def write_kubeconfig(
    path: Path, *, server: str, ca_cert: Path, identity: Issued, user: str, cluster: str
) -> Path:
    """A kubeconfig for one client-certificate identity (JSON is YAML)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster, "cluster": {"server": server, "certificate-authority": str(ca_cert)}}
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(identity.cert),
                    "client-key": str(identity.key),
                },
            }
        ],
        "contexts": [{"name": user, "context": {"cluster": cluster, "user": user}}],
        "current-context": user,
    }
    path.write_text(json.dumps(config, indent=2))
    return path

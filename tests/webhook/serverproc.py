"""Run ``kube-lxcfs webhook`` as a real process on loopback and talk to it over verified TLS."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webhook.pki import SERVICE_NAME, Pki, new_ca

STARTUP_DEADLINE = 30.0


@dataclass
class WebhookProcess:
    """A started webhook: its pid, ports, JSON log lines, and its TLS material."""

    proc: subprocess.Popen[str]
    port: int
    health_port: int
    ca: Pki
    cert_file: Path
    key_file: Path
    logs: list[dict[str, Any]] = field(default_factory=list)
    _lines: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def client_context(self, ca_pem: bytes | None = None, **kwargs: Any) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=(ca_pem or self.ca.cert_pem).decode())
        for key, value in kwargs.items():
            setattr(context, key, value)
        return context

    def connect(self, server_name: str = SERVICE_NAME, **kwargs: Any) -> ServiceConnection:
        context = self.client_context(**kwargs)
        return ServiceConnection(self.port, context, server_name)

    def health(self, path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.health_port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def drain_logs(self) -> list[dict[str, Any]]:
        """Collect the log lines printed so far (each must be one JSON object)."""
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return self.logs
            if line is None:
                return self.logs
            self.logs.append(json.loads(line))

    def wait_log(self, msg: str, deadline: float = 10.0) -> dict[str, Any]:
        end = time.monotonic() + deadline
        seen = 0
        while time.monotonic() < end:
            try:
                line = self._lines.get(timeout=0.05)
            except queue.Empty:
                continue
            if line is None:
                break
            entry = json.loads(line)
            self.logs.append(entry)
            seen += 1
            if entry.get("msg") == msg:
                return entry
        raise AssertionError(f"no {msg!r} log line; got {self.logs[-5:]}")

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)


class ServiceConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 that verifies the certificate against a Service name."""

    def __init__(self, port: int, context: ssl.SSLContext, server_name: str) -> None:
        super().__init__("127.0.0.1", port, context=context, timeout=30)
        self.server_name = server_name
        self.connects = 0

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.server_name)  # type: ignore[attr-defined]
        self.connects += 1

    def post(self, body: bytes | str, path: str = "/mutate", **headers: str) -> tuple[int, bytes]:
        if isinstance(body, str):
            body = body.encode()
        all_headers = {"Content-Type": "application/json", **headers}
        self.request("POST", path, body=body, headers=all_headers)
        response = self.getresponse()
        return response.status, response.read()

    def admit(self, review: dict[str, Any]) -> dict[str, Any]:
        status, body = self.post(json.dumps(review))
        assert status == 200, body
        return json.loads(body)


def start_webhook(
    tmp: Path,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    prefix: list[str] | None = None,
) -> WebhookProcess:
    """Start the webhook configured through env vars (as a pod spec would) on free ports;
    ``prefix``: a command that runs it (e.g. unshare)."""
    ca = new_ca()
    cert_file, key_file = tmp / "tls.crt", tmp / "tls.key"
    ca.issue(cert_file, key_file, [SERVICE_NAME])
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE_LXCFS_WEBHOOK_")}
    full_env.update(
        {
            "KUBE_LXCFS_WEBHOOK_TLS_CERT": str(cert_file),
            "KUBE_LXCFS_WEBHOOK_TLS_KEY": str(key_file),
            "KUBE_LXCFS_WEBHOOK_ADDRESS": "127.0.0.1",
            "KUBE_LXCFS_WEBHOOK_PORT": "0",
            "KUBE_LXCFS_WEBHOOK_HEALTH_PORT": "0",
            "KUBE_LXCFS_WEBHOOK_LOG_LEVEL": "info",
        }
    )
    full_env.update(env or {})
    proc = subprocess.Popen(
        [*(prefix or []), sys.executable, "-m", "kube_lxcfs", "webhook", *(args or [])],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    started = WebhookProcess(proc, 0, 0, ca, cert_file, key_file, _lines=lines)
    try:
        serving = started.wait_log("serving", STARTUP_DEADLINE)
    except BaseException:
        started.terminate()
        raise
    started.port = serving["port"]
    started.health_port = serving["health_port"]
    return started


@contextlib.contextmanager
def running_webhook(tmp: Path, env: dict[str, str] | None = None) -> Iterator[WebhookProcess]:
    server = start_webhook(tmp, env)
    try:
        yield server
    finally:
        server.terminate()


def raw_tls(port: int, context: ssl.SSLContext, server_name: str = SERVICE_NAME) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(sock, server_hostname=server_name)

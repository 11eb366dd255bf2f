"""SIGTERM: readiness fails, the listener closes, in-flight requests finish, the process exits 0."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest

from webhook.podcheck import load
from webhook.serverproc import WebhookProcess, raw_tls, running_webhook


def poll(condition, deadline: float = 10.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)


def in_flight(server: WebhookProcess) -> float:
    _, text = server.health("/metrics")
    for line in text.splitlines():
        if line.startswith("kube_lxcfs_webhook_requests_in_flight"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def readyz(server: WebhookProcess) -> int:
    try:
        return server.health("/readyz")[0]
    except OSError:
        return -1


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a response"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")).split(
            b":"
        )[1]
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def test_in_flight_request_finishes_after_sigterm(tmp_path: Path) -> None:
    with running_webhook(tmp_path) as server:
        body = json.dumps(load("bare-pod.json")).encode()
        sock = raw_tls(server.port, server.client_context())
        head = (
            "POST /mutate HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        sock.sendall(head + body[:100])
        poll(lambda: in_flight(server) == 1, what="the request to be in flight")
        server.proc.send_signal(signal.SIGTERM)
        poll(lambda: readyz(server) == 503, what="readiness to fail")
        # The listener is closed while the request is still being served.
        poll(lambda: _refused(server.port), what="the listener to close")
        assert server.proc.poll() is None
        sock.sendall(body[100:])
        response_head, response_body = read_response(sock)
        assert response_head.startswith(b"HTTP/1.1 200")
        assert b"connection: close" in response_head.lower()
        assert json.loads(response_body)["response"]["patchType"] == "JSONPatch"
        assert server.proc.wait(timeout=20) == 0
        sock.close()
        server.wait_log("stopped")


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_idle_keep_alive_connections_do_not_delay_exit(tmp_path: Path) -> None:
    with running_webhook(tmp_path, {"KUBE_LXCFS_WEBHOOK_SHUTDOWN_GRACE": "20"}) as server:
        conns = [server.connect() for _ in range(3)]
        for conn in conns:
            conn.admit(load("bare-pod.json"))  # now idle, kept alive
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=20) == 0
        assert time.monotonic() - started < 10  # not the 20 s grace nor the idle timeout


def test_shutdown_delay_keeps_serving_while_unready(tmp_path: Path) -> None:
    with running_webhook(tmp_path, {"KUBE_LXCFS_WEBHOOK_SHUTDOWN_DELAY": "3"}) as server:
        server.proc.send_signal(signal.SIGTERM)
        poll(lambda: readyz(server) == 503, what="readiness to fail")
        conn = server.connect()
        answer = conn.admit(load("bare-pod.json"))  # still served during the delay
        assert answer["response"]["allowed"] is True
        assert server.proc.wait(timeout=20) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_exit_zero(tmp_path: Path, sig: signal.Signals) -> None:
    with running_webhook(tmp_path) as server:
        server.proc.send_signal(sig)
        assert server.proc.wait(timeout=20) == 0
        server.wait_log("stopped")

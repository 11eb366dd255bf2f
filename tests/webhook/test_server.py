"""The real HTTPS server on loopback: verified TLS by Service name, keep-alive, errors, health,
readiness, metrics, certificate reload without dropping the listener."""

from __future__ import annotations

import json
import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube_lxcfs.webhook.admission import decode_patch
from support.waiting import wait_for
from webhook.pki import SERVICE_NAME, new_ca
from webhook.podcheck import apply, as_version, assert_consistent, load
from webhook.serverproc import WebhookProcess, raw_tls, running_webhook, start_webhook
from webhook.test_command import SERVICE_LINKS

METRIC_NAMES = (
    "kube_lxcfs_webhook_requests_total",
    "kube_lxcfs_webhook_request_duration_seconds",
    "kube_lxcfs_webhook_requests_in_flight",
    "kube_lxcfs_webhook_admissions_total",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookProcess]:
    env = {
        "KUBE_LXCFS_WEBHOOK_MAX_BODY_BYTES": str(256 * 1024),
        "KUBE_LXCFS_WEBHOOK_NAMESPACE": "kube-lxcfs",
    }
    with running_webhook(tmp_path_factory.mktemp("webhook"), env) as proc:
        yield proc


def metric_value(text: str, line_prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("api_version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
def test_admission_over_tls_verifying_the_service_name(
    server: WebhookProcess, api_version: str
) -> None:
    conn = server.connect()
    doc = as_version(load("deployment-pod.json"), api_version)
    answer = conn.admit(doc)
    assert answer["apiVersion"] == api_version
    assert answer["response"]["uid"] == doc["request"]["uid"]
    patched = apply(doc["request"]["object"], decode_patch(answer))
    assert_consistent(patched)
    assert patched["metadata"]["annotations"]["kube-lxcfs.io/status"] == "injected"
    conn.close()


def test_keep_alive_serves_many_requests_on_one_connection(server: WebhookProcess) -> None:
    conn = server.connect()
    for _ in range(20):
        conn.admit(load("bare-pod.json"))
    assert conn.connects == 1
    conn.close()


def test_api_server_query_string_is_accepted(server: WebhookProcess) -> None:
    conn = server.connect()
    status, _ = conn.post(json.dumps(load("bare-pod.json")), path="/mutate?timeout=10s")
    assert status == 200


def test_own_namespace_from_env_is_skipped(server: WebhookProcess) -> None:
    doc = load("bare-pod.json")
    doc["request"]["namespace"] = "kube-lxcfs"
    answer = server.connect().admit(doc)
    assert "patch" not in answer["response"]


def test_wrong_service_name_fails_verification(server: WebhookProcess) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        server.connect(server_name="other.kube-lxcfs.svc").admit(load("bare-pod.json"))


def test_untrusted_ca_fails_verification(server: WebhookProcess) -> None:
    conn = server.connect(ca_pem=new_ca("stranger").cert_pem)  # type: ignore[call-arg]
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.admit(load("bare-pod.json"))


def test_tls_1_2_is_accepted_by_default(server: WebhookProcess) -> None:
    context = server.client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with raw_tls(server.port, context) as sock:
        assert sock.version() == "TLSv1.2"
        assert sock.selected_alpn_protocol() in {None, "http/1.1"}


def test_tls_min_version_1_3_refuses_1_2(tmp_path: Path) -> None:
    with running_webhook(tmp_path, {"KUBE_LXCFS_WEBHOOK_TLS_MIN_VERSION": "1.3"}) as server:
        context = server.client_context()
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            raw_tls(server.port, context).close()
        with raw_tls(server.port, server.client_context()) as sock:
            assert sock.version() == "TLSv1.3"
        assert server.health("/healthz")[0] == 200


@pytest.mark.parametrize(
    ("body", "path", "headers", "code"),
    [
        (b"{not json", "/mutate", {}, 400),
        (b"\xff\xfe\x00", "/mutate", {}, 400),
        (b'{"kind": "AdmissionReview"}', "/mutate", {}, 400),
        (b"[1, 2, 3]", "/mutate", {}, 400),
        (b"{}", "/validate", {}, 404),
        (b"{}", "/mutate", {"Content-Type": "text/plain"}, 415),
        (b"x" * (300 * 1024), "/mutate", {}, 413),
    ],
)
def test_bad_requests_get_4xx_with_a_json_message(
    server: WebhookProcess, body: bytes, path: str, headers: dict[str, str], code: int
) -> None:
    conn = server.connect()
    status, answer = conn.post(body, path=path, **headers)
    assert status == code
    assert json.loads(answer)["message"]
    assert server.health("/healthz")[0] == 200


def test_deeply_nested_json_is_a_bad_request(server: WebhookProcess) -> None:
    status, _ = server.connect().post(b"[" * 100_000 + b"]" * 100_000)
    assert status in {400, 413}
    assert server.health("/healthz")[0] == 200


def test_health_ready_and_metrics(server: WebhookProcess) -> None:
    assert server.health("/healthz") == (200, "ok\n")
    assert server.health("/readyz") == (200, "ok\n")
    assert server.health("/nope")[0] == 404
    _, before = server.health("/metrics")
    conn = server.connect()
    conn.admit(load("bare-pod.json"))
    conn.admit(load("mirror-pod.json"))
    conn.post(b"garbage")
    _, text = server.health("/metrics")
    for name in METRIC_NAMES:
        assert f"# TYPE {name} " in text
    ok = 'kube_lxcfs_webhook_requests_total{code="200"}'
    bad = 'kube_lxcfs_webhook_requests_total{code="400"}'
    count = "kube_lxcfs_webhook_request_duration_seconds_count"
    injected = 'kube_lxcfs_webhook_admissions_total{outcome="injected"}'
    skipped = 'kube_lxcfs_webhook_admissions_total{outcome="skipped"}'
    assert metric_value(text, ok) - metric_value(before, ok) == 2
    assert metric_value(text, bad) - metric_value(before, bad) == 1
    assert metric_value(text, count) - metric_value(before, count) == 3
    assert metric_value(text, injected) - metric_value(before, injected) == 1
    assert metric_value(text, skipped) - metric_value(before, skipped) == 1
    assert metric_value(text, 'kube_lxcfs_webhook_skips_total{reason="mirror-pod"}') >= 1
    assert metric_value(text, "kube_lxcfs_webhook_requests_in_flight") == 0
    inf = 'kube_lxcfs_webhook_request_duration_seconds_bucket{le="+Inf"}'
    assert metric_value(text, inf) == metric_value(text, count)
    assert (
        metric_value(text, "kube_lxcfs_webhook_certificate_expiry_timestamp_seconds") > time.time()
    )


def test_logs_are_json_lines(server: WebhookProcess) -> None:
    server.connect().post(b"garbage")
    logs = server.drain_logs()  # parsing each line as JSON is the assertion
    assert any(entry["msg"] == "serving" for entry in logs)
    assert all({"ts", "level", "logger", "msg"} <= entry.keys() for entry in logs)


def test_tls_reload_without_dropping_the_listener(tmp_path: Path) -> None:
    """Every worker reloads: each counts its first load and the reload."""
    env = {"KUBE_LXCFS_WEBHOOK_TLS_RELOAD_INTERVAL": "0.05", "KUBE_LXCFS_WEBHOOK_WORKERS": "2"}
    with running_webhook(tmp_path, env) as server:
        old_conn = server.connect()
        old_conn.admit(load("bare-pod.json"))
        # Rotate like kubelet does for a Secret volume: write aside, then rename over.
        new = new_ca("rotated CA")
        new.issue(tmp_path / "new.crt", tmp_path / "new.key", [SERVICE_NAME])
        os.replace(tmp_path / "new.key", server.key_file)
        os.replace(tmp_path / "new.crt", server.cert_file)
        deadline = time.monotonic() + 10
        while True:
            conn = server.connect(ca_pem=new.cert_pem)  # type: ignore[call-arg]
            try:
                conn.admit(load("bare-pod.json"))
                break
            except ssl.SSLCertVerificationError:
                assert time.monotonic() < deadline, "new certificate never served"
            finally:
                conn.close()
        # Every worker has reloaded (each counts its first load and the reload) ...
        reloads = 'kube_lxcfs_webhook_tls_reloads_total{result="success"}'
        wait_for(lambda: metric_value(server.health("/metrics")[1], reloads) == 4, what="reloads")
        # ... so no new connection presents the old certificate any more.
        for _ in range(4):
            with pytest.raises(ssl.SSLCertVerificationError):
                server.connect().admit(load("bare-pod.json"))
        # The connection opened before the rotation keeps working on the same socket.
        old_conn.admit(load("bare-pod.json"))
        assert old_conn.connects == 1
        server.wait_log("tls certificate reloaded")


def test_half_written_certificate_keeps_the_old_one(tmp_path: Path) -> None:
    env = {"KUBE_LXCFS_WEBHOOK_TLS_RELOAD_INTERVAL": "0.05"}
    with running_webhook(tmp_path, env) as server:
        server.cert_file.write_text("-----BEGIN CERTIFICATE-----\ntruncated")
        server.wait_log("tls reload failed, keeping the old one")
        server.connect().admit(load("bare-pod.json"))  # still serving with the old pair
        assert server.health("/readyz")[0] == 200


def test_files_configured_by_env_var(tmp_path: Path) -> None:
    env = {
        "KUBE_LXCFS_WEBHOOK_FILES": "proc/meminfo,proc/uptime",
        "KUBE_LXCFS_WEBHOOK_MOUNT_DIR": "/run/kl",
    }
    with running_webhook(tmp_path, env) as server:
        answer = server.connect().admit(load("bare-pod.json"))
        volumes = decode_patch(answer)[0]["value"]
        assert [v["hostPath"]["path"] for v in volumes] == [
            "/run/kl/proc/meminfo",
            "/run/kl/proc/uptime",
        ]


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"POST /mutate HTTP/9.9\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /mutate HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
        b"POST /mutate HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /mutate HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"\x16\x03\x01\x00\x05hello\r\n\r\n",
        b"DELETE /mutate HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    ],
)
def test_malformed_http_gets_4xx_and_server_stays_up(server: WebhookProcess, raw: bytes) -> None:
    with raw_tls(server.port, server.client_context()) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status <= 505, answer[:200]  # 505: unknown HTTP version
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["message"]
    assert server.health("/healthz")[0] == 200
    server.connect().admit(load("bare-pod.json"))


def _raw_exchange(server: WebhookProcess, raw: bytes) -> bytes:
    with raw_tls(server.port, server.client_context()) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(
    "length", [b"\xb2", "\u0663".encode(), b"1\xb9", b"+5", b"5x", b"0x10"], ids=repr
)
def test_a_malformed_content_length_is_a_400_and_one_log_line(
    server: WebhookProcess, length: bytes
) -> None:
    """``str.isdigit`` takes U+00B2 (superscript two) and Arabic-Indic digits; int() does not."""
    server.drain_logs()
    head = b"POST /mutate HTTP/1.1\r\nContent-Length: " + length + b"\r\n\r\n"
    answer = _raw_exchange(server, head)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert "Content-Length" in json.loads(answer.partition(b"\r\n\r\n")[2])["message"]
    # another path answers too (it used to drop the connection)
    other = _raw_exchange(server, head.replace(b"/mutate", b"/other"))
    assert other.startswith(b"HTTP/1.1 404 "), other[:200]
    server.wait_log("bad admission request")
    assert not [e for e in server.drain_logs() if "traceback" in e or e["level"] == "error"]
    assert server.health("/readyz")[0] == 200


def test_ipv6_dual_stack_address(tmp_path: Path) -> None:
    with running_webhook(tmp_path, {"KUBE_LXCFS_WEBHOOK_ADDRESS": "::"}) as server:
        # 127.0.0.1 reaches a "::" listener through IPv4-mapped addresses.
        server.connect().admit(load("bare-pod.json"))
        assert server.health("/readyz")[0] == 200


def test_4xx_answers_keep_the_connection_usable(server: WebhookProcess) -> None:
    conn = server.connect()
    assert conn.post(b"{}", path="/validate")[0] == 404
    assert conn.post(b"{not json")[0] == 400
    assert conn.post(b"{}", **{"Content-Type": "text/plain"})[0] == 415
    conn.admit(load("bare-pod.json"))
    assert conn.connects == 1


def test_http_1_0_closes_after_the_answer(server: WebhookProcess) -> None:
    body = json.dumps(load("bare-pod.json")).encode()
    with raw_tls(server.port, server.client_context()) as sock:
        sock.sendall(
            b"POST /mutate HTTP/1.0\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        answer = b""
        while chunk := sock.recv(65536):  # ends only if the server closes
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and b"Connection: close" in answer


def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    with running_webhook(tmp_path, {"KUBE_LXCFS_WEBHOOK_IDLE_TIMEOUT": "0.5"}) as server:
        body = json.dumps(load("bare-pod.json")).encode()
        with raw_tls(server.port, server.client_context()) as sock:
            sock.sendall(
                b"POST /mutate HTTP/1.1\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            sock.settimeout(10)  # far above the idle timeout: recv returns when the server closes
            received = b""
            started = time.monotonic()
            while chunk := sock.recv(65536):
                received += chunk
            assert received.startswith(b"HTTP/1.1 200")
            assert time.monotonic() - started < 8


def test_port_in_use_is_a_one_line_usage_error(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    from webhook.pki import new_ca

    new_ca().issue(tmp_path / "tls.crt", tmp_path / "tls.key", [SERVICE_NAME])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cert, key = str(tmp_path / "tls.crt"), str(tmp_path / "tls.key")
        proc = subprocess.run(
            [
                *(sys.executable, "-m", "kube_lxcfs", "webhook", "--address", "127.0.0.1"),
                *("--port", str(port), "--health-port", "0", "--tls-cert", cert, "--tls-key", key),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot listen" in lines[0], lines


def test_connections_over_the_limit_are_refused_and_counted(tmp_path: Path) -> None:
    env = {"KUBE_LXCFS_WEBHOOK_MAX_CONNECTIONS": "2", "KUBE_LXCFS_WEBHOOK_WORKERS": "1"}
    with running_webhook(tmp_path, env) as server:  # the limit is per worker
        first, second = server.connect(), server.connect()
        first.admit(load("bare-pod.json"))
        second.admit(load("bare-pod.json"))  # both now open and idle
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            server.connect().admit(load("bare-pod.json"))
        first.close()

        def third_admitted() -> bool:
            try:
                server.connect().admit(load("bare-pod.json"))
            except (ssl.SSLError, OSError):
                return False
            return True

        deadline = time.monotonic() + 10
        while not third_admitted():  # the server notices the close asynchronously
            assert time.monotonic() < deadline
        _, text = server.health("/metrics")
        assert metric_value(text, "kube_lxcfs_webhook_refused_connections_total") >= 1


def test_serves_with_the_kubelets_service_links_in_its_environment(tmp_path: Path) -> None:
    """The Deployment's pod gets KUBE_LXCFS_WEBHOOK_PORT=tcp://...; its --port flag decides."""
    server = start_webhook(tmp_path, env=SERVICE_LINKS, args=["--port", "0"])
    try:
        assert server.health("/healthz")[0] == 200
        assert server.connect().admit(load("bare-pod.json"))["response"]["allowed"]
    finally:
        server.terminate()


def test_stalled_clients_give_their_slots_back(tmp_path: Path) -> None:
    """A pod that can reach the Service may open connections and stall: before the TLS
    handshake (bounded by a fixed 10 s) or half-way through a request (bounded by
    --idle-timeout). With every slot taken a new connection is refused and counted (the API
    server then admits the pod unmutated: failurePolicy Ignore); the slots come back by
    themselves within those bounds (docs/security.md)."""
    import socket

    env = {
        "KUBE_LXCFS_WEBHOOK_MAX_CONNECTIONS": "3",
        "KUBE_LXCFS_WEBHOOK_IDLE_TIMEOUT": "1",
        "KUBE_LXCFS_WEBHOOK_WORKERS": "1",  # the limit is per worker
    }
    with running_webhook(tmp_path, env) as server:
        silent = socket.create_connection(("127.0.0.1", server.port))  # no handshake, ever
        halves = [raw_tls(server.port, server.client_context()) for _ in range(2)]
        for half in halves:
            half.sendall(b"POST /mutate HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            server.connect().admit(load("bare-pod.json"))
        started = time.monotonic()
        for half in halves:  # the idle timeout ends them with a 408 (it used to be a 500)
            half.settimeout(10)
            answer = b""
            while chunk := half.recv(65536):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
            half.close()
        assert time.monotonic() - started < 5
        assert server.connect().admit(load("bare-pod.json"))["response"]["allowed"]
        silent.settimeout(20)
        assert silent.recv(1) == b""  # closed by the server after the handshake timeout
        assert time.monotonic() - started < 15
        silent.close()
        _, text = server.health("/metrics")
        assert metric_value(text, "kube_lxcfs_webhook_refused_connections_total") >= 1
        assert not [line for line in text.splitlines() if 'code="5' in line]
        assert server.health("/readyz")[0] == 200

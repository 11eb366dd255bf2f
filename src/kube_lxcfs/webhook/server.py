"""The thin HTTPS shell around ``review()``: TLS, keep-alive, health, metrics, graceful stop.

Stdlib threading server, one thread per connection: the API server keeps a handful of
keep-alive connections open, the TLS handshake runs in the connection's thread (a slow client
never stalls ``accept``), and each request costs one JSON parse, one pure review and one write.
bench/webhook_load.py measures it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kube_lxcfs.webhook.config import DEFAULT_MAX_BODY, InjectOptions
from kube_lxcfs.webhook.metrics import WebhookMetrics
from kube_lxcfs.webhook.review import BadReviewError, review
from kube_lxcfs.webhook.tls import ReloadingContext

log = logging.getLogger("kube_lxcfs.webhook")

MUTATE_PATH = "/mutate"


@dataclass(frozen=True)
class ServerOptions:
    """How the server listens; the CLI fills these from flags and env vars."""

    cert_file: Path
    key_file: Path
    address: str = "0.0.0.0"
    port: int = 8443
    health_port: int = 8080
    tls_min_version: str = "1.2"
    tls_reload_interval: float = 10.0
    max_body_bytes: int = DEFAULT_MAX_BODY
    idle_timeout: float = 120.0  # keep-alive connections idle longer than this are closed
    handshake_timeout: float = 10.0
    shutdown_grace: float = 25.0  # how long SIGTERM waits for in-flight requests
    shutdown_delay: float = 0.0  # readyz fails this long before the listener closes
    inject: InjectOptions = field(default_factory=InjectOptions)


class _DualStackServer(ThreadingHTTPServer):
    """IPv4 for an IPv4 address; IPv6 (and IPv4-mapped, for ``::``) for an IPv6 one."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: WebhookServer, address: tuple[str, int], handler: type) -> None:
        self.owner = owner
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            with contextlib.suppress(OSError, AttributeError):
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class _HttpsServer(_DualStackServer):
    """Accepts plain TCP and does the TLS handshake in the connection's own thread."""

    request_queue_size = 128

    def __init__(self, owner: WebhookServer, address: tuple[str, int]) -> None:
        super().__init__(owner, address, _AdmissionHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        owner = self.owner
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = owner.tls.context.wrap_socket(
                request, server_side=True, do_handshake_on_connect=False
            )
        except OSError:
            request.close()
            return
        owner._track(tls, add=True)
        try:
            tls.settimeout(owner.options.handshake_timeout)
            tls.do_handshake()
            handler = _AdmissionHandler(tls, client_address, self)
            if handler.linger:
                _discard_unread(tls)
        except (OSError, ssl.SSLError) as exc:  # handshake failures, resets, timeouts
            log.debug("connection ended", extra={"peer": str(client_address), "error": str(exc)})
        finally:
            owner._track(tls, add=False)
            with contextlib.suppress(OSError):
                tls.close()


def _discard_unread(conn: ssl.SSLSocket, limit: int = 16 << 20, seconds: float = 1.0) -> None:
    """Read what the client is still sending before closing, so it sees our answer (e.g. 413)
    instead of a connection reset; bounded in bytes and time."""
    deadline = time.monotonic() + seconds
    received = 0
    with contextlib.suppress(OSError, ssl.SSLError):
        while received < limit and time.monotonic() < deadline:
            conn.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = conn.recv(65536)
            if not chunk:
                return
            received += len(chunk)


class _AdmissionHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    linger = False  # set when the request body was left unread
    server_version = "kube-lxcfs-webhook"
    sys_version = ""
    server: _HttpsServer

    def setup(self) -> None:
        self.timeout = self.server.owner.options.idle_timeout
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # http.server's stderr lines
        return

    def do_POST(self) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]  # the API server appends ?timeout=10s
        if path != MUTATE_PATH:
            self._drain_body()
            self._json(404, {"message": f"no such path {path}; POST AdmissionReviews to /mutate"})
            return
        owner.metrics.in_flight.inc(webhook=MUTATE_PATH)
        started = time.perf_counter()
        code = 500
        try:
            code = self._admit(owner)
        finally:
            owner.metrics.in_flight.inc(-1, webhook=MUTATE_PATH)
            owner.metrics.latency.observe(time.perf_counter() - started, webhook=MUTATE_PATH)
            owner.metrics.requests.inc(code=str(code), webhook=MUTATE_PATH)

    def do_GET(self) -> None:
        self._json(405, {"message": "POST AdmissionReviews to /mutate"})

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's errors (bad request line, huge headers) as JSON with a status line."""
        self.close_connection = True
        self._json(code, {"message": message or self.responses.get(code, ("error",))[0]})

    def _admit(self, owner: WebhookServer) -> int:
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.strip().isdigit():
            self.close_connection = True
            return self._json(411, {"message": "Content-Length required"})
        length = int(length_header)
        if length > owner.options.max_body_bytes:
            self.close_connection = True  # the body stays unread: this connection is done
            self.linger = True
            limit = owner.options.max_body_bytes
            return self._json(413, {"message": f"body of {length} bytes exceeds {limit}"})
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return 400
        content_type = self.headers.get("Content-Type", "application/json")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            return self._json(415, {"message": "Content-Type must be application/json"})
        try:
            document = json.loads(body)
            result = review(document, owner.options.inject)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, BadReviewError, bad UTF-8
            reason = str(exc) if isinstance(exc, BadReviewError) else f"invalid JSON: {exc}"
            log.info("bad admission request", extra={"error": reason[:300]})
            return self._json(400, {"message": reason[:1000]})
        owner.record(result)
        return self._json(200, result.response)

    def _drain_body(self) -> None:
        length = self.headers.get("Content-Length", "0").strip()
        if length.isdigit() and int(length) <= self.server.owner.options.max_body_bytes:
            self.rfile.read(int(length))
        else:
            self.close_connection = True
            self.linger = True

    def _json(self, code: int, payload: Any) -> int:
        body = json.dumps(payload, separators=(",", ":")).encode()
        if self.server.owner.draining.is_set():
            self.close_connection = True  # shutting down: no more requests on this connection
        head = (
            f"HTTP/1.1 {code} {self.responses.get(code, ('',))[0]}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
        )
        if self.close_connection:
            head += "Connection: close\r\n"
        self.wfile.write(head.encode() + b"\r\n" + body)
        return code


class _HealthHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-lxcfs-webhook"
    sys_version = ""
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        owner: WebhookServer = self.server.owner  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/readyz":
            if owner.ready:
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            else:
                self._send(503, b"not ready\n", "text/plain; charset=utf-8")
        elif path == "/metrics":
            self._send(200, owner.metrics.registry.render(), owner.metrics.registry.CONTENT_TYPE)
        else:
            self._send(404, b"try /healthz, /readyz or /metrics\n", "text/plain; charset=utf-8")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _HealthServer(_DualStackServer):
    def __init__(self, owner: WebhookServer, address: tuple[str, int]) -> None:
        super().__init__(owner, address, _HealthHandler)


class WebhookServer:
    """Owns the HTTPS listener, the health listener, the TLS watcher and the metrics."""

    def __init__(self, options: ServerOptions, metrics: WebhookMetrics | None = None) -> None:
        self.options = options
        self.metrics = metrics or WebhookMetrics()
        self.draining = threading.Event()
        self._stop_watch = threading.Event()
        self._connections: set[ssl.SSLSocket] = set()
        self._lock = threading.Lock()
        self._serving = False
        self._threads: list[threading.Thread] = []
        self.tls = ReloadingContext(
            options.cert_file, options.key_file, options.tls_min_version, self._on_tls_reload
        )
        self._https = _HttpsServer(self, (options.address, options.port))
        self._health = _HealthServer(self, (options.address, options.health_port))

    @property
    def port(self) -> int:
        return int(self._https.server_address[1])

    @property
    def health_port(self) -> int:
        return int(self._health.server_address[1])

    @property
    def ready(self) -> bool:
        """TLS material loaded and the listener accepting (false while draining)."""
        return self._serving and not self.draining.is_set()

    def start(self) -> None:
        """Serve in background threads; returns at once."""
        for name, server in (("https", self._https), ("health", self._health)):
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=name, daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self.tls.watch(self.options.tls_reload_interval, self._stop_watch)
        self._serving = True
        log.info(
            "serving",
            extra={
                "address": self.options.address,
                "port": self.port,
                "health_port": self.health_port,
                "tls_min_version": self.options.tls_min_version,
                "files": [p.mount_path for p in self.options.inject.paths],
            },
        )

    def stop(self) -> None:
        """Graceful stop: fail readiness, stop accepting, finish in-flight requests, close."""
        if self.draining.is_set():
            return
        self.draining.set()
        log.info("shutting down", extra={"grace_seconds": self.options.shutdown_grace})
        if self.options.shutdown_delay > 0:
            # Serve on while the endpoints controller removes us from the Service.
            self._stop_watch.wait(self.options.shutdown_delay)
        self._https.shutdown()
        self._https.server_close()
        deadline = time.monotonic() + self.options.shutdown_grace
        while self._in_flight() > 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # product-side wait for requests, bounded by the grace period
        with self._lock:
            remaining = list(self._connections)
        for conn in remaining:  # idle keep-alive connections: wake their threads up
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._stop_watch.set()
        self._health.shutdown()
        self._health.server_close()
        self._serving = False
        log.info("stopped")

    def _in_flight(self) -> float:
        return self.metrics.in_flight.value(webhook=MUTATE_PATH)

    def _track(self, conn: ssl.SSLSocket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _on_tls_reload(self, ok: bool, not_after: float | None) -> None:
        self.metrics.tls_reloads.inc(result="success" if ok else "error")
        if ok and not_after is not None:
            self.metrics.cert_expiry.set(not_after)

    def record(self, result: Any) -> None:
        """Count and log one answered review."""
        self.metrics.injections.inc(outcome=result.outcome)
        if result.outcome == "skipped":
            self.metrics.skips.inc(reason=result.reason or "unknown")
        if result.error is not None:
            log.error(
                "internal error; pod admitted without injection",
                exc_info=result.error,
                extra={"namespace": result.namespace, "pod": result.name},
            )
        elif log.isEnabledFor(logging.DEBUG):
            log.debug(
                "admission",
                extra={
                    "uid": result.response["response"]["uid"],
                    "namespace": result.namespace,
                    "pod": result.name,
                    "outcome": result.outcome,
                    "reason": result.reason,
                    "patch_ops": result.patch_ops,
                },
            )


def serve_until_signalled(
    server: WebhookServer, on_started: Callable[[WebhookServer], None] | None = None
) -> int:
    """Run until SIGTERM or SIGINT, then stop gracefully; the process exit code."""
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        log.info("signal received", extra={"signal": signal.Signals(signum).name})
        stop.set()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        if on_started is not None:
            on_started(server)
        # Wake up regularly: a signal delivered to another thread only runs its Python handler
        # once the main thread executes bytecode again.
        while not stop.wait(0.2):
            pass
        server.stop()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    return 0

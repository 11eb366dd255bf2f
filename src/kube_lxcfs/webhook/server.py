"""The thin HTTPS shell around ``review()``: TLS, keep-alive, health, metrics, graceful stop.

The HTTPS connections are served by one event loop thread (``kube_lxcfs.webhook.https``):
each request costs one JSON parse, one pure review and one TLS write, and no handover of the
interpreter lock between threads. The plain-HTTP health port is a stdlib threading server.
bench/webhook_load.py measures it.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from kube_lxcfs.webhook.admission import ReviewOutcome, ReviewResult
from kube_lxcfs.webhook.https import AcceptBalance, HttpsLoop
from kube_lxcfs.webhook.metrics import CONTENT_TYPE, WebhookMetrics
from kube_lxcfs.webhook.options import ServerOptions
from kube_lxcfs.webhook.tls import ReloadingContext

log = logging.getLogger("kube_lxcfs.webhook")


class _DualStackServer(ThreadingHTTPServer):
    """IPv4 for an IPv4 address; IPv6 (and IPv4-mapped, for ``::``) for an IPv6 one."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        owner: Any,
        address: tuple[str, int],
        handler: type,
        listener: socket.socket | None = None,
    ) -> None:
        self.owner = owner
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        if listener is None:
            super().__init__(address, handler)
            return
        # A worker: serve the socket the supervisor listens on, shared by every worker.
        super().__init__(address, handler, bind_and_activate=False)
        self.socket.close()
        self.socket = listener
        self.server_address = listener.getsockname()

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            with contextlib.suppress(OSError, AttributeError):
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class _HealthHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-lxcfs-webhook"
    sys_version = ""
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        return

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Another method than GET is the client's mistake: 405, not the standard library's 501
        (this port answers anyone who can reach the pod; a 5xx would look like our fault)."""
        if code == HTTPStatus.NOT_IMPLEMENTED:
            code, message = HTTPStatus.METHOD_NOT_ALLOWED, "only GET is served here"
        super().send_error(code, message, explain)

    def do_GET(self) -> None:
        owner: HealthOwner = self.server.owner  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        elif path == "/readyz":
            if owner.ready:
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            else:
                self._send(503, b"not ready\n", "text/plain; charset=utf-8")
        elif path == "/metrics":
            self._send(200, owner.metrics.render(), CONTENT_TYPE)
        else:
            self._send(404, b"try /healthz, /readyz or /metrics\n", "text/plain; charset=utf-8")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


LISTEN_BACKLOG = 128


def bind_listener(address: str, port: int) -> socket.socket:
    """The HTTPS listening socket shared by the workers: non-blocking, so the workers that
    lose the race for a new connection go back to waiting instead of blocking in accept()."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((address, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class HealthOwner(Protocol):
    """What the health listener asks: a server, or the supervisor of several."""

    @property
    def ready(self) -> bool: ...

    @property
    def metrics(self) -> _Renders: ...


class _Renders(Protocol):
    def render(self) -> bytes: ...


class HealthServer(_DualStackServer):
    """Plain HTTP: /healthz, /readyz and /metrics of ``owner``."""

    def __init__(self, owner: HealthOwner, address: tuple[str, int]) -> None:
        super().__init__(owner, address, _HealthHandler)  # type: ignore[arg-type]


class WebhookServer:
    """Owns the HTTPS listener, the health listener, the TLS watcher and the metrics."""

    def __init__(
        self,
        options: ServerOptions,
        metrics: WebhookMetrics | None = None,
        *,
        listener: socket.socket | None = None,
        worker: bool = False,
        balance: AcceptBalance | None = None,
    ) -> None:
        """``worker``: one of several processes serving ``listener``; the supervisor serves
        the health port and logs "serving"."""
        self.options = options
        self.worker = worker
        self.balance = balance
        self.metrics = metrics or WebhookMetrics(expiry=not worker)
        self.draining = threading.Event()
        self._stop_watch = threading.Event()
        self._serving = False
        self._threads: list[threading.Thread] = []
        self.tls = ReloadingContext(
            options.cert_file,
            options.key_file,
            options.tls_min_version,
            self._on_tls_reload,
            track_expiry=not worker,
        )
        if listener is None:
            listener = bind_listener(options.address, options.port)
        self._https = HttpsLoop(self, listener)
        self._health = (
            None if worker else HealthServer(self, (options.address, options.health_port))
        )

    @property
    def port(self) -> int:
        return int(self._https.server_address[1])

    @property
    def health_port(self) -> int:
        return 0 if self._health is None else int(self._health.server_address[1])

    @property
    def ready(self) -> bool:
        """TLS material loaded and the listener accepting (false while draining)."""
        return self._serving and not self.draining.is_set()

    def start(self) -> None:
        """Serve in background threads; returns at once."""
        https = threading.Thread(target=self._https.serve_forever, name="https", daemon=True)
        https.start()
        self._threads.append(https)
        if self._health is not None:
            health = threading.Thread(
                target=self._health.serve_forever,
                kwargs={"poll_interval": 0.2},
                name="health",
                daemon=True,
            )
            health.start()
            self._threads.append(health)
        self.tls.watch(self.options.tls_reload_interval, self._stop_watch)
        self._serving = True
        if self.worker:
            log.debug("worker serving", extra={"port": self.port})
            return
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
        # The loop closes the listener and idle keep-alive connections, answers requests in
        # flight with Connection: close, and closes each connection once it is answered.
        self._https.drain()
        deadline = time.monotonic() + self.options.shutdown_grace
        while not self._https.drained and time.monotonic() < deadline:
            time.sleep(0.01)  # product-side wait for requests, bounded by the grace period
        self._https.stop()
        self._threads[0].join(timeout=5)
        self._stop_watch.set()
        if self._health is not None:
            self._health.shutdown()
            self._health.server_close()
        self._serving = False
        log.info("stopped")

    def _on_tls_reload(self, ok: bool, not_after: float | None) -> None:
        self.metrics.tls_reload(ok, not_after)

    def record(self, result: ReviewResult) -> None:
        """Count and log one answered review."""
        skipped = result.outcome is ReviewOutcome.SKIPPED
        self.metrics.admission(result.outcome, (result.reason or "unknown") if skipped else None)
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

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
import re
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from kube_lxcfs.webhook.admission import BadReviewError, ReviewOutcome, ReviewResult, review
from kube_lxcfs.webhook.metrics import CONTENT_TYPE, WebhookMetrics
from kube_lxcfs.webhook.options import ServerOptions
from kube_lxcfs.webhook.tls import ReloadingContext

log = logging.getLogger("kube_lxcfs.webhook")

MUTATE_PATH = "/mutate"


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


class _HttpsServer(_DualStackServer):
    """Accepts plain TCP and does the TLS handshake in the connection's own thread."""

    request_queue_size = 128

    def __init__(
        self, owner: WebhookServer, address: tuple[str, int], listener: socket.socket | None
    ) -> None:
        super().__init__(owner, address, BaseHTTPRequestHandler, listener)  # unused handler

    def get_request(self) -> tuple[socket.socket, Any]:
        if self.owner.balance is not None:
            self.owner.balance.wait_turn()
        return self.socket.accept()

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
        if not owner._track(tls, add=True):
            owner.metrics.refused_connections.inc()
            tls.close()  # over --max-connections: refuse before spending a handshake on it
            return
        try:
            tls.settimeout(owner.options.handshake_timeout)
            tls.do_handshake()
            connection = _AdmissionConnection(owner, tls)
            connection.serve()
            if connection.linger:
                _discard_unread(tls)
        except (OSError, ssl.SSLError) as exc:  # handshake failures, resets, timeouts
            log.debug("connection ended", extra={"peer": str(client_address), "error": str(exc)})
        except Exception:  # a bug: one structured line (with its traceback), not stderr noise
            log.exception("connection failed", extra={"peer": str(client_address)})
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


_REASONS = {status.value: status.phrase for status in HTTPStatus}
MAX_LINE = 65536
MAX_HEADERS = 100
HTTP_VERSION = re.compile(r"HTTP/[0-9]\.[0-9]")


def content_length(headers: dict[str, str]) -> int | None:
    """The body length the client announced; ``None`` when absent, ValueError when malformed.

    Only ASCII digits count: ``str.isdigit`` also accepts ``"\xb2"`` (superscript two),
    which ``int`` then refuses.
    """
    text = headers.get("content-length")
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"bad Content-Length {text[:40]!r}")
    return int(text)


class _Reject(Exception):
    """A request that gets an error status and ends the connection."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _AdmissionConnection:
    """HTTP/1.1 on one TLS connection: requests one after the other until close.

    Written out instead of http.server's handler because only a few headers matter here and
    its generic header parser was a tenth of the cost of an admission.
    """

    def __init__(self, owner: WebhookServer, sock: ssl.SSLSocket) -> None:
        self.owner = owner
        self.sock = sock
        self.rfile = sock.makefile("rb", buffering=65536)
        self.linger = False  # a request body was left unread when we closed

    def serve(self) -> None:
        # Once per connection: settimeout is a syscall, and nothing changes it between requests.
        self.sock.settimeout(self.owner.options.idle_timeout)
        try:
            while self._one_request():
                pass
        finally:
            self.rfile.close()

    def _one_request(self) -> bool:
        """Serve one request; False when the connection must close."""
        line = self.rfile.readline(MAX_LINE + 1)
        if not line:
            return False  # the client closed an idle connection
        self.owner._busy(+1)
        try:
            return self._answer(line)
        finally:
            self.owner._busy(-1)

    def _answer(self, line: bytes) -> bool:
        try:
            method, target, version, headers = self._read_head(line)
        except _Reject as exc:
            self._reply(exc.code, {"message": str(exc)}, close=True)
            self.linger = True
            return False
        wants_more = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        path = target.split("?", 1)[0]  # the API server appends ?timeout=10s
        if method != "POST":
            self._reply(405, {"message": "POST AdmissionReviews to /mutate"}, close=True)
            self.linger = True
            return False
        if path != MUTATE_PATH:
            message = f"no such path {path}; POST AdmissionReviews to /mutate"
            keep = wants_more and self._skip_body(headers)
            self._reply(404, {"message": message}, close=not keep)
            return keep and not self.owner.draining.is_set()
        metrics = self.owner.metrics
        metrics.in_flight.inc()
        started = time.perf_counter()
        code, payload, keep_alive = 500, {"message": "internal error"}, False
        try:
            code, payload, keep_alive = self._admit(headers, wants_more)
        finally:
            # Counted before the answer leaves, so a client that has its answer sees it counted.
            metrics.in_flight.dec()
            metrics.request(code, time.perf_counter() - started)
            if payload is not None:
                self._reply(code, payload, close=not keep_alive)
        return keep_alive and not self.owner.draining.is_set()

    def _read_head(self, line: bytes) -> tuple[str, str, str, dict[str, str]]:
        if len(line) > MAX_LINE:
            raise _Reject(414, "request line too long")
        parts = line.decode("latin-1").split()
        if len(parts) != 3:
            raise _Reject(400, f"bad request line {line[:100]!r}")
        method, target, version = parts
        if not HTTP_VERSION.fullmatch(version):  # e.g. the rest of a body longer than announced
            raise _Reject(400, f"bad HTTP version {version[:20]!r}")
        if not version.startswith("HTTP/1."):
            raise _Reject(505, f"HTTP version {version[:20]!r} not supported")
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            raw = self.rfile.readline(MAX_LINE + 1)
            if len(raw) > MAX_LINE:
                raise _Reject(431, "header line too long")
            if raw in (b"\r\n", b"\n", b""):
                return method, target, version, headers
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep or not name.strip():
                raise _Reject(400, "bad header line")
            headers[name.strip().lower()] = value.strip()
        raise _Reject(431, f"more than {MAX_HEADERS} headers")

    def _admit(
        self, headers: dict[str, str], keep_alive: bool
    ) -> tuple[int, dict[str, Any] | None, bool]:
        """(status, JSON answer or None when the client is gone, keep the connection)."""
        owner = self.owner
        try:
            length = content_length(headers)
        except ValueError as exc:
            self.linger = True
            log.info("bad admission request", extra={"error": str(exc)})
            return 400, {"message": str(exc)}, False
        if "transfer-encoding" in headers or length is None:
            self.linger = True
            return 411, {"message": "Content-Length required"}, False
        limit = owner.options.max_body_bytes
        if length > limit:
            self.linger = True  # the body stays unread: this connection is done
            return 413, {"message": f"body of {length} bytes exceeds {limit}"}, False
        if headers.get("expect", "").lower() == "100-continue":
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            body = self.rfile.read(length)
        except TimeoutError:  # a stalled client: its fault, not a 500
            return 408, {"message": "the body did not arrive within the idle timeout"}, False
        except OSError:
            return 400, None, False  # the client went away mid-body
        if len(body) != length:
            return 400, None, False  # the client went away mid-body
        content_type = headers.get("content-type", "application/json")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            return 415, {"message": "Content-Type must be application/json"}, keep_alive
        try:
            result = review(json.loads(body), owner.options.inject)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, BadReviewError, bad UTF-8
            reason = str(exc) if isinstance(exc, BadReviewError) else f"invalid JSON: {exc}"
            log.info("bad admission request", extra={"error": reason[:300]})
            return 400, {"message": reason[:1000]}, keep_alive
        owner.record(result)
        return 200, dict(result.response), keep_alive

    def _skip_body(self, headers: dict[str, str]) -> bool:
        """Read and drop a small body so the connection can go on; False if it cannot."""
        try:
            length = content_length(headers) or 0
        except ValueError:
            length = None
        if length is not None and length <= self.owner.options.max_body_bytes:
            self.rfile.read(length)
            return True
        self.linger = True
        return False

    def _reply(self, code: int, payload: Any, *, close: bool) -> int:
        """Write status, headers and JSON body in one send; ``Connection: close`` when ending."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        close = close or self.owner.draining.is_set()  # shutting down: last answer here
        head = (
            f"HTTP/1.1 {code} {_REASONS.get(code, '')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
        )
        self.sock.sendall(head.encode() + body)
        return code


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
        sock.listen(_HttpsServer.request_queue_size)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class AcceptBalance(Protocol):
    """How workers sharing one listening socket take turns accepting (see workers.py)."""

    def wait_turn(self) -> None: ...

    def set_open(self, count: int) -> None: ...


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
        self._connections: set[ssl.SSLSocket] = set()
        self._requests_open = 0  # requests read but not yet answered (for graceful stop)
        self._lock = threading.Lock()
        self._serving = False
        self._threads: list[threading.Thread] = []
        self.tls = ReloadingContext(
            options.cert_file,
            options.key_file,
            options.tls_min_version,
            self._on_tls_reload,
            track_expiry=not worker,
        )
        self._https = _HttpsServer(self, (options.address, options.port), listener)
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
        servers = [("https", self._https)]
        if self._health is not None:
            servers.append(("health", self._health))
        for name, server in servers:
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=name, daemon=True
            )
            thread.start()
            self._threads.append(thread)
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
        self._https.shutdown()
        self._https.server_close()
        deadline = time.monotonic() + self.options.shutdown_grace
        while self._requests_open > 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # product-side wait for requests, bounded by the grace period
        with self._lock:
            remaining = list(self._connections)
        for conn in remaining:
            # Idle keep-alive connections see end-of-stream and close; the write side stays
            # open, so a request that slipped in after the wait can still be answered.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RD)
        self._stop_watch.set()
        if self._health is not None:
            self._health.shutdown()
            self._health.server_close()
        self._serving = False
        log.info("stopped")

    def _busy(self, delta: int) -> None:
        with self._lock:
            self._requests_open += delta

    def _track(self, conn: ssl.SSLSocket, *, add: bool) -> bool:
        """Add or remove an open connection; False when adding would exceed the limit."""
        with self._lock:
            if not add:
                self._connections.discard(conn)
            elif len(self._connections) >= self.options.max_connections:
                return False
            else:
                self._connections.add(conn)
            if self.balance is not None:
                self.balance.set_open(len(self._connections))
        return True

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

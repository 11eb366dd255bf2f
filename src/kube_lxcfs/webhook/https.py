"""HTTPS connections of one serving process, all in one thread: an event loop over epoll.

One thread per connection made every request a handover of the interpreter lock between
threads (futex calls and context switches on both cores: about 6 context switches and a third
more CPU per admission with 8 connections than with 1). Here one thread accepts, does the
TLS handshakes without blocking, reads requests into a buffer per connection, answers each
complete request at once (``review()`` is pure and takes microseconds) and writes the answer
with one TLS write. Several ready connections are served per wake-up.

HTTP/1.1 only as far as the API server needs it: keep-alive, pipelining, Content-Length bodies,
``Expect: 100-continue``; everything else gets a 4xx and the connection ends.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import re
import selectors
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

from kube_lxcfs.webhook.admission import BadReviewError, ReviewResult, encode_review, review
from kube_lxcfs.webhook.metrics import WebhookMetrics
from kube_lxcfs.webhook.options import ServerOptions

log = logging.getLogger("kube_lxcfs.webhook")

MUTATE_PATH = "/mutate"
MAX_LINE = 65536
MAX_HEADERS = 100
HTTP_VERSION = re.compile(r"HTTP/[0-9]\.[0-9]")
READ_SIZE = 262144
LINGER_BYTES = 16 << 20
LINGER_SECONDS = 1.0
SWEEP_SECONDS = 0.25  # how often deadlines (handshake, idle, linger) are checked
_REASONS = {status.value: status.phrase for status in HTTPStatus}
_WANT = (ssl.SSLWantReadError, ssl.SSLWantWriteError)


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


@dataclass
class _Head:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    size: int  # bytes of request line and headers


def parse_head(buf: bytearray | bytes) -> _Head | None:
    """The request line and headers at the start of ``buf``; None while incomplete.

    Lines may end in CRLF or LF. Raises ``_Reject`` for what cannot become a request.
    """
    end = buf.find(b"\r\n\r\n")
    if 0 <= end < MAX_LINE:
        head = bytes(buf[:end])
        if head.count(b"\n") == head.count(b"\r\n"):  # CRLF only: the usual request
            lines = head.decode("latin-1").split("\r\n")
            return _parse_lines(lines, end + 4)
    return _parse_head_by_line(buf)


def _parse_lines(lines: list[str], size: int) -> _Head:
    """A complete head, split into lines without their ends (none longer than MAX_LINE)."""
    method, target, version = _request_line(lines[0], lines[0].encode("latin-1"))
    if len(lines) > MAX_HEADERS:
        raise _Reject(431, f"more than {MAX_HEADERS} headers")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not name:
            raise _Reject(400, "bad header line")
        headers[name.lower()] = value.strip()
    return _Head(method, target, version, headers, size)


def _request_line(text: str, raw: bytes) -> tuple[str, str, str]:
    parts = text.split()
    if len(parts) != 3:
        raise _Reject(400, f"bad request line {raw[:100]!r}")
    method, target, version = parts
    if not HTTP_VERSION.fullmatch(version):  # e.g. the rest of a body longer than announced
        raise _Reject(400, f"bad HTTP version {version[:20]!r}")
    if not version.startswith("HTTP/1."):
        raise _Reject(505, f"HTTP version {version[:20]!r} not supported")
    return method, target, version


def _parse_head_by_line(buf: bytearray | bytes) -> _Head | None:
    """``parse_head`` for any line ends, incomplete heads and the limits, line by line."""
    end = buf.find(b"\n")
    if end < 0:
        if len(buf) > MAX_LINE:
            raise _Reject(414, "request line too long")
        return None
    if end + 1 > MAX_LINE:
        raise _Reject(414, "request line too long")
    line = bytes(buf[: end + 1])
    method, target, version = _request_line(line.decode("latin-1"), line)
    headers: dict[str, str] = {}
    start = end + 1
    for _ in range(MAX_HEADERS):
        end = buf.find(b"\n", start)
        if end < 0:
            if len(buf) - start > MAX_LINE:
                raise _Reject(431, "header line too long")
            return None
        if end + 1 - start > MAX_LINE:
            raise _Reject(431, "header line too long")
        raw = buf[start : end + 1]
        start = end + 1
        if raw in (b"\r\n", b"\n"):
            return _Head(method, target, version, headers, start)
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep or not name.strip():
            raise _Reject(400, "bad header line")
        headers[name.strip().lower()] = value.strip()
    raise _Reject(431, f"more than {MAX_HEADERS} headers")


@dataclass
class _Plan:
    """What to do with a parsed request: wait for ``body`` bytes, then ``then``."""

    body: int
    then: Callable[[bytes], None]


class Connection:
    """One TLS connection: handshake, then requests one after the other until close."""

    def __init__(self, loop: HttpsLoop, sock: ssl.SSLSocket, peer: Any) -> None:
        self.loop = loop
        self.owner = loop.owner
        self.sock = sock
        self.peer = peer
        self.buf = bytearray()
        self.out = b""  # answer bytes not yet taken by the TLS layer
        self.handshaken = False
        self.head: _Head | None = None
        self.plan: _Plan | None = None
        self.closing = False  # close once ``out`` is written
        self.linger_until = 0.0  # > 0: reading and dropping what the client still sends
        self.lingered = 0
        self.eof = False
        self.deadline = time.monotonic() + self.owner.options.handshake_timeout
        self.mask = selectors.EVENT_READ
        self.mutate_started = 0.0  # > 0: a POST /mutate being served since then
        # Counted in the in-flight gauge: only a request that waits for the rest of its body
        # (one answered within one loop step is never seen in flight by anyone: 2 gauge
        # updates per admission saved).
        self.waiting = False
        self.continued = False

    # ------------------------------------------------------------------ events

    def on_event(self, mask: int) -> None:
        if not self.handshaken:
            self._handshake()
            if not self.handshaken:
                return
        if self.out:
            self._flush(resume=True)  # goes on with what waited for the answer to leave
            return
        if self.linger_until:
            self._linger()
            return
        self._receive()

    def _handshake(self) -> None:
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want(selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._want(selectors.EVENT_WRITE)
            return
        self.handshaken = True
        self.deadline = time.monotonic() + self.owner.options.idle_timeout
        self._want(selectors.EVENT_READ)

    def _receive(self) -> None:
        """Read what arrived (all of it: decrypted data may wait inside the TLS layer, where
        epoll does not see it), then answer every complete request."""
        sock = self.sock
        if self.mask != selectors.EVENT_READ:  # the TLS layer had asked to wait for writing
            self._want(selectors.EVENT_READ)
        while True:
            try:
                chunk = sock.recv(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLWantWriteError:  # renegotiation-like: wait until writable
                self._want(selectors.EVENT_WRITE)
                break
            if not chunk:
                self.eof = True
                break
            self.buf += chunk
            if not sock.pending():
                break
        if self.buf:
            self.deadline = time.monotonic() + self.owner.options.idle_timeout
        self._serve_buffered()
        if self.eof and not self.loop.closed(self):
            if self.out:
                self.closing = True  # the client half-closed: close once it has its answers
            else:
                self.close()

    def _serve_buffered(self) -> None:
        """Answer complete requests from the buffer until one is incomplete or we close."""
        while self.buf and not self.closing and not self.out:
            if self.plan is None:
                try:
                    head = parse_head(self.buf)
                except _Reject as exc:
                    self._reply(exc.code, {"message": str(exc)}, close=True, linger=True)
                    return
                if head is None:
                    return
                self.head = head
                del self.buf[: head.size]
                self.plan = self._dispatch(head)
                if self.plan is None:
                    return
            plan = self.plan
            if len(self.buf) < plan.body:
                if self.mutate_started and not self.waiting:
                    self.waiting = True
                    self.owner.metrics.in_flight.inc()
                if (
                    self.head is not None
                    and not self.continued
                    and self.head.headers.get("expect", "").lower() == "100-continue"
                ):
                    self.continued = True
                    self._send(b"HTTP/1.1 100 Continue\r\n\r\n")
                return
            if len(self.buf) == plan.body:  # the usual case: no copy
                body, self.buf = bytes(self.buf), bytearray()
            else:
                body = bytes(self.buf[: plan.body])
                del self.buf[: plan.body]
            self.plan = None
            self.head = None
            self.continued = False
            plan.then(body)

    # ------------------------------------------------------------------ requests

    def _dispatch(self, head: _Head) -> _Plan | None:
        """Decide what a request needs; None when it was answered (and the connection ends)."""
        keep = head.version == "HTTP/1.1" and head.headers.get("connection", "").lower() != "close"
        path = head.target.split("?", 1)[0]  # the API server appends ?timeout=10s
        if head.method != "POST":
            self._reply(
                405, {"message": "POST AdmissionReviews to /mutate"}, close=True, linger=True
            )
            return None
        if path != MUTATE_PATH:
            message = {"message": f"no such path {path}; POST AdmissionReviews to /mutate"}
            try:
                length = content_length(head.headers) or 0
            except ValueError:
                length = -1
            if 0 <= length <= self.owner.options.max_body_bytes and keep:
                return _Plan(length, lambda _body: self._reply(404, message, close=False))
            self._reply(404, message, close=True, linger=True)
            return None
        self.mutate_started = time.perf_counter()
        try:
            length = content_length(head.headers)
        except ValueError as exc:
            log.info("bad admission request", extra={"error": str(exc)})
            self._mutate_reply(400, {"message": str(exc)}, close=True, linger=True)
            return None
        if "transfer-encoding" in head.headers or length is None:
            self._mutate_reply(411, {"message": "Content-Length required"}, close=True, linger=True)
            return None
        limit = self.owner.options.max_body_bytes
        if length > limit:  # the body stays unread: this connection is done
            message = {"message": f"body of {length} bytes exceeds {limit}"}
            self._mutate_reply(413, message, close=True, linger=True)
            return None
        return _Plan(length, lambda body: self._admit(head, body, keep))

    def _admit(self, head: _Head, body: bytes, keep: bool) -> None:
        content_type = head.headers.get("content-type", "application/json")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            message = {"message": "Content-Type must be application/json"}
            self._mutate_reply(415, message, close=not keep)
            return
        owner = self.owner
        try:
            result = review(json.loads(body), owner.options.inject)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, BadReviewError, bad UTF-8
            reason = str(exc) if isinstance(exc, BadReviewError) else f"invalid JSON: {exc}"
            log.info("bad admission request", extra={"error": reason[:300]})
            self._mutate_reply(400, {"message": reason[:1000]}, close=not keep)
            return
        owner.record(result)
        self._mutate_reply(200, result.response, close=not keep)

    def _mutate_reply(self, code: int, payload: Any, *, close: bool, linger: bool = False) -> None:
        """Answer a POST /mutate; counted before the answer leaves, so a client that has its
        answer sees it counted."""
        self._count_mutate(code)
        self._reply(code, payload, close=close, linger=linger)

    def _count_mutate(self, code: int) -> None:
        if self.mutate_started:
            metrics = self.owner.metrics
            if self.waiting:
                self.waiting = False
                metrics.in_flight.dec()
            metrics.request(code, time.perf_counter() - self.mutate_started)
            self.mutate_started = 0.0

    def _reply(self, code: int, payload: Any, *, close: bool, linger: bool = False) -> None:
        """Status, headers and JSON body in one TLS write; ``Connection: close`` when ending."""
        body = encode_review(payload)
        close = close or self.loop.draining  # shutting down: last answer here
        head = (
            f"HTTP/1.1 {code} {_REASONS.get(code, '')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
        )
        if close:
            self.closing = True
            if linger:
                self.linger_until = time.monotonic() + LINGER_SECONDS
        self._send(head.encode("latin-1") + body)

    # ------------------------------------------------------------------ writing, closing

    def _send(self, data: bytes) -> None:
        self.out += data
        self._flush()

    def _flush(self, *, resume: bool = False) -> None:
        """Write what the TLS layer takes; ``resume``: called from the loop after waiting,
        so go on with pipelined requests (not when called while answering one of them)."""
        try:
            while self.out:
                sent = self.sock.send(self.out)
                self.out = self.out[sent:]
        except ssl.SSLWantWriteError:
            self._want(selectors.EVENT_WRITE)
            return
        except ssl.SSLWantReadError:
            self._want(selectors.EVENT_READ)
            return
        if self.closing:
            if self.linger_until:
                self._linger()
            else:
                self.close()
            return
        self._want(selectors.EVENT_READ)
        if resume and self.buf:  # pipelined requests waited for this answer to leave
            self._serve_buffered()

    def _linger(self) -> None:
        """Read what the client is still sending before closing, so it sees our answer (e.g.
        413) instead of a connection reset; bounded in bytes and time."""
        self._want(selectors.EVENT_READ)
        while True:
            try:
                chunk = self.sock.recv(READ_SIZE)
            except _WANT:
                break
            if not chunk:
                self.close()
                return
            self.lingered += len(chunk)
            if self.lingered >= LINGER_BYTES:
                self.close()
                return
        if time.monotonic() >= self.linger_until:
            self.close()

    def _want(self, mask: int) -> None:
        if mask != self.mask and not self.loop.closed(self):
            self.mask = mask
            self.loop.selector.modify(self.sock, mask, self)

    def busy(self) -> bool:
        """A request begun or an answer not yet written: a drain waits for it."""
        return bool(self.buf or self.out or self.plan is not None or self.linger_until)

    def expire(self, now: float) -> None:
        """Enforce the handshake, idle, body and linger deadlines."""
        if self.linger_until:
            if now >= self.linger_until:
                self.close()
            return
        if now < self.deadline:
            return
        if self.plan is not None and not self.out and not self.closing:  # a stalled body
            message = {"message": "the body did not arrive within the idle timeout"}
            if self.mutate_started:
                self._mutate_reply(408, message, close=True)
            else:
                self._reply(408, message, close=True)
            if not self.loop.closed(self):
                self.close()
            return
        self.close()

    def close(self) -> None:
        if self.mutate_started:  # the client went away mid-request
            self._count_mutate(400)
        self.loop.forget(self)
        with contextlib.suppress(OSError):
            self.sock.close()


class AcceptBalance(Protocol):
    """How workers sharing one listening socket take turns accepting (see workers.py)."""

    tries: int
    wait: float

    def my_turn(self) -> bool: ...

    def set_open(self, count: int) -> None: ...


class _Context(Protocol):
    @property
    def context(self) -> ssl.SSLContext: ...


class LoopOwner(Protocol):
    """What the loop needs from its server."""

    options: ServerOptions
    metrics: WebhookMetrics
    tls: _Context
    balance: AcceptBalance | None

    def record(self, result: ReviewResult) -> None: ...


class HttpsLoop:
    """Accepts on the (non-blocking) listening socket and serves every connection."""

    def __init__(self, owner: LoopOwner, listener: socket.socket) -> None:
        self.owner = owner
        self.listener = listener
        listener.setblocking(False)
        self.server_address = listener.getsockname()
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.connections: dict[int, Connection] = {}  # by id()
        self.draining = False
        self.drained = False  # draining, and no connection left
        self._listening = True
        self._stop = False
        self._stopped = False
        self._accept_paused_until = 0.0
        self._turn_tries = 0
        self._next_sweep = time.monotonic() + SWEEP_SECONDS

    # ------------------------------------------------------------------ control (any thread)

    def drain(self) -> None:
        """Stop accepting, close idle connections, let requests in flight finish."""
        self.draining = True
        self._wake()

    def stop(self) -> None:
        """End the loop; open connections are closed."""
        self._stop = True
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    # ------------------------------------------------------------------ the loop

    def serve_forever(self) -> None:
        select = self.selector.select
        try:
            while not self._stop:
                timeout = SWEEP_SECONDS
                if self._accept_paused_until:
                    timeout = max(0.0, self._accept_paused_until - time.monotonic())
                for key, mask in select(timeout):
                    data = key.data
                    if data is None:
                        self._accept_guarded()
                    elif data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    else:
                        self._serve(data, mask)
                if self._accept_paused_until and time.monotonic() >= self._accept_paused_until:
                    self._accept_paused_until = 0.0
                    self._resume_accept()
                if self.draining and self._listening:
                    self._close_listener()
                if self.draining:
                    for conn in list(self.connections.values()):
                        if not conn.busy():
                            conn.close()
                    self.drained = not self.connections
                now = time.monotonic()
                if now >= self._next_sweep:
                    self._next_sweep = now + SWEEP_SECONDS
                    for conn in list(self.connections.values()):
                        self._guard(conn, conn.expire, now)
        finally:
            for conn in list(self.connections.values()):
                conn.close()
            if self._listening:
                self._close_listener()
            self.selector.close()
            self._wake_r.close()
            self._wake_w.close()
            self._stopped = True

    def _serve(self, conn: Connection, mask: int) -> None:
        self._guard(conn, conn.on_event, mask)

    def _guard(self, conn: Connection, step: Callable[..., None], *args: Any) -> None:
        try:
            step(*args)
        except (OSError, ssl.SSLError) as exc:  # handshake failures, resets
            log.debug("connection ended", extra={"peer": str(conn.peer), "error": str(exc)})
            conn.close()
        except Exception:  # a bug: one structured line (with its traceback), not stderr noise
            log.exception("connection failed", extra={"peer": str(conn.peer)})
            conn.close()

    def _accept_guarded(self) -> None:
        try:
            self._accept()
        except Exception:  # a bug: log it and keep the loop (and every connection) alive
            log.exception("accept failed")

    def _accept(self) -> None:
        owner = self.owner
        balance = owner.balance
        for _ in range(16):  # a few per wake-up, then serve the others
            if balance is not None and self._turn_tries < balance.tries and not balance.my_turn():
                self._turn_tries += 1
                self._pause_accept(balance.wait)
                return
            try:
                raw, peer = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.error("accept failed", extra={"error": str(exc)})
                    self._pause_accept(0.1)
                return
            self._turn_tries = 0
            if len(self.connections) >= owner.options.max_connections:
                owner.metrics.refused_connections.inc()
                raw.close()  # over --max-connections: refuse before spending a handshake on it
                continue
            try:
                raw.setblocking(False)
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                tls = owner.tls.context.wrap_socket(
                    raw, server_side=True, do_handshake_on_connect=False
                )
            except OSError:
                raw.close()
                continue
            conn = Connection(self, tls, peer)
            self.connections[id(conn)] = conn
            self.selector.register(tls, selectors.EVENT_READ, conn)
            self._publish()

    def _pause_accept(self, seconds: float) -> None:
        if self._listening and not self._accept_paused_until:
            self.selector.unregister(self.listener)
            self._accept_paused_until = time.monotonic() + seconds

    def _resume_accept(self) -> None:
        if self._listening:
            self.selector.register(self.listener, selectors.EVENT_READ, None)

    def _close_listener(self) -> None:
        self._listening = False
        if not self._accept_paused_until:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(self.listener)
        self._accept_paused_until = 0.0
        with contextlib.suppress(OSError):
            self.listener.close()

    def closed(self, conn: Connection) -> bool:
        return id(conn) not in self.connections

    def forget(self, conn: Connection) -> None:
        if self.connections.pop(id(conn), None) is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.selector.unregister(conn.sock)
            self._publish()

    def _publish(self) -> None:
        if self.owner.balance is not None:
            self.owner.balance.set_open(len(self.connections))

    @property
    def stopped(self) -> bool:
        return self._stopped

"""The node daemon's seccomp listener: answers sysinfo(2) for wrapped containers.

runc connects to the socket named by the spec's ``listenerPath`` once per
container, sends the container's state as JSON with the notify fd attached
(SCM_RIGHTS; the JSON's ``fds`` names them, we want ``seccompFd``) and hangs up.
From then on the fd reports each sysinfo(2) call of the container's processes;
we answer with the caller's cgroup figures.  Anything else that reaches us is
let through.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import select
import selectors
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kube_lxcfs.runtime import seccomp
from kube_lxcfs.views.sysinfo import SysinfoValues, pack_sysinfo

log = logging.getLogger(__name__)

MAX_STATE_BYTES = 1 << 20
MAX_FDS = 16

SysinfoSource = Callable[[int], SysinfoValues]
"""pid → what sysinfo(2) must report to it."""


@dataclass
class ListenerStats:
    """Counters for logs and metrics."""

    containers: int = 0
    answered: int = 0
    passed_through: int = 0
    failed: int = 0
    vanished: int = 0


@dataclass
class _Container:
    fd: int
    container_id: str
    pid: int


@dataclass
class SeccompListener:
    """Accepts containers' notify fds on ``path`` and serves their notifications."""

    path: str
    source: SysinfoSource
    stats: ListenerStats = field(default_factory=ListenerStats)

    def __post_init__(self) -> None:
        self._sysinfo_nr = seccomp.sysinfo_number()
        self._selector = selectors.DefaultSelector()
        self._containers: dict[int, _Container] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._wake_r, self._wake_w = os.pipe()

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Bind the socket (replacing a stale one) and serve in a daemon thread."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.path)
        os.chmod(self.path, 0o600)
        sock.listen(64)
        sock.setblocking(False)
        self._sock = sock
        self._selector.register(sock, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._loop, name="seccomp-listener", daemon=True)
        self._thread.start()
        log.info("seccomp listener on %s", self.path)

    def close(self) -> None:
        """Stop serving; held notify fds are closed (their callers then get ENOSYS)."""
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        for container in list(self._containers.values()):
            self._forget(container)
        if self._sock is not None:
            self._sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    @property
    def watched(self) -> int:
        """How many containers' notify fds are held."""
        return len(self._containers)

    # --- the loop -------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            for key, events in self._selector.select(timeout=1.0):
                if key.data == "wake":
                    return
                try:
                    if key.data == "accept":
                        self._accept()
                    else:
                        self._serve(key.data, events)
                except Exception:  # a bug here must not leave every container's call hanging
                    log.exception("seccomp listener: serving one event failed")

    def _accept(self) -> None:
        assert self._sock is not None
        try:
            conn, _ = self._sock.accept()
        except BlockingIOError:
            return
        with conn:
            conn.settimeout(5)
            try:
                state, fds = _read_state(conn)
            except (OSError, ValueError) as exc:
                log.warning("seccomp listener: bad message from runtime: %s", exc)
                return
        if not state and not fds:
            return  # a liveness probe (the wrapper checks we answer before using us)
        is_map = isinstance(state, dict)
        inner = state.get("state") if is_map else None
        names = state.get("fds") if is_map else None
        if not (is_map and isinstance(inner or {}, dict) and isinstance(names or [], list)):
            for fd in fds:
                os.close(fd)
            log.warning("seccomp listener: bad message from runtime: not an OCI state")
            return
        inner, names = inner or {}, names or []
        container_id = str(inner.get("id", "?"))
        try:
            pid = int(state.get("pid") or inner.get("pid") or 0)
        except (TypeError, ValueError):
            pid = 0  # only named in logs
        notify_fd = None
        for name, fd in zip(names, fds, strict=False):
            if name == "seccompFd" and notify_fd is None:
                notify_fd = fd
            else:
                os.close(fd)
        for fd in fds[len(names) :]:
            os.close(fd)
        if notify_fd is None:
            log.warning("seccomp listener: %s sent no seccompFd (%s)", container_id, names)
            return
        container = _Container(notify_fd, container_id, pid)
        self._containers[notify_fd] = container
        self._selector.register(notify_fd, selectors.EVENT_READ, container)
        self.stats.containers += 1
        log.info("seccomp listener: serving sysinfo(2) of container %s", container_id)

    def _serve(self, container: _Container, events: int) -> None:
        try:
            notification = seccomp.receive(container.fd)
        except OSError as exc:
            # The filter's last user exited: the fd hangs up for good.
            if exc.errno not in (errno.ENOENT, errno.EBADF, errno.EINVAL):
                log.warning("seccomp listener: %s: %s", container.container_id, exc)
            self._forget(container)
            return
        if notification is None:
            self.stats.vanished += 1
            if events & selectors.EVENT_READ and self._hung_up(container):
                self._forget(container)
            return
        self.answer(container.fd, notification)

    def answer(self, fd: int, notification: seccomp.Notification) -> None:
        """Answer one notification: sysinfo from the caller's cgroup, anything else through."""
        if notification.syscall != self._sysinfo_nr:
            seccomp.let_through(fd, notification.id)
            self.stats.passed_through += 1
            return
        try:
            data = pack_sysinfo(self.source(notification.pid))
            written = seccomp.write_memory(
                fd, notification.id, notification.pid, notification.args[0], data
            )
        except OSError as exc:
            code = errno.EFAULT if exc.errno in (errno.EFAULT, errno.EIO) else 0
            self.stats.failed += 1
            if code:
                seccomp.reply(fd, notification.id, error=code)
            else:
                log.warning("sysinfo for pid %d: %s; letting it through", notification.pid, exc)
                seccomp.let_through(fd, notification.id)
            return
        except Exception as exc:
            # Never leave a caller hanging: the host's answer beats none.
            log.warning("sysinfo for pid %d: %s; letting it through", notification.pid, exc)
            self.stats.failed += 1
            seccomp.let_through(fd, notification.id)
            return
        if not written:
            self.stats.vanished += 1
            return
        seccomp.reply(fd, notification.id, 0)
        self.stats.answered += 1

    @staticmethod
    def _hung_up(container: _Container) -> bool:
        poller = select.poll()
        poller.register(container.fd, select.POLLIN)
        return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in poller.poll(0))

    def _forget(self, container: _Container) -> None:
        self._containers.pop(container.fd, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(container.fd)
        with contextlib.suppress(OSError):
            os.close(container.fd)
        log.info("seccomp listener: container %s is gone", container.container_id)


def _read_state(conn: socket.socket) -> tuple[dict, list[int]]:
    """The JSON state and the fds runc sent, reading until it hangs up."""
    chunks: list[bytes] = []
    fds: list[int] = []
    size = 0
    while True:
        data, got, _flags, _addr = socket.recv_fds(conn, 65536, MAX_FDS)
        fds.extend(got)
        if not data:
            break
        chunks.append(data)
        size += len(data)
        if size > MAX_STATE_BYTES:
            for fd in fds:
                os.close(fd)
            raise ValueError("state message too large")
        with contextlib.suppress(ValueError):
            state = json.loads(b"".join(chunks))
            return state, fds
    try:
        return json.loads(b"".join(chunks) or b"{}"), fds
    except ValueError:
        for fd in fds:
            os.close(fd)
        raise

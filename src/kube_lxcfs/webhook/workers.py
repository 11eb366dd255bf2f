"""``--workers N``: N processes answering admissions on one port, one parent supervising them.

Python serves on one core per process, so throughput on more cores needs more processes. The
supervisor binds the HTTPS port once and hands that one listening socket to every worker (a
fresh interpreter started with the socket inherited, not a fork of a process that runs
threads); the kernel gives each new connection to whichever worker accepts first, so a busy
worker takes fewer. A replacement inherits the same socket, so the port never closes while a
worker restarts (with SO_REUSEPORT, connections queued on a dying worker's socket are reset).

The supervisor serves /healthz, /readyz and /metrics itself: /metrics sums the workers'
memory-mapped metric files (prometheus-client's multiprocess mode), /readyz is true while
workers are serving and the supervisor is not draining. Each worker watches the certificate
files itself, so a reload reaches every worker. SIGTERM: /readyz fails, --shutdown-delay
passes, then every worker drains its in-flight requests (--shutdown-grace) and exits.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, multiprocess

from kube_lxcfs import linux
from kube_lxcfs.jsonlog import configure_stderr
from kube_lxcfs.webhook.metrics import MULTIPROC_ENV, certificate_expiry
from kube_lxcfs.webhook.options import ServerOptions

log = logging.getLogger("kube_lxcfs.webhook")

MAX_DEFAULT_WORKERS = 4
"""The default never starts more workers than this, however many CPUs the node has."""
RESTART_BACKOFF = (0.0, 0.5, 1.0, 2.0, 5.0)
"""Seconds before restarting a worker that crashed 1, 2, 3... times in a row (quickly)."""
STABLE_SECONDS = 10.0
"""A worker that served this long resets its slot's crash count."""
READY_BYTE = b"R"


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: its affinity, lowered by a cgroup CPU quota (rounded up)."""
    cpus = len(os.sched_getaffinity(0))
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def default_workers() -> int:
    return min(usable_cpus(), MAX_DEFAULT_WORKERS)


def _cgroup_quota(root: Path) -> float | None:
    """The CPU quota in CPUs of this process's cgroup (v2 ``cpu.max`` or v1 CFS), if any."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if controllers == "":
            candidate = root / rel / "cpu.max"
            with contextlib.suppress(OSError, ValueError):
                quota, period = candidate.read_text().split()
                if quota != "max":
                    return int(quota) / int(period)
        elif "cpu" in controllers.split(","):
            for mount in ("cpu,cpuacct", "cpu"):
                base = root / mount / rel
                with contextlib.suppress(OSError, ValueError):
                    quota_us = int((base / "cpu.cfs_quota_us").read_text())
                    period_us = int((base / "cpu.cfs_period_us").read_text())
                    if quota_us > 0:
                        return quota_us / period_us
                    return None
    return None


class SupervisorMetrics:
    """The supervisor's /metrics: its workers' files summed, plus its own worker counts."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(self.registry, path=str(directory))
        self.workers = Gauge(
            "kube_lxcfs_webhook_workers",
            "Worker processes serving now.",
            registry=self.registry,
        )
        self.cert_expiry = certificate_expiry(self.registry)
        self.restarts = Counter(
            "kube_lxcfs_webhook_worker_restarts",
            "Worker processes that ended unexpectedly and were replaced.",
            registry=self.registry,
        )

    def worker_gone(self, pid: int) -> None:
        """Forget a dead worker's live gauges (its counters keep counting in the sums)."""
        multiprocess.mark_process_dead(pid, str(self.directory))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


SLOT_GONE = 1 << 62
"""The open-connection count written into the slot of a worker that ended."""
TURN_WAIT = 0.001
TURN_TRIES = 20
"""A worker with more connections than another waits at most this long (20 x 1 ms) for it to
accept a new connection before accepting it itself (the other may be busy or stopped)."""


class ConnectionSlots:
    """Every worker's count of open connections, in one small shared file (a slot each).

    With one shared listening socket the worker that happens to be on a CPU when connections
    arrive accepts them all; the API server's few long-lived keep-alive connections would then
    load one worker and leave the others idle. So a worker that holds more connections than
    another waits a moment before accepting, and the other takes the connection.
    """

    def __init__(self, path: Path, count: int, slot: int | None = None) -> None:
        import mmap

        if slot is None:
            path.write_bytes(bytes(8 * count))
        self._file = path.open("r+b")
        self._map = mmap.mmap(self._file.fileno(), 8 * count)
        self._counts = memoryview(self._map).cast("q")
        self.slot = slot

    def set_open(self, count: int) -> None:
        assert self.slot is not None
        self._counts[self.slot] = count

    def set_gone(self, slot: int) -> None:
        self._counts[slot] = SLOT_GONE

    tries = TURN_TRIES
    wait = TURN_WAIT

    def my_turn(self) -> bool:
        """No other worker has fewer open connections (the accepting loop otherwise waits
        ``wait`` seconds, at most ``tries`` times in a row, before accepting anyway)."""
        assert self.slot is not None
        counts, mine = self._counts, self.slot
        return counts[mine] <= min(counts[i] for i in range(len(counts)) if i != mine)


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process reads on its stdin (pickled)."""

    options: ServerOptions
    listen_fd: int
    ready_fd: int
    log_level: str
    log_format: str
    slot: int
    workers: int
    slots_file: Path
    supervisor_pid: int


@dataclass
class _Worker:
    slot: int
    proc: subprocess.Popen[bytes]
    ready_read: int
    started: float
    serving: bool = False


class Supervisor:
    """Starts, watches and stops the worker processes; serves health and summed metrics."""

    def __init__(
        self, options: ServerOptions, workers: int, *, log_level: str, log_format: str
    ) -> None:
        from kube_lxcfs.webhook.server import HealthServer, bind_listener
        from kube_lxcfs.webhook.tls import ReloadingContext

        self.options = options
        self.count = workers
        self._log = (log_level, log_format)
        self.draining = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: dict[int, _Worker] = {}  # by slot
        self._crashes = [0] * workers
        self._all_started = False
        self._directory = _metrics_directory()
        self.metrics = SupervisorMetrics(self._directory)
        self._slots_file = self._directory / "connections.slots"
        self._slots = ConnectionSlots(self._slots_file, workers) if workers > 1 else None
        self._tls = ReloadingContext(
            options.cert_file, options.key_file, options.tls_min_version, self._on_tls_load
        )  # the workers load their own; this one checks the files and reports the expiry
        try:
            self._listener = bind_listener(options.address, options.port)
            self._health = HealthServer(self, (options.address, options.health_port))
        except BaseException:
            self.metrics.remove()
            raise
        self._selector = selectors.DefaultSelector()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def health_port(self) -> int:
        return int(self._health.server_address[1])

    @property
    def ready(self) -> bool:
        """Every worker came up once, one serves now, and no SIGTERM yet."""
        if self.draining.is_set() or not self._all_started:
            return False
        with self._lock:
            return any(w.serving and w.proc.poll() is None for w in self._workers.values())

    def _on_tls_load(self, ok: bool, not_after: float | None) -> None:
        if ok and not_after is not None:
            self.metrics.cert_expiry.set(not_after)

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.proc.pid for w in self._workers.values()]

    # ---------------------------------------------------------------- workers

    def _spawn(self, slot: int) -> None:
        ready_read, ready_write = os.pipe()
        env = dict(os.environ)
        env[MULTIPROC_ENV] = str(self._directory)
        spec = WorkerSpec(
            options=replace(self.options, shutdown_delay=0.0),  # the supervisor waited already
            listen_fd=self._listener.fileno(),
            ready_fd=ready_write,
            log_level=self._log[0],
            log_format=self._log[1],
            slot=slot,
            workers=self.count,
            slots_file=self._slots_file,
            supervisor_pid=os.getpid(),
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "kube_lxcfs.webhook.workers"],
            stdin=subprocess.PIPE,
            pass_fds=(self._listener.fileno(), ready_write),
            env=env,
        )
        os.close(ready_write)
        assert proc.stdin is not None
        proc.stdin.write(pickle.dumps(spec))
        proc.stdin.close()
        worker = _Worker(slot, proc, ready_read, time.monotonic())
        with self._lock:
            self._workers[slot] = worker
        self._selector.register(ready_read, selectors.EVENT_READ, worker)

    def _on_ready_pipe(self, worker: _Worker) -> None:
        data = b""
        with contextlib.suppress(OSError):
            data = os.read(worker.ready_read, 64)
        if data.startswith(READY_BYTE):
            worker.serving = True
            self._update_gauge()
        if not data:  # the worker exited: its end closed
            self._selector.unregister(worker.ready_read)
            os.close(worker.ready_read)
            worker.ready_read = -1

    def _update_gauge(self) -> None:
        with self._lock:
            self.metrics.workers.set(sum(w.serving for w in self._workers.values()))

    def _reap(self) -> None:
        """Replace the workers that ended (unless stopping)."""
        with self._lock:
            ended = [w for w in self._workers.values() if w.proc.poll() is not None]
        for worker in ended:
            with self._lock:
                del self._workers[worker.slot]
            if worker.ready_read >= 0:
                self._selector.unregister(worker.ready_read)
                os.close(worker.ready_read)
            self.metrics.worker_gone(worker.proc.pid)
            if self._slots is not None:
                self._slots.set_gone(worker.slot)
            self._update_gauge()
            if self.draining.is_set():
                continue
            if time.monotonic() - worker.started > STABLE_SECONDS:
                self._crashes[worker.slot] = 0
            crashes = self._crashes[worker.slot]
            self._crashes[worker.slot] += 1
            self.metrics.restarts.inc()
            log.error(
                "worker ended, starting another",
                extra={"pid": worker.proc.pid, "exit": worker.proc.returncode, "slot": worker.slot},
            )
            delay = RESTART_BACKOFF[min(crashes, len(RESTART_BACKOFF) - 1)]
            if self._stop.wait(delay):
                return
            self._spawn(worker.slot)

    # ---------------------------------------------------------------- run and stop

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT, then drain every worker; the exit code."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        health = threading.Thread(
            target=self._health.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        try:
            for slot in range(self.count):
                self._spawn(slot)
            health.start()
            self._tls.watch(self.options.tls_reload_interval, self._stop)
            announced = False
            while not self._stop.is_set():
                for key, _ in self._selector.select(timeout=0.2):
                    self._on_ready_pipe(key.data)
                self._reap()
                if not announced and self._count_serving() == self.count:
                    announced = self._all_started = True
                    self._announce()
            self._drain()
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
            self._health.shutdown()
            self._health.server_close()
            self._listener.close()
            self.metrics.remove()
        log.info("stopped")
        return 0

    def _count_serving(self) -> int:
        with self._lock:
            return sum(w.serving for w in self._workers.values())

    def _announce(self) -> None:
        log.info(
            "serving",
            extra={
                "address": self.options.address,
                "port": self.port,
                "health_port": self.health_port,
                "workers": self.count,
                "worker_pids": self.worker_pids(),
                "tls_min_version": self.options.tls_min_version,
                "files": [p.mount_path for p in self.options.inject.paths],
            },
        )

    def _on_signal(self, signum: int, _frame: object) -> None:
        log.info("signal received", extra={"signal": signal.Signals(signum).name})
        self._stop.set()

    def _drain(self) -> None:
        self.draining.set()
        log.info("shutting down", extra={"grace_seconds": self.options.shutdown_grace})
        if self.options.shutdown_delay > 0:
            time.sleep(self.options.shutdown_delay)  # serve on while endpoints are updated
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.options.shutdown_grace + 5.0
        for worker in workers:
            try:
                worker.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker did not stop, killing it", extra={"pid": worker.proc.pid})
                worker.proc.kill()
                worker.proc.wait()
            if worker.ready_read >= 0:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(worker.ready_read)
                os.close(worker.ready_read)


def _metrics_directory() -> Path:
    """A fresh directory for the workers' metric files: in /dev/shm (memory, and writable
    under readOnlyRootFilesystem) when it can be used, else the temporary directory."""
    shm = Path("/dev/shm")
    where = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="kube-lxcfs-webhook-metrics-", dir=where))


MALLOC_ARENAS = 2


def limit_malloc_arenas() -> None:
    """At most two glibc malloc arenas instead of up to 8 per CPU, so memory freed by one
    connection thread is reused by the others rather than kept per thread."""
    with contextlib.suppress(OSError, AttributeError):
        linux.set_malloc_arena_max(MALLOC_ARENAS)


def _die_with_parent() -> None:
    """Ask the kernel for SIGTERM when the supervisor dies (no orphaned workers)."""
    with contextlib.suppress(OSError):
        linux.set_parent_death_signal(signal.SIGTERM)


def worker_main() -> int:
    """A worker process: read the spec, serve the inherited socket until SIGTERM."""
    spec: WorkerSpec = pickle.loads(sys.stdin.buffer.read())
    _die_with_parent()
    limit_malloc_arenas()
    if os.getppid() != spec.supervisor_pid:  # (the supervisor may be PID 1 in a container)
        return 1  # the supervisor died before we armed the signal
    from kube_lxcfs.webhook.server import WebhookServer, serve_until_signalled

    configure_stderr(spec.log_level, spec.log_format)
    listener = socket.socket(fileno=spec.listen_fd)
    balance = None
    if spec.workers > 1:
        balance = ConnectionSlots(spec.slots_file, spec.workers, spec.slot)
        balance.set_open(0)
    server = WebhookServer(spec.options, listener=listener, worker=True, balance=balance)

    def announce(_server: WebhookServer) -> None:
        os.write(spec.ready_fd, READY_BYTE)

    return serve_until_signalled(server, on_started=announce)


if __name__ == "__main__":
    sys.exit(worker_main())

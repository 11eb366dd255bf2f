"""The node agent's /metrics, /healthz and /readyz (``kube-lxcfs fs --metrics-address``).

The FUSE loop only increments counters (:meth:`AgentMetrics.observe`, the tree's
``observer``); everything else is read when Prometheus scrapes, in the HTTP server's
thread: the loop's in-flight reads, slow cgroups, the sysinfo(2) listener's and the
repair's counters.  Exposition by ``prometheus-client`` (its process collector gives
RSS, CPU, fds, threads and start time).

Health comes from a watchdog thread that reads ``proc/meminfo`` through the mount, as
the agent itself, every ``deadline / 4`` (at most 1 s): the read is answered by the
request loop like any container's, so a hung loop (a stuck render, a stopped process)
leaves the watchdog blocked and its last answer ages.

* ``/healthz`` is red when the last self-read answered longer ago than ``deadline``;
* ``/readyz`` is red when the mount is not up (not ours in mountinfo) or the last
  self-read was not the agent's own cgroup rendered (a host-file answer or EIO).
"""

from __future__ import annotations

import bisect
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Info,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from kube_lxcfs import __version__
from kube_lxcfs.errors import KubeLxcfsError

log = logging.getLogger(__name__)

HEALTH_DEADLINE = 10.0
"""Default seconds after which an unanswered self-read makes /healthz red."""
HEALTH_FILE = "proc/meminfo"
"""What the watchdog reads through the mount: a cgroup-scoped render of its own cgroup."""
RENDER_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
"""Render seconds: a cached read costs ~0, a render ~0.3-2 ms, a slow cgroup 30 ms and up."""
READY_OUTCOMES = frozenset({"rendered", "cache_hit"})


class AddressError(KubeLxcfsError, ValueError):
    """``--metrics-address`` is not HOST:PORT."""


def parse_address(text: str) -> tuple[str, int]:
    """``"0.0.0.0:9110"``, ``"[::1]:9110"``, ``":9110"`` → (host, port).

    An empty host (``:9110``) means every address of both families: see :func:`listen_family`.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise AddressError(
            f"expected HOST:PORT with a port 0-65535 (0: any free port, logged), got {text!r}"
        )
    if host.startswith("[") != host.endswith("]") or (":" in host and not host.startswith("[")):
        raise AddressError(f"write an IPv6 address in brackets, e.g. [::1]:{port}, got {text!r}")
    return host.strip("[]"), int(port)


def listen_family(host: str) -> tuple[socket.AddressFamily, str]:
    """The socket family and bind address for ``host``.

    An IPv6 address listens on IPv6; ``""`` and ``"::"`` on every address of both families
    (one dual-stack socket, so that the kubelet's probe reaches the pod on an IPv6-only or a
    dual-stack cluster too), or on every IPv4 address where the kernel has no IPv6.
    """
    if host in ("", "::"):
        if socket.has_ipv6 and _ipv6_works():
            return socket.AF_INET6, "::"
        return socket.AF_INET, "0.0.0.0"
    return (socket.AF_INET6 if ":" in host else socket.AF_INET), host


def _ipv6_works() -> bool:
    """Whether an IPv6 socket can be made (not with ``ipv6.disable=1`` on the kernel line)."""
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
    except OSError:
        return False
    return True


@dataclass
class Watchdog:
    """Self-reads through the mount, off the loop; remembers when the last one answered."""

    mountpoint: Path
    deadline: float = HEALTH_DEADLINE
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.started: float | None = None
        self.last_answer: float | None = None
        self.last_error: str | None = None
        self.tid = 0
        """The watchdog thread's id: the pid the FUSE loop sees for its reads."""
        self.last_outcome: str | None = None
        """What the tree answered the watchdog's last read (set by :class:`AgentMetrics`)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start reading (once the mount is live)."""
        if self._thread is not None:
            return
        self.started = self.clock()
        self._thread = threading.Thread(target=self._run, name="health-watchdog", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop after the current read (a blocked read ends with the mount)."""
        self._stop.set()

    def _run(self) -> None:
        self.tid = threading.get_native_id()
        interval = min(1.0, self.deadline / 4)
        path = self.mountpoint / HEALTH_FILE
        while not self._stop.is_set():
            try:
                with open(path, "rb", buffering=0) as f:
                    f.read(1 << 16)
                self.last_error = None
            except OSError as exc:
                self.last_error = f"{path}: {exc.strerror or exc}"
            self.last_answer = self.clock()
            self._stop.wait(interval)

    def healthy(self) -> tuple[bool, str]:
        """Whether the request loop answered within the deadline, and why not."""
        now = self.clock()
        if self.started is None:
            return True, "starting: the mount is not live yet"
        since = self.last_answer if self.last_answer is not None else self.started
        age = now - since
        if age > self.deadline:
            return False, (
                f"the request loop has not answered a read of {HEALTH_FILE} for {age:.1f} s "
                f"(deadline {self.deadline:g} s)"
            )
        return True, f"the request loop answered {age:.1f} s ago"


class AgentMetrics:
    """The agent's metrics registry and the tree's read observer."""

    def __init__(self, watchdog: Watchdog | None = None) -> None:
        self.watchdog = watchdog
        disable_created_metrics()  # no *_created series: nothing reads them, they double the text
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        Info("kube_lxcfs_build", "The agent's build.", registry=r).info({"version": __version__})
        ProcessCollector(registry=r)
        self.health_gauge = Gauge(
            "kube_lxcfs_loop_healthy",
            "1 while the request loop answers the agent's self-reads within the deadline.",
            registry=r,
        )
        self.health_gauge.set_function(lambda: float(self.healthy()[0]))
        self._extra = _ShellCollector()
        r.register(self._extra)
        # Plain ints on the loop, turned into metric families at scrape time: a
        # prometheus_client Counter.inc costs ~3 us (a lock, checks), this ~0.2 us. Only
        # the loop thread writes; the scrape thread reads copies (dict.copy holds the GIL).
        self._reads: dict[tuple[str, str], int] = {}
        self._hosts: dict[tuple[str, str], int] = {}
        self._renders: dict[str, list[float]] = {}
        """file → a count per bucket of :data:`RENDER_BUCKETS`, one for +Inf, then the sum."""
        r.register(_ReadCollector(self))

    # --- wiring (before serving) -------------------------------------------------------

    def watch_operations(self, in_flight: Callable[[], int]) -> None:
        """FUSE reads being served now (read at scrape time)."""
        self._extra.in_flight = in_flight

    def watch_slow_cgroups(self, slow_now: Callable[[], int]) -> None:
        """Cgroups answered from their last render now (read at scrape time)."""
        self._extra.slow_now = slow_now

    def watch_listener(self, stats: Any) -> None:
        """The sysinfo(2) listener's counters (``answered``, ``failed``)."""
        self._extra.listener = stats

    def watch_repair(self, repair: Any) -> None:
        """The repair's counters (:class:`kube_lxcfs.repair.engine.RepairMetrics`)."""
        self._extra.repair = repair

    # --- on the FUSE loop: cheap -------------------------------------------------------

    def observe(self, file: str, outcome: str, cause: str | None, seconds: float, pid: int) -> None:
        """One read (the tree's ``observer``): integer increments only."""
        reads = self._reads
        key = (file, outcome)
        reads[key] = reads.get(key, 0) + 1
        if cause is not None:
            hosts = self._hosts
            hkey = (file, cause)
            hosts[hkey] = hosts.get(hkey, 0) + 1
        if seconds:
            hist = self._renders.get(file)
            if hist is None:
                hist = self._renders[file] = [0] * (len(RENDER_BUCKETS) + 1) + [0.0]
            hist[bisect.bisect_left(RENDER_BUCKETS, seconds)] += 1
            hist[-1] += seconds
        watchdog = self.watchdog
        if watchdog is not None and pid == watchdog.tid:
            # the root cgroup's figures are the agent's own when it runs there
            ok = cause is None or cause == "root_cgroup"
            answer = "rendered" if ok and outcome != "eio" else f"{outcome} ({cause})"
            watchdog.last_outcome = answer

    # --- health ------------------------------------------------------------------------

    def healthy(self) -> tuple[bool, str]:
        """/healthz: the request loop answers."""
        if self.watchdog is None:
            return True, "no watchdog"
        return self.watchdog.healthy()

    def ready(self, mounted: Callable[[], bool]) -> tuple[bool, str]:
        """/readyz: the mount is up and renders the agent's own cgroup."""
        if not mounted():
            return False, "the filesystem is not mounted"
        ok, why = self.healthy()
        if not ok:
            return False, why
        w = self.watchdog
        if w is None:
            return True, "mounted"
        if w.last_error is not None:
            return False, w.last_error
        if w.last_outcome is None:
            return False, f"no self-read of {HEALTH_FILE} answered yet"
        if w.last_outcome not in READY_OUTCOMES:
            return False, f"{HEALTH_FILE} for the agent's own cgroup: {w.last_outcome}"
        return True, f"{HEALTH_FILE} rendered for the agent's own cgroup"

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)


class _ReadCollector(Collector):
    """The loop's read counts as Prometheus families (at scrape time)."""

    def __init__(self, metrics: AgentMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[Any]:
        m = self.metrics
        reads = CounterMetricFamily(
            "kube_lxcfs_reads",
            "Reads of virtual files, by file (the table's path) and outcome "
            "(rendered, cache_hit, host, eio).",
            labels=["file", "outcome"],
        )
        for (file, outcome), n in sorted(m._reads.copy().items()):
            reads.add_metric([file, outcome], n)
        yield reads
        hosts = CounterMetricFamily(
            "kube_lxcfs_host_answers",
            "Reads of a container-scoped file answered with the host's file (or EIO with "
            "--on-render-error=eio), by file and cause (root_cgroup, vanished_process, "
            "cgroup_error, slow_cgroup, bug).",
            labels=["file", "cause"],
        )
        for (file, cause), n in sorted(m._hosts.copy().items()):
            hosts.add_metric([file, cause], n)
        yield hosts
        renders = HistogramMetricFamily(
            "kube_lxcfs_render_duration_seconds",
            "Time to render a file for a reader (reads that rendered, not cache hits).",
            labels=["file"],
        )
        for file, hist in sorted(m._renders.copy().items()):
            counts = hist[:]
            buckets, total = [], 0
            for bound, n in zip([*map(str, RENDER_BUCKETS), "+Inf"], counts[:-1], strict=True):
                total += int(n)
                buckets.append((bound, total))
            renders.add_metric([file], buckets, sum_value=counts[-1])
        yield renders


class _ShellCollector(Collector):
    """Values owned by other parts of the daemon, read at scrape time."""

    def __init__(self) -> None:
        self.in_flight: Callable[[], int] | None = None
        self.slow_now: Callable[[], int] | None = None
        self.listener: Any = None
        self.repair: Any = None

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[Any]:
        if self.in_flight is not None:
            yield GaugeMetricFamily(
                "kube_lxcfs_fuse_requests_in_flight",
                "FUSE reads being rendered now (the loop is single-threaded: 0 or 1; "
                "1 for long means a hung loop).",
                value=self.in_flight(),
            )
        if self.slow_now is not None:
            yield GaugeMetricFamily(
                "kube_lxcfs_slow_cgroups",
                "Cgroups whose reads are answered from their last render while it refreshes.",
                value=self.slow_now(),
            )
        if self.listener is not None:
            sysinfo = CounterMetricFamily(
                "kube_lxcfs_sysinfo_notifications",
                "sysinfo(2) calls of wrapped containers, by result (answered, failed: the "
                "call went through to the host).",
                labels=["result"],
            )
            sysinfo.add_metric(["answered"], self.listener.answered)
            sysinfo.add_metric(["failed"], self.listener.failed)
            yield sysinfo
        if self.repair is not None:
            yield from self.repair.collect()


class _Server(ThreadingHTTPServer):
    """The HTTP server on a socket of ``family``; ``::`` also takes IPv4 (dual stack)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, family: socket.AddressFamily):
        self.address_family = family
        super().__init__(address, handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6 and self.server_address[0] == "::":
            # not left to net.ipv6.bindv6only: "every address" includes IPv4
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class MetricsServer:
    """Plain HTTP on its own thread: /metrics, /healthz, /readyz."""

    def __init__(
        self, address: tuple[str, int], metrics: AgentMetrics, mounted: Callable[[], bool]
    ) -> None:
        self.metrics = metrics
        self.mounted = mounted
        family, host = listen_family(address[0])
        shown = f"[{host}]:{address[1]}" if family == socket.AF_INET6 else f"{host}:{address[1]}"
        try:
            self.httpd = _Server((host, address[1]), _handler(self), family)
        except OSError as exc:
            raise KubeLxcfsError(f"cannot serve metrics on {shown}: {exc.strerror}") from exc
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="metrics-http", daemon=True
        )

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        self._thread.start()
        log.info("metrics, /healthz and /readyz on port %d", self.port)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, server.metrics.exposition(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._verdict(*server.metrics.healthy())
            elif path == "/readyz":
                self._verdict(*server.metrics.ready(server.mounted))
            else:
                self._send(404, b"not found: /metrics, /healthz, /readyz\n", "text/plain")

        def _verdict(self, ok: bool, why: str) -> None:
            body = f"{'ok' if ok else 'failed'}: {why}\n".encode()
            self._send(200 if ok else 503, body, "text/plain; charset=utf-8")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metrics http: " + format, *args)

    return Handler

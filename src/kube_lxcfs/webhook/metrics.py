"""The webhook's Prometheus metrics, through prometheus-client.

One process (``--workers 1``) keeps its values in memory. With several workers, each worker
writes its values to memory-mapped files in a directory the supervisor names in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode, chosen when the library is
imported), and the supervisor's /metrics sums them: one process's worth of truth.

Label children are looked up once and kept, so an admission costs a few dictionary lookups and
mmap writes, not a ``labels()`` call per metric.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

disable_created_metrics()  # no *_created samples: they double the series and nobody reads them

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# A Python webhook answers well under controller-runtime's first bucket (5 ms): finer first.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class WebhookMetrics:
    """What a serving process counts; ``render()`` for a single process."""

    def __init__(self, registry: CollectorRegistry | None = None, *, expiry: bool = True) -> None:
        """``expiry`` False: no certificate expiry gauge (a worker's supervisor has it)."""
        self.registry = registry or CollectorRegistry()
        reg = self.registry
        self._requests = Counter(
            "kube_lxcfs_webhook_requests",
            "Admission requests (POST /mutate) answered, by HTTP status code.",
            ("code",),
            registry=reg,
        )
        self.latency = Histogram(
            "kube_lxcfs_webhook_request_duration_seconds",
            "Time from a request's first line to its answer being ready.",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.in_flight = Gauge(
            "kube_lxcfs_webhook_requests_in_flight",
            "Admission requests being served now.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self._admissions = Counter(
            "kube_lxcfs_webhook_admissions",
            "Admission reviews by outcome (injected, partial, conflict, unchanged, skipped,"
            " ignored, error).",
            ("outcome",),
            registry=reg,
        )
        self._skips = Counter(
            "kube_lxcfs_webhook_skips",
            "Pods left alone by the selection rules, by reason.",
            ("reason",),
            registry=reg,
        )
        self.refused_connections = Counter(
            "kube_lxcfs_webhook_refused_connections",
            "Connections closed at once because --max-connections were open.",
            registry=reg,
        )
        self._tls_reloads = Counter(
            "kube_lxcfs_webhook_tls_reloads",
            "Certificate (re)loads from the --tls-cert/--tls-key files, by result"
            " (one per worker).",
            ("result",),
            registry=reg,
        )
        self.cert_expiry = certificate_expiry(reg) if expiry else None
        self._children: dict[tuple[str, str], object] = {}

    def _child(self, family: Counter, key: str) -> Counter:
        found = self._children.get((family._name, key))
        if found is None:
            found = self._children[(family._name, key)] = family.labels(key)
        return found  # type: ignore[return-value]

    def request(self, code: int, seconds: float) -> None:
        """One answered POST /mutate."""
        self._child(self._requests, str(code)).inc()
        self.latency.observe(seconds)

    def admission(self, outcome: str, skip_reason: str | None) -> None:
        self._child(self._admissions, str(outcome)).inc()
        if skip_reason is not None:
            self._child(self._skips, skip_reason).inc()

    def tls_reload(self, ok: bool, not_after: float | None) -> None:
        self._child(self._tls_reloads, "success" if ok else "error").inc()
        if ok and not_after is not None and self.cert_expiry is not None:
            self.cert_expiry.set(not_after)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def certificate_expiry(registry: CollectorRegistry) -> Gauge:
    return Gauge(
        "kube_lxcfs_webhook_certificate_expiry_timestamp_seconds",
        "Expiry (Unix time) of the serving certificate in the --tls-cert file.",
        registry=registry,
    )

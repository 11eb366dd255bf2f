"""A tiny thread-safe Prometheus registry: counters, gauges, histograms, text format 0.0.4.

Small enough to own (a few dozen lines) instead of depending on prometheus-client; the names
follow controller-runtime's webhook metrics so existing dashboards and alerts work.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Sequence
from typing import TypeVar

Labels = tuple[tuple[str, str], ...]

# controller-runtime's webhook latency buckets start at 5 ms; a Python webhook answers in
# well under that, so finer buckets come first.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels_text(labels: Labels, extra: Labels = ()) -> str:
    pairs = (*labels, *extra)
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> Labels:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {sorted(labels)}")
        return tuple((n, str(labels[n])) for n in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> Iterable[str]:  # pragma: no cover - overridden
        return ()


class Counter(_Metric):
    """A monotonically increasing count per label set."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, label_names)
        self._values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterable[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels_text(k)} {_number(v)}" for k, v in items]


class Gauge(Counter):
    """A value that goes up and down (``inc`` with a negative amount, or ``set``)."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = value


class Histogram(_Metric):
    """Cumulative buckets, sum and count per label set."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        label_names: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, label_names)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[Labels, list[float]] = {}  # per-bucket counts + [+Inf, sum]

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = [0.0] * (len(self.buckets) + 2)
            series[index] += 1
            series[-1] += value

    def samples(self) -> Iterable[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        lines = []
        for key, series in items:
            running = 0.0
            for bound, count in zip((*self.buckets, math.inf), series[:-1], strict=True):
                running += count
                le = (("le", _number(bound)),)
                lines.append(f"{self.name}_bucket{_labels_text(key, le)} {_number(running)}")
            lines.append(f"{self.name}_sum{_labels_text(key)} {series[-1]!r}")
            lines.append(f"{self.name}_count{_labels_text(key)} {_number(running)}")
        return lines


M = TypeVar("M", bound=_Metric)


class Registry:
    """Metrics in registration order; ``render()`` gives the exposition text."""

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def register(self, metric: M) -> M:
        self._metrics.append(metric)
        return metric

    def render(self) -> bytes:
        lines: list[str] = []
        for metric in self._metrics:
            lines += metric.header()
            lines += metric.samples()
        return ("\n".join(lines) + "\n").encode()


class WebhookMetrics:
    """The webhook's metrics, names in controller-runtime's style plus our injection outcomes."""

    def __init__(self) -> None:
        self.registry = Registry()
        reg = self.registry.register
        self.requests = reg(
            Counter(
                "controller_runtime_webhook_requests_total",
                "Total number of admission requests by HTTP status code.",
                ("code", "webhook"),
            )
        )
        self.latency = reg(
            Histogram(
                "controller_runtime_webhook_latency_seconds",
                "Histogram of the latency of processing admission requests.",
                ("webhook",),
            )
        )
        self.in_flight = reg(
            Gauge(
                "controller_runtime_webhook_requests_in_flight",
                "Current number of admission requests being served.",
                ("webhook",),
            )
        )
        self.injections = reg(
            Counter(
                "kube_lxcfs_injections_total",
                "Admission reviews by outcome (injected, partial, conflict, unchanged, skipped,"
                " ignored, error).",
                ("outcome",),
            )
        )
        self.skips = reg(
            Counter(
                "kube_lxcfs_webhook_skips_total",
                "Pods left alone by the selection rules, by reason.",
                ("reason",),
            )
        )
        self.refused_connections = reg(
            Counter(
                "kube_lxcfs_webhook_refused_connections_total",
                "Connections closed at once because --max-connections were open.",
            )
        )
        self.tls_reloads = reg(
            Counter(
                "kube_lxcfs_webhook_tls_reloads_total",
                "Certificate (re)loads from the --tls-cert/--tls-key files, by result.",
                ("result",),
            )
        )
        self.cert_expiry = reg(
            Gauge(
                "kube_lxcfs_webhook_certificate_expiry_timestamp_seconds",
                "Expiry (Unix time) of the serving certificate currently in use.",
            )
        )

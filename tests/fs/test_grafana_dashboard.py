"""deploy/grafana/kube-lxcfs.json asks only for series the agent and the webhook export."""

from __future__ import annotations

import json
import re
from pathlib import Path

from kube_lxcfs.fuse.metrics import AgentMetrics
from kube_lxcfs.repair.engine import RepairMetrics, Report
from kube_lxcfs.webhook.metrics import WebhookMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy/grafana/kube-lxcfs.json"
SUFFIXES = ("_bucket", "_count", "_sum")


def _exported() -> set[str]:
    """Every sample name in the agent's and the webhook's exposition (all families present)."""
    agent = AgentMetrics()
    agent.observe("/proc/meminfo", "host", "slow_cgroup", 0.001, 0)
    agent.watch_operations(lambda: 0)
    agent.watch_slow_cgroups(lambda: 0)

    class Stats:
        answered = failed = 0

    agent.watch_listener(Stats())
    repair = RepairMetrics()
    repair.record(Report(outcomes=[], seconds=0.0))
    agent.watch_repair(repair)
    text = agent.exposition().decode() + WebhookMetrics().render().decode()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1].isalpha()}
    for line in text.splitlines():  # families with no sample yet (labelled, never counted)
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            suffixes = {"counter": ("", "_total"), "histogram": SUFFIXES}.get(kind, ("",))
            names.update(name + suffix for suffix in suffixes)
    return names


def test_every_dashboard_query_names_an_exported_series() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs
    exported = _exported()
    for expr in exprs:
        for name in re.findall(r"\b(?:kube_lxcfs|process)_[a-z_]+", expr):
            assert name in exported, f"{name} in {expr!r} is not exported"


def test_the_check_can_fail() -> None:
    assert "kube_lxcfs_no_such_metric_total" not in _exported()

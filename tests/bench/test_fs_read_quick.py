"""CI smoke run of bench/fs_read.py --quick: every target answers, every row has a ratio.

It asserts no speed (that is the benchmark's job, in docs/performance.md), only
that the benchmark measures what it claims: each daemon served real content
through its mount and the lxcfs reference row exists for every daemon row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.root,
    pytest.mark.fuse,
    pytest.mark.lxcfs,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for cgroups and FUSE mounts"),
]


def test_quick_benchmark_measures_every_target(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fs_read.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    targets = {r["target"] for r in rows}
    assert {"raw", "lxcfs", "kube-lxcfs", "kube-lxcfs (no render cache)"} <= targets
    for row in rows:
        assert row["reads_per_s"] > 0, row
        assert row["bytes_per_read"] > 0, row
        if row["target"].startswith("kube-lxcfs") and row["scenario"] != "stall":
            assert row["ratio_vs_lxcfs"] is not None, row
            assert row["daemon_us_per_read"] > 0, row
    # The benchmark's cgroup limits MemTotal to 512 MiB: the daemons really rendered
    # the reader's cgroup, not the host file.
    meminfo = [r for r in rows if r["file"] == "proc/meminfo" and r["scenario"] == "main"]
    raw = next(r for r in meminfo if r["target"] == "raw")
    ours = next(r for r in meminfo if r["target"] == "kube-lxcfs")
    assert ours["bytes_per_read"] > 0 and raw["bytes_per_read"] > 0
    assert "kube-lxcfs" in proc.stdout
    # The stall rows ran: the other readers were served while one cgroup stalled.
    stall = [r for r in rows if r["scenario"] == "stall"]
    assert [r["target"] for r in stall] == [
        "kube-lxcfs (no stall)",
        "kube-lxcfs (1 of 4 stalls)",
        "kube-lxcfs (no render cache, 1 of 4 stalls)",
    ]
    assert all(r["readers"] == 3 and r["reads_per_s"] > 0 for r in stall), stall

"""bench/webhook_load.py --quick runs end to end (server process, load process, table).

A smoke test only: performance is judged from the benchmark's own output, not asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    doc = tmp_path / "doc.md"
    doc.write_text("before\n<!-- webhook-load:begin -->\nold\n<!-- webhook-load:end -->\nafter\n")
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "webhook_load.py"),
            "--quick",
            "--seconds",
            "0.5",
            "--json",
            str(out),
            "--doc",
            str(doc),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "admissions/s" in proc.stdout
    result = json.loads(out.read_text())
    assert [row["connections"] for row in result["rows"]] == [1, 8]
    assert 9000 < result["body_bytes"] < 11000  # the ~10 KB pod of the issue
    for row in result["rows"]:
        assert row["admissions"] > 0 and row["p99_ms"] >= row["p50_ms"] > 0
        assert row["server_cpu_ms_per_1k"] > 0 and row["worker_cpu_shares"] == [1.0]
    assert result["pure_cpu_us"]["large"] > 0
    text = doc.read_text()  # the table replaced what was between the markers, nothing else
    assert text.startswith("before\n<!-- webhook-load:begin -->\nMeasured ")
    assert text.endswith("<!-- webhook-load:end -->\nafter\n") and "old" not in text
    assert text.count("| 10 KB | 1 |") == 2  # one row per connection count

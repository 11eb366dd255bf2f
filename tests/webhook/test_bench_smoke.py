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
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "webhook_load.py"),
            "--quick",
            "--seconds",
            "0.5",
            "--json",
            str(out),
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

"""CI smoke run of bench/fuse_binding.py --quick: the three daemons answer and are compared.

No speed is asserted (docs/fuse-binding.md records a full run); only that every row was
measured through a real mount and carries its ratio to lxcfs.
"""

from __future__ import annotations

import os
import re
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


def test_quick_binding_benchmark_measures_three_daemons() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fuse_binding.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {
        match[1]: float(match[2])
        for match in re.finditer(
            r"^(binding floor|kube-lxcfs|lxcfs)\s+\d+.*\s(\d+\.\d\d)$", proc.stdout, re.M
        )
    }
    assert set(rows) == {"binding floor", "kube-lxcfs", "lxcfs"}, proc.stdout
    assert rows["lxcfs"] == 1.00
    assert all(ratio > 0 for ratio in rows.values())
    assert re.search(r"in-process render of /proc/meminfo \(no FUSE\): \d+\.\d us CPU", proc.stdout)

"""The fidelity matrix on pure cgroup v2: the containers tier's rows, run with runc in the VM.

Same rows, same limits as tests/containers/test_fidelity.py (cgroup v1). Every row must
pass its verdict here too; the values shown are written to the results share, and the host
side (tests/vm/test_v2_tier.py) checks them against tests/containers/measured/cgroup-v2.json
and the generated docs/what-programs-see.md.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "containers"))

from fidelity import ROWS, Row, Verdict, measure_all
from rootfs import FULL, READY_MARK, ensure_rootfs
from runc_harness import leftover_cgroups

from support.fsdaemons import RunningFs

RESULTS = Path(os.environ.get("KUBE_LXCFS_VM_RESULTS", "/mnt/results"))
MEASURED_FILE = RESULTS / "measured-cgroup-v2.json"


@pytest.fixture(scope="module")
def full_rootfs() -> Path:
    """The containers tier's FULL image, handed in by the host on a read-only disk."""
    path = FULL.path()
    assert (path / READY_MARK).exists(), (
        f"{path} is missing: the host attaches the FULL rootfs as a disk (test_v2_tier.py)"
    )
    return ensure_rootfs(FULL)


@pytest.fixture(scope="module")
def measurements(full_rootfs: Path, ours: RunningFs) -> Iterator[dict[str, tuple[Verdict, str]]]:
    before = set(leftover_cgroups())
    uptime_before = Path("/proc/uptime").read_text().split()[0]
    results = measure_all(full_rootfs, ours.mountpoint)
    uptime_after = Path("/proc/uptime").read_text().split()[0]
    print(f"VM uptime around the measurements: {uptime_before} s .. {uptime_after} s")
    shown = {key: verdict.shown for key, (verdict, _) in results.items()}
    MEASURED_FILE.write_text(json.dumps(shown, indent=1, ensure_ascii=False) + "\n")
    yield results
    assert set(leftover_cgroups()) == before, "runc left cgroups behind"


@pytest.mark.parametrize("row", ROWS, ids=[row.key for row in ROWS])
def test_program_reports_on_v2(row: Row, measurements: dict[str, tuple[Verdict, str]]) -> None:
    verdict, output = measurements[row.key]
    assert verdict.ok, f"{row.program} {row.call}: {verdict.detail}\n--- output ---\n{output}"

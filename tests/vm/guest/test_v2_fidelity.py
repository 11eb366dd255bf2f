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

from fidelity import (
    LIMIT_CPU_PERIOD_US,
    LIMIT_CPU_QUOTA_US,
    LIMIT_MEMORY,
    ROWS,
    Host,
    Row,
    Verdict,
    measure_row,
)
from rootfs import FULL, READY_MARK, ensure_rootfs
from runc_harness import Resources, leftover_cgroups, runc_session

from support.fsdaemons import RunningFs

RESULTS = Path(os.environ.get("KUBE_LXCFS_VM_RESULTS", "/mnt/results"))
MEASURED_FILE = RESULTS / "measured-cgroup-v2.json"


def guest_facts() -> Host:
    meminfo = Path("/proc/meminfo").read_text()
    memtotal_kb = int(meminfo.split("MemTotal:")[1].split()[0])
    uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    return Host(cpus=os.cpu_count() or 1, memtotal_kb=memtotal_kb, uptime_s=uptime_s)


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
    limits = {
        "memory": LIMIT_MEMORY,
        "memory_swap": LIMIT_MEMORY,
        "cpu_quota": LIMIT_CPU_QUOTA_US,
        "cpu_period": LIMIT_CPU_PERIOD_US,
    }
    before = set(leftover_cgroups())
    with runc_session() as runc:
        containers = {
            "main": runc.start(
                full_rootfs, resources=Resources(**limits), mount_dir=ours.mountpoint
            ),
            "cpuset": runc.start(
                full_rootfs, resources=Resources(cpuset="0", **limits), mount_dir=ours.mountpoint
            ),
        }
        host = guest_facts()
        results = {}
        for row in ROWS:
            proc = containers[row.container].exec(row.command, check=False)
            output = (
                proc.stdout if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr}"
            )
            results[row.key] = (measure_row(row, output, host), output)
        shown = {key: verdict.shown for key, (verdict, _) in results.items()}
        MEASURED_FILE.write_text(json.dumps(shown, indent=1, ensure_ascii=False) + "\n")
        yield results
    assert set(leftover_cgroups()) == before, "runc left cgroups behind"


@pytest.mark.parametrize("row", ROWS, ids=[row.key for row in ROWS])
def test_program_reports_on_v2(row: Row, measurements: dict[str, tuple[Verdict, str]]) -> None:
    verdict, output = measurements[row.key]
    assert verdict.ok, f"{row.program} {row.call}: {verdict.detail}\n--- output ---\n{output}"

"""The fidelity matrix on cgroup v1: what each program reports inside a limited runc container.

Every row is asserted against numbers computed from the limits (or from the host, for the
programs that bypass /proc), and docs/what-programs-see.md must be the table rendered from
exactly these measurements (``KUBE_LXCFS_UPDATE_DOCS=1`` rewrites it after a change of rows).
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fidelity import (
    DOC,
    LIMIT_CPU_PERIOD_US,
    LIMIT_CPU_QUOTA_US,
    LIMIT_MEMORY,
    MEASURED,
    ROWS,
    Host,
    Row,
    Verdict,
    load_columns,
    measure_row,
    render,
)
from runc_harness import Resources, runc_session

COLUMN = "cgroup-v1"
UPDATE = os.environ.get("KUBE_LXCFS_UPDATE_DOCS") == "1"


def host_facts() -> Host:
    meminfo = Path("/proc/meminfo").read_text()
    memtotal_kb = int(meminfo.split("MemTotal:")[1].split()[0])
    uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    return Host(cpus=os.cpu_count() or 1, memtotal_kb=memtotal_kb, uptime_s=uptime_s)


@pytest.fixture(scope="module")
def measurements(full_rootfs: Path, fs_mount_dir: Path) -> Iterator[dict[str, tuple[Verdict, str]]]:
    """Run every row once in fresh containers; row key → (verdict, raw output)."""
    limits = {
        "memory": LIMIT_MEMORY,
        "memory_swap": LIMIT_MEMORY,
        "cpu_quota": LIMIT_CPU_QUOTA_US,
        "cpu_period": LIMIT_CPU_PERIOD_US,
    }
    with runc_session() as runc:
        containers = {
            "main": runc.start(full_rootfs, resources=Resources(**limits), mount_dir=fs_mount_dir),
            "cpuset": runc.start(
                full_rootfs, resources=Resources(cpuset="0", **limits), mount_dir=fs_mount_dir
            ),
        }
        host = host_facts()
        results = {}
        for row in ROWS:
            proc = containers[row.container].exec(row.command, check=False)
            output = (
                proc.stdout if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr}"
            )
            results[row.key] = (measure_row(row, output, host), output)
        yield results


@pytest.mark.parametrize("row", ROWS, ids=[row.key for row in ROWS])
def test_program_reports(row: Row, measurements: dict[str, tuple[Verdict, str]]) -> None:
    verdict, output = measurements[row.key]
    assert verdict.ok, f"{row.program} {row.call}: {verdict.detail}\n--- output ---\n{output}"


def test_the_published_table_is_the_measured_one(
    measurements: dict[str, tuple[Verdict, str]],
) -> None:
    measured = {key: verdict.shown for key, (verdict, _) in measurements.items()}
    recorded = MEASURED / f"{COLUMN}.json"
    if UPDATE:
        MEASURED.mkdir(exist_ok=True)
        recorded.write_text(json.dumps(measured, indent=1, ensure_ascii=False) + "\n")
    columns = load_columns()
    assert columns.get(COLUMN) == measured, (
        f"{recorded} differs from this run; after changing rows, rerun with "
        "KUBE_LXCFS_UPDATE_DOCS=1 and commit"
    )
    text = render(columns)
    if UPDATE:
        DOC.write_text(text)
    committed = DOC.read_text() if DOC.exists() else ""
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(True), text.splitlines(True), str(DOC), "generated"
        )
    )
    assert not diff, f"{DOC} is not the generated table (KUBE_LXCFS_UPDATE_DOCS=1):\n{diff}"

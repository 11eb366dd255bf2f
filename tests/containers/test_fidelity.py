"""The fidelity matrix on cgroup v1: what each program reports inside a limited runc container.

Every row is asserted against numbers computed from the limits (or from the host, for the
programs that bypass /proc), and docs/what-programs-see.md must be the table rendered from
exactly these measurements (``KUBE_LXCFS_UPDATE_DOCS=1`` rewrites it after a change of rows).
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import pytest
from fidelity import DOC, MEASURED, ROWS, Row, Verdict, load_columns, measure_all, render
from virtual_fs import running_filesystem

UPDATE = os.environ.get("KUBE_LXCFS_UPDATE_DOCS") == "1"


@pytest.fixture(scope="module")
def measurements(full_rootfs: Path, fs_mount_dir: Path) -> dict[str, tuple[Verdict, str]]:
    """Every row measured through the filesystem under test."""
    return measure_all(full_rootfs, fs_mount_dir)


@pytest.fixture(scope="module")
def lxcfs_measurements(full_rootfs: Path) -> dict[str, tuple[Verdict, str]]:
    """The same rows through Debian's lxcfs, recorded for comparison (not judged)."""
    with running_filesystem("lxcfs") as mount_dir:
        return measure_all(full_rootfs, mount_dir)


@pytest.mark.parametrize("row", ROWS, ids=[row.key for row in ROWS])
def test_program_reports(row: Row, measurements: dict[str, tuple[Verdict, str]]) -> None:
    verdict, output = measurements[row.key]
    assert verdict.ok, f"{row.program} {row.call}: {verdict.detail}\n--- output ---\n{output}"


def _record(stem: str, measured: dict[str, str]) -> None:
    recorded = MEASURED / f"{stem}.json"
    if UPDATE:
        MEASURED.mkdir(exist_ok=True)
        recorded.write_text(json.dumps(measured, indent=1, ensure_ascii=False) + "\n")
    assert load_columns().get(stem) == measured, (
        f"{recorded} differs from this run; after changing rows, rerun with "
        "KUBE_LXCFS_UPDATE_DOCS=1 and commit"
    )


def test_the_published_table_is_the_measured_one(
    measurements: dict[str, tuple[Verdict, str]],
    lxcfs_measurements: dict[str, tuple[Verdict, str]],
    fs_implementation: str,
) -> None:
    ours = {key: verdict.shown for key, (verdict, _) in measurements.items()}
    _record("cgroup-v1" if fs_implementation == "kube-lxcfs" else "lxcfs-cgroup-v1", ours)
    _record("lxcfs-cgroup-v1", {key: v.shown for key, (v, _) in lxcfs_measurements.items()})
    text = render(load_columns())
    if UPDATE:
        DOC.write_text(text)
    committed = DOC.read_text() if DOC.exists() else ""
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(True), text.splitlines(True), str(DOC), "generated"
        )
    )
    assert not diff, f"{DOC} is not the generated table (KUBE_LXCFS_UPDATE_DOCS=1):\n{diff}"

"""The pure cgroup v2 tier: one VM boot runs the guest suites, each guest file is one test here.

The host's controllers are cgroup v1, so everything v2 runs inside a throw-away VM
(tests/vm/vmharness.py). The session fixture builds the image (cached), boots the VM once
and runs ``GUEST_SUITES`` there under pytest; the tests below then pass or fail per guest test
file, with the guest's own failure report as the message.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import vmharness
import vmimage

REPO = vmimage.REPO
sys.path.insert(0, str(REPO / "tests" / "containers"))
from fidelity import DOC, MEASURED, load_columns, render  # noqa: E402
from rootfs import FULL, ensure_rootfs  # noqa: E402

V2_COLUMN = "cgroup-v2"
UPDATE_DOCS = os.environ.get("KUBE_LXCFS_UPDATE_DOCS") == "1"
GUEST_DIR = Path(__file__).resolve().parent / "guest"
# Tests of other tiers that are written for v1 and v2 alike, run again on pure v2. (Not
# tests/lxcfs/test_differential.py: its quota-view, MemAvailable and diskstats expectations
# are lxcfs's v1 behaviour; the v2 side-by-side checks are in guest/.)
SHARED_SUITES: tuple[str, ...] = ("tests/core/test_tree_real.py", "tests/fs/test_filesystem.py")
# The fidelity matrix goes last: busybox `uptime` must see a VM that has been up a while.
GUEST_FILES = sorted(
    [str(p.relative_to(REPO)) for p in GUEST_DIR.glob("test_*.py")] + list(SHARED_SUITES),
    key=lambda path: (path.endswith("fidelity.py"), path),
)
# What the guest needs of the project: the package, the tests and the pytest configuration.
GUEST_SHIP = ("src", "tests", "pyproject.toml")
TIER_TIMEOUT = 1200.0  # seconds for the guest run, on top of the boot deadline

pytestmark = [
    pytest.mark.vm,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the VM tier runs qemu and 9p as root"),
]


@dataclass
class TierRun:
    """One boot of the guest suites, and what came out of it."""

    result: vmharness.VmResult
    build_seconds: float | None
    image_seconds: float  # time to get the images: builds, or cache checks
    cases: dict[str, list[ET.Element]] = field(default_factory=dict)  # guest file -> testcases

    def summary(self) -> str:
        build = (
            f"built in {self.build_seconds:.1f} s"
            if self.build_seconds is not None
            else f"cached ({self.image_seconds:.1f} s)"
        )
        boot = self.result.boot_seconds
        total = self.image_seconds + self.result.total_seconds
        return (
            f"image {build}; boot {boot:.1f} s; guest run {self.result.total_seconds:.1f} s; "
            f"exit {self.result.exit_code}; total {total:.1f} s"
            if boot is not None
            else f"image {build}; VM did not boot (exit {self.result.exit_code})"
        )


def _file_of(case: ET.Element) -> str:
    """``tests/vm/guest/test_x.py`` from a JUnit testcase's dotted classname."""
    parts = case.get("classname", "").split(".")
    for end in range(len(parts), 0, -1):
        candidate = "/".join(parts[:end]) + ".py"
        if (REPO / candidate).exists():
            return candidate
    return case.get("classname", "")


def _progress(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Show the guest's output live on the terminal (the tier runs for minutes)."""
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")

    def show(text: str) -> None:
        if reporter is None:
            return
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            for line in text.splitlines():
                reporter.write_line(f"[vm] {line}")

    return show


@pytest.fixture(scope="session")
def v2_tier(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    vm_tier_summaries: list[str],
) -> TierRun:
    started = time.monotonic()
    image = vmimage.build_image()
    # the containers tier's root filesystem, for runc inside the VM (fidelity matrix)
    container_disk = vmimage.directory_disk(ensure_rootfs(FULL))
    image_seconds = time.monotonic() - started
    results = tmp_path_factory.mktemp("vm-results")
    result = vmharness.run_in_vm(
        "bash tests/vm/guest/run-tier.sh " + " ".join(GUEST_FILES),
        image=image,
        timeout=TIER_TIMEOUT,
        results_dir=results,
        on_output=_progress(request),
        ship=GUEST_SHIP,
        extra_disks=[container_disk],
    )
    run = TierRun(result, image.build_seconds, image_seconds)
    junit = results / "junit.xml"
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            run.cases.setdefault(_file_of(case), []).append(case)
    vm_tier_summaries.append(f"pure cgroup v2 tier: {run.summary()}")
    _progress(request)(vm_tier_summaries[-1])
    return run


def test_the_vm_boots_and_runs_the_guest_suites(v2_tier: TierRun) -> None:
    result = v2_tier.result
    assert result.boot_seconds is not None, (
        f"the VM did not boot (exit {result.exit_code}); console:\n{result.console[-4000:]}"
    )
    assert result.exit_code in (0, 1), (
        f"guest pytest exit {result.exit_code}; output:\n{result.output[-4000:]}\n"
        f"console:\n{result.console[-2000:]}"
    )
    assert v2_tier.cases, f"no JUnit results from the guest; output:\n{result.output[-4000:]}"


@pytest.mark.parametrize("guest_file", GUEST_FILES)
def test_guest_file_passes_on_pure_cgroup_v2(v2_tier: TierRun, guest_file: str) -> None:
    cases = v2_tier.cases.get(guest_file, [])
    assert cases, (
        f"{guest_file} produced no results in the VM; guest output:\n"
        f"{v2_tier.result.output[-4000:]}"
    )
    problems = []
    for case in cases:
        for outcome in ("failure", "error"):
            for element in case.findall(outcome):
                detail = (element.text or element.get("message") or "").strip()
                problems.append(f"{case.get('name')} ({outcome}):\n{detail[-3000:]}")
    ran = [case for case in cases if case.find("skipped") is None]
    assert not problems, "\n\n".join(problems)
    assert ran, f"every test of {guest_file} was skipped in the VM"


def test_the_v2_column_of_what_programs_see_is_the_measured_one(v2_tier: TierRun) -> None:
    """docs/what-programs-see.md's cgroup v2 column is what the guest's runc containers saw.

    ``KUBE_LXCFS_UPDATE_DOCS=1`` records the measurement and regenerates the page.
    """
    measured_file = v2_tier.result.results_dir / f"measured-{V2_COLUMN}.json"
    assert measured_file.exists(), "the guest recorded no fidelity measurements"
    measured = json.loads(measured_file.read_text())
    recorded = MEASURED / f"{V2_COLUMN}.json"
    if UPDATE_DOCS:
        recorded.write_text(json.dumps(measured, indent=1, ensure_ascii=False) + "\n")
        DOC.write_text(render(load_columns()))
    assert load_columns().get(V2_COLUMN) == measured, (
        f"{recorded} differs from this VM run; rerun with KUBE_LXCFS_UPDATE_DOCS=1 and commit"
    )
    committed = DOC.read_text()
    generated = render(load_columns())
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(True), generated.splitlines(True), str(DOC), "generated"
        )
    )
    assert not diff, f"{DOC} is not the generated table (KUBE_LXCFS_UPDATE_DOCS=1):\n{diff}"

"""Session fixtures of the node tier: binaries, images, one running node, and its clients.

One node serves the directory's tests (starting it costs ~50 s, the images' import included);
tests isolate themselves with their own namespaces and remove what they install. The tier
prints its timings at the end of the run: builds, node start, and each scenario.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cluster.binaries import BuildError, GoMissingError, find_or_build
from cluster.conftest import _reporter_log
from cluster.control_plane import wait_until

from . import images
from .node import Node

TIMINGS: dict[str, float] = {}
SCENARIOS: dict[str, float] = {}
NODE_BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kubectl",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of this directory that uses the node runs as root (the image recipe's
    tests are pure and run anywhere)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents and "node" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.node)
            item.add_marker(pytest.mark.root)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Each scenario's own time (installs done by module fixtures are timed by them)."""
    if report.when == "call" and "node" in report.keywords:
        SCENARIOS[report.nodeid.split("::")[-1]] = report.duration


def _prerequisites() -> None:
    if os.geteuid() != 0:
        pytest.skip("the node tier needs root (namespaces, cgroups, containerd)")
    missing = [
        tool
        for tool in ("containerd", "ctr", "runc", "unshare", "nsenter", "ip", "mmdebstrap", "gcc")
        if shutil.which(tool) is None
    ]
    if not Path("/usr/lib/cni/bridge").exists():
        missing.append("/usr/lib/cni/bridge (containernetworking-plugins)")
    if missing:
        pytest.fail(
            f"the node tier needs {', '.join(missing)}: bash scripts/bootstrap.sh --test",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def node_binaries(request: pytest.FixtureRequest) -> dict[str, Path]:
    _prerequisites()
    TIMINGS.setdefault("start", time.monotonic())
    started = time.monotonic()
    try:
        paths = find_or_build(*NODE_BINARIES, log=_reporter_log(request.config))
    except GoMissingError as exc:
        pytest.skip(str(exc))
    except BuildError as exc:
        pytest.fail(str(exc), pytrace=False)
    TIMINGS["binaries"] = time.monotonic() - started
    return paths


@pytest.fixture(scope="session")
def node_images(request: pytest.FixtureRequest, node_binaries) -> images.NodeImages:
    built = images.ensure_images(log=_reporter_log(request.config))
    TIMINGS["images"] = built.seconds
    return built


@pytest.fixture(scope="package")
def node(
    request: pytest.FixtureRequest,
    node_binaries: dict[str, Path],
    node_images: images.NodeImages,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Node]:
    """The running node (control plane, containerd, kubelet), stopped when the tests of
    this directory are done (not at the end of the whole run: it holds ~700 MB, the
    machine's node lock and the kubelet's sysctls)."""
    started = time.monotonic()
    running = Node(
        node_binaries,
        tmp_path_factory.mktemp("node"),
        node_images.archives,
        log=_reporter_log(request.config),
    )
    running.start()
    TIMINGS["node_start"] = time.monotonic() - started
    TIMINGS["node_control_plane"] = running.timings["control plane"]
    TIMINGS["node_imported"] = running.timings["images imported"]
    try:
        yield running
    finally:
        stopped = time.monotonic()
        running.stop()
        TIMINGS["node_stop"] = time.monotonic() - stopped
        TIMINGS["end"] = time.monotonic()


@pytest.fixture
def make_namespace(node: Node) -> Iterator[Callable[..., str]]:
    """Create namespaces (unique names, given labels) ready for pods; deleted afterwards."""
    created: list[str] = []

    def make(prefix: str = "t", labels: dict[str, str] | None = None) -> str:
        name = f"node-{prefix}-{uuid.uuid4().hex[:6]}"
        node.kubectl("create", "namespace", name)
        created.append(name)
        if labels:
            node.kubectl("label", "namespace", name, *(f"{k}={v}" for k, v in labels.items()))
        wait_until(
            lambda: node.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
            60,
            f"ServiceAccount default in {name}",
        )
        return name

    yield make
    for name in created:
        node.kubectl("delete", "namespace", name, "--wait=false", check=False)


def record(name: str, seconds: float) -> None:
    """Add a timed step (e.g. an install done by a module fixture) to the summary line."""
    SCENARIOS[name] = SCENARIOS.get(name, 0.0) + seconds


def pytest_terminal_summary(terminalreporter) -> None:
    """One line with the tier's timings, like the cluster and VM tiers print."""
    if "start" not in TIMINGS:
        return
    end = TIMINGS.get("end", time.monotonic())
    parts = [f"total {end - TIMINGS['start']:.1f}s"]
    for key, label in (("binaries", "binaries"), ("images", "images")):
        if key in TIMINGS:
            parts.append(f"{label} {TIMINGS[key]:.1f}s")
    if "node_start" in TIMINGS:
        parts.append(
            f"node start {TIMINGS['node_start']:.1f}s (control plane "
            f"{TIMINGS['node_control_plane']:.1f}s, images imported "
            f"{TIMINGS['node_imported']:.1f}s)"
        )
    if "node_stop" in TIMINGS:
        parts.append(f"node stop {TIMINGS['node_stop']:.1f}s")
    parts += [f"{name} {seconds:.1f}s" for name, seconds in SCENARIOS.items()]
    terminalreporter.write_line("node tier: " + ", ".join(parts))

"""Session fixtures of the cluster tier: the binaries, one control plane, API clients.

One control plane serves the whole session (starting one costs ~20 s on two cores); tests
isolate themselves with their own namespaces and webhook configurations and remove what
they register. The tier prints its timings at the end of the run.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .binaries import BuildError, GoMissingError, find_or_build
from .control_plane import ControlPlane, wait_until

TIMINGS: dict[str, float] = {}


def _reporter_log(config: pytest.Config) -> Callable[[str], None]:
    """Print build progress on the terminal right away, past pytest's output capture (a
    fresh build takes minutes and must not look like a hang)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return lambda msg: None

    def write(msg: str) -> None:
        if capture is None:
            reporter.write_line(msg)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(msg)

    return write


@pytest.fixture(scope="session")
def cluster_binaries(request: pytest.FixtureRequest) -> dict[str, Path]:
    """etcd, kube-apiserver, kube-controller-manager (and helm), built once and cached."""
    TIMINGS.setdefault("start", time.monotonic())
    start = time.monotonic()
    try:
        paths = find_or_build(log=_reporter_log(request.config))
    except GoMissingError as exc:
        pytest.skip(str(exc))
    except BuildError as exc:
        pytest.fail(str(exc), pytrace=False)
    TIMINGS["binaries"] = time.monotonic() - start
    return paths


@pytest.fixture(scope="session")
def control_plane(
    cluster_binaries: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """A running etcd + kube-apiserver + kube-controller-manager on loopback."""
    start = time.monotonic()
    plane = ControlPlane(cluster_binaries, tmp_path_factory.mktemp("control-plane"))
    plane.start()
    TIMINGS["control_plane_start"] = time.monotonic() - start
    try:
        yield plane
    finally:
        plane.stop()
        TIMINGS["end"] = time.monotonic()


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    """The admin kubeconfig (client certificate in system:masters)."""
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path):
    """A ``kubernetes`` ApiClient for the test control plane."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(kubeconfig))
    client.configuration.proxy = None
    yield client
    client.close()


@pytest.fixture(scope="session")
def core_v1(api_client):
    from kubernetes import client

    return client.CoreV1Api(api_client)


@pytest.fixture
def make_namespace(core_v1) -> Iterator[Callable[..., str]]:
    """Create namespaces (unique names, given labels) ready for pods; deleted afterwards.

    "Ready" means the controller-manager gave it its ``default`` ServiceAccount, without
    which the ServiceAccount admission plugin rejects every pod.
    """
    from kubernetes import client

    created: list[str] = []

    def make(prefix: str = "t", labels: dict[str, str] | None = None) -> str:
        name = f"kube-lxcfs-test-{prefix}-{uuid.uuid4().hex[:6]}"
        core_v1.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels or {}))
        )
        created.append(name)
        wait_until(
            lambda: core_v1.read_namespaced_service_account("default", name),
            60,
            f"ServiceAccount default in {name}",
        )
        return name

    yield make
    for name in created:
        core_v1.delete_namespace(name)


def pytest_terminal_summary(terminalreporter) -> None:
    """Print how long the tier took: building/locating binaries, booting, in total."""
    if "start" not in TIMINGS:
        return
    end = TIMINGS.get("end", time.monotonic())
    parts = [f"total {end - TIMINGS['start']:.1f}s"]
    if "binaries" in TIMINGS:
        parts.append(f"binaries {TIMINGS['binaries']:.1f}s")
    if "control_plane_start" in TIMINGS:
        parts.append(f"control plane start {TIMINGS['control_plane_start']:.1f}s")
    terminalreporter.write_line("cluster tier: " + ", ".join(parts))

"""The generated chart rendered by a real ``helm`` equals ``kube-lxcfs manifests``.

This is the second half of the drift check: ``objects.py`` is read by two
interpreters (Python's ``evaluate`` and Helm's templates generated from it), and
the real helm binary, built from its pinned Go module by the cluster tier
(tests/cluster/binaries.py), must render exactly what Python renders, for the
defaults and for the variants that switch template branches.
"""

from __future__ import annotations

import glob
import os
import subprocess
from pathlib import Path

import pytest

from kube_lxcfs.deploy.generate import CHART_DIR
from kube_lxcfs.deploy.render import from_yaml, normalize, render
from kube_lxcfs.deploy.values import resolve
from support.deploy_variants import RUNTIME_CLASS_VARIANTS

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / CHART_DIR
CACHE_GLOB = "/var/cache/kube-lxcfs/cluster/helm-*/bin/helm"
# Explicit, so the chart's kubeVersion check never depends on how helm was stamped.
KUBE = ["--kube-version", "1.31.0"]

VARIANTS = {
    "defaults": [],
    "cert-manager": ["certManager.enabled=true"],
    "monitoring": [
        "serviceMonitor.enabled=true",
        "serviceMonitor.labels.release=prom",
        "podMonitor.enabled=true",
        "podMonitor.labels.release=prom",
    ],
    "agent-without-metrics": ["nodeAgent.metrics.enabled=false"],
    "no-namespace-no-opt-in": [
        "createNamespace=false",
        "webhook.podOptIn=false",
        "serviceAccount.create=false",
        "webhook.failurePolicy=Fail",
    ],
    **RUNTIME_CLASS_VARIANTS,
    "numeric-tags": ["nodeAgent.image.tag=1", "webhook.image.tag=20251203"],
    # the agent's volume is the mount dir's parent: Helm's dir and Python's agree
    "mount-dir-trailing-slash": ["mountDir=/srv/lxcfs/"],
    "mount-dir-at-the-root": ["mountDir=/lxcfs"],
    "custom": [
        "mountDir=/run/lxcfs",
        "injectedFiles={proc/meminfo,proc/cpuinfo}",
        "nodeAgent.extraArgs={--disable-loadavg,-u}",
        "webhook.extraArgs={--log-level=debug}",
        "webhook.replicaCount=3",
        "nodeAgent.image.tag=v9",
        "service.port=8443",
        "webhook.nodeSelector.pool=system",
    ],
}


@pytest.fixture(scope="module")
def helm(request: pytest.FixtureRequest) -> Path:
    """The cluster tier's pinned helm: its fixture when present, else its cache, else skip."""
    explicit = os.environ.get("KUBE_LXCFS_HELM")
    if explicit:
        return Path(explicit)
    try:
        return Path(request.getfixturevalue("helm_binary"))
    except pytest.FixtureLookupError:
        pass
    cached = sorted(glob.glob(CACHE_GLOB))
    if cached:
        return Path(cached[-1])
    pytest.skip(
        "no helm binary: the cluster tier builds it from its pinned Go module "
        f"(tests/cluster/binaries.py helm) into {CACHE_GLOB}; not built on this machine yet"
    )


def _helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HELM_CACHE_HOME": "/tmp/kube-lxcfs-helm-cache"},
    )


def _template(helm: Path, namespace: str, sets: list[str]) -> list[dict]:
    args = ["template", "kube-lxcfs", str(CHART), "--namespace", namespace, *KUBE]
    for expr in sets:
        args += ["--set", expr]
    proc = _helm(helm, *args)
    assert proc.returncode == 0, proc.stderr
    return from_yaml(proc.stdout)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_template_equals_python_rendering(helm: Path, variant: str) -> None:
    sets = VARIANTS[variant]
    from_helm = _template(helm, "lxcfs", sets)
    from_python = render(resolve(namespace="lxcfs", sets=sets))
    assert normalize(from_helm) == normalize(from_python)
    assert len(from_helm) == len(from_python)


def test_helm_default_render_equals_the_static_manifest(helm: Path) -> None:
    static = from_yaml((REPO / "deploy/manifests/kube-lxcfs.yaml").read_text())
    assert normalize(_template(helm, "lxcfs", [])) == normalize(static)


def test_release_namespace_flows_everywhere(helm: Path) -> None:
    objects = _template(helm, "ops", [])
    assert normalize(objects) == normalize(render(resolve(namespace="ops")))
    assert {o["metadata"].get("namespace", "ops") for o in objects} == {"ops"}


def test_helm_lint_strict(helm: Path) -> None:
    proc = _helm(helm, "lint", "--strict", str(CHART), "--namespace", "lxcfs", *KUBE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("expr", "complaint"),
    [
        ("webhook.replicaCount=0", "replicaCount"),
        ("webhook.failurePolicy=Sometimes", "failurePolicy"),
        ("unknownKey=1", "unknownKey"),
        ("injection.mode=runtimeClass", "runtimeClass/enabled"),
        ("runtimeClass.name=Not_A_Name", "runtimeClass/name"),
    ],
)
def test_values_schema_is_enforced_by_helm(helm: Path, expr: str, complaint: str) -> None:
    proc = _helm(helm, "template", "kube-lxcfs", str(CHART), "--set", expr, *KUBE)
    assert proc.returncode != 0
    assert complaint in proc.stderr


def test_chart_refuses_kubernetes_older_than_1_25(helm: Path) -> None:
    old = _helm(helm, "template", "kube-lxcfs", str(CHART), "--kube-version", "1.24.0")
    assert old.returncode != 0
    assert "kubeVersion" in old.stderr or "incompatible" in old.stderr
    ok = _helm(helm, "template", "kube-lxcfs", str(CHART), "--kube-version", "1.25.0")
    assert ok.returncode == 0, ok.stderr


def test_helm_takes_a_numeric_tag_from_a_values_file(helm: Path, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text('nodeAgent:\n  image:\n    tag: 2\nwebhook:\n  image:\n    tag: "1.10"\n')
    proc = _helm(helm, "template", "kube-lxcfs", str(CHART), "-f", str(values), *KUBE)
    assert proc.returncode == 0, proc.stderr
    images = {
        o["kind"]: o["spec"]["template"]["spec"]["containers"][0]["image"]
        for o in from_yaml(proc.stdout)
        if o["kind"] in ("DaemonSet", "Deployment")
    }
    assert images["DaemonSet"].endswith(":2") and images["Deployment"].endswith(":1.10")

"""The build script's pure parts: output names, version stamps, pruning of stale builds."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from . import binaries

pytestmark = pytest.mark.cluster


def test_output_name_skips_the_major_version_suffix() -> None:
    assert binaries._output_name("go.etcd.io/etcd/server/v3") == "server"
    assert binaries._output_name("k8s.io/kubernetes/cmd/kube-apiserver") == "kube-apiserver"
    assert binaries._output_name("helm.sh/helm/v3/cmd/helm") == "helm"


def test_version_stamps_follow_the_pins() -> None:
    k8s = binaries.required_version("kubernetes", "k8s.io/kubernetes")
    flags = binaries.version_ldflags("kubernetes")
    assert f"-X k8s.io/component-base/version.gitVersion={k8s}" in flags
    assert f"-X k8s.io/component-base/version.gitMinor={k8s.split('.')[1]}" in flags
    helm = binaries.required_version("helm", "helm.sh/helm/v3")
    assert f"-X helm.sh/helm/v3/internal/version.version={helm}" in binaries.version_ldflags("helm")
    assert binaries.version_ldflags("etcd") == []


def test_unknown_requirement_is_a_build_error() -> None:
    with pytest.raises(binaries.BuildError):
        binaries.required_version("etcd", "example.com/not-required")


def test_stale_builds_of_the_same_module_are_pruned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(binaries, "CACHE_ROOT", tmp_path)
    for name in ("etcd-old", "etcd-recent", "etcd-current", "helm-old"):
        (tmp_path / name).mkdir()
    long_ago = time.time() - binaries.STALE_AFTER - 60
    for name in ("etcd-old", "helm-old"):
        os.utime(tmp_path / name, (long_ago, long_ago))
    binaries._prune_stale("etcd", keep=tmp_path / "etcd-current")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["etcd-current", "etcd-recent", "helm-old"]

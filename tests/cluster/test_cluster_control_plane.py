"""The control plane itself: the pinned release, the admission chain and the controllers
that the webhook tests rely on (a broken fixture must fail here, not as a webhook bug)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .binaries import required_version
from .control_plane import ControlPlane, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def pod_manifest(name: str, **spec: object) -> dict:
    """The smallest valid Pod; the image is never pulled (there is no kubelet)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}], **spec},
    }


def test_server_reports_the_pinned_release(control_plane: ControlPlane) -> None:
    version = control_plane.get("/version")
    assert version is not None
    assert version["gitVersion"] == required_version("kubernetes", "k8s.io/kubernetes")


def test_admin_kubeconfig_works_with_the_python_client(core_v1) -> None:
    names = {ns.metadata.name for ns in core_v1.list_namespace().items}
    assert {"default", "kube-system"} <= names


def test_unauthenticated_requests_are_refused(control_plane: ControlPlane) -> None:
    import ssl
    import urllib.error
    import urllib.request

    assert control_plane.ca is not None
    context = ssl.create_default_context(cafile=str(control_plane.ca.cert_path))
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        opener.open(control_plane.server + "/api/v1/namespaces", timeout=10)
    assert err.value.code in (401, 403)


def test_pod_security_admission_enforces_baseline(
    control_plane: ControlPlane, make_namespace
) -> None:
    ns = make_namespace("psa", {"pod-security.kubernetes.io/enforce": "baseline"})
    host_path_pod = pod_manifest(
        "hostpath",
        volumes=[{"name": "h", "hostPath": {"path": "/var/lib/lxcfs/proc/meminfo"}}],
    )
    status, body = control_plane.request("POST", f"/api/v1/namespaces/{ns}/pods", host_path_pod)
    assert status == 403, body
    assert "violates PodSecurity" in json.loads(body)["message"]
    status, body = control_plane.request(
        "POST", f"/api/v1/namespaces/{ns}/pods", pod_manifest("plain")
    )
    assert status == 201, body


def test_deployment_pods_are_created_by_the_controllers(
    api_client, core_v1, make_namespace
) -> None:
    from kubernetes import client

    ns = make_namespace("deploy")
    labels = {"app": "smoke"}
    client.AppsV1Api(api_client).create_namespaced_deployment(
        ns,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "smoke"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": pod_manifest("x")["spec"],
                },
            },
        },
    )

    def two_pods() -> list | None:
        pods = core_v1.list_namespaced_pod(ns, label_selector="app=smoke").items
        return pods if len(pods) == 2 else None

    pods = wait_until(two_pods, 60, "the ReplicaSet controller to create 2 pods")
    for pod in pods:
        assert pod.metadata.owner_references[0].kind == "ReplicaSet"
        assert pod.metadata.generate_name


def test_helm_is_built_at_the_pinned_version(helm_binary: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [str(helm_binary), "version", "--short"], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith(required_version("helm", "helm.sh/helm/v3"))
    subprocess.run(
        [str(helm_binary), "create", "demo"], cwd=tmp_path, check=True, capture_output=True
    )
    rendered = subprocess.run(
        [str(helm_binary), "template", "demo", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        check=True,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    ).stdout
    assert "kind: Deployment" in rendered

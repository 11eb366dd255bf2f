"""The deployment's delivery modes: hostPath (default) and runtimeClass (issue 10).

runtimeClass mode adds the RuntimeClass object, the node agent's setup-node init container (host
/ at /host) and webhook flags, and stops excluding Pod Security baseline/restricted namespaces.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kube_lxcfs.deploy.render import render
from kube_lxcfs.deploy.values import ValuesError, resolve
from kube_lxcfs.runtime.install import HANDLER
from support.deploy_variants import RC_MODE

PSA = "pod-security.kubernetes.io/enforce"


def _kinds(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in objects}


def _webhook_args(objects: dict[str, dict[str, Any]]) -> list[str]:
    return objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]


def _selector_keys(objects: dict[str, dict[str, Any]]) -> list[set[str]]:
    hooks = objects["MutatingWebhookConfiguration"]["webhooks"]
    return [{e["key"] for e in h["namespaceSelector"]["matchExpressions"]} for h in hooks]


def test_defaults_are_the_hostpath_mode_without_runtime_class() -> None:
    objects = _kinds(render(resolve()))
    assert "RuntimeClass" not in objects
    assert "--inject-mode=hostPath" in _webhook_args(objects)
    assert not any(a.startswith("--runtime-class-name") for a in _webhook_args(objects))
    assert all(PSA in keys for keys in _selector_keys(objects))
    agent = objects["DaemonSet"]["spec"]["template"]["spec"]
    assert "initContainers" not in agent
    assert "host" not in {v["name"] for v in agent["volumes"]}


def test_runtime_class_mode() -> None:
    objects = _kinds(render(resolve(sets=RC_MODE)))
    rc = objects["RuntimeClass"]
    assert rc["apiVersion"] == "node.k8s.io/v1"
    assert rc["metadata"]["name"] == "kube-lxcfs"
    assert "namespace" not in rc["metadata"]
    assert rc["handler"] == HANDLER == "kube-lxcfs"  # what setup-node registers
    assert "scheduling" not in rc
    args = _webhook_args(objects)
    assert "--inject-mode=runtimeClass" in args
    assert "--runtime-class-name=kube-lxcfs" in args
    # The point of the mode: hardened namespaces are served, not excluded.
    assert all(PSA not in keys for keys in _selector_keys(objects))
    assert all("kubernetes.io/metadata.name" in keys for keys in _selector_keys(objects))

    agent = objects["DaemonSet"]["spec"]["template"]["spec"]
    (init,) = agent["initContainers"]
    assert init["command"] + init["args"] == [
        "kube-lxcfs",
        "setup-node",
        "--host-root=/host",
        "--best-effort",
    ]
    assert init["image"] == agent["containers"][0]["image"]
    assert init["securityContext"]["privileged"] is True
    assert init["volumeMounts"] == [{"name": "host", "mountPath": "/host"}]
    host = next(v for v in agent["volumes"] if v["name"] == "host")
    assert host["hostPath"] == {"path": "/", "type": "Directory"}


def test_runtime_class_name_and_node_selector_flow_everywhere() -> None:
    sets = [*RC_MODE, "runtimeClass.name=lxcfs.example.com", "runtimeClass.nodeSelector.pool=x"]
    objects = _kinds(render(resolve(sets=sets)))
    assert objects["RuntimeClass"]["metadata"]["name"] == "lxcfs.example.com"
    assert objects["RuntimeClass"]["scheduling"] == {"nodeSelector": {"pool": "x"}}
    assert "--runtime-class-name=lxcfs.example.com" in _webhook_args(objects)


def test_the_class_can_exist_without_the_webhook_mode_and_without_setup_node() -> None:
    objects = _kinds(
        render(resolve(sets=["runtimeClass.enabled=true", "runtimeClass.setupNode=false"]))
    )
    assert objects["RuntimeClass"]["handler"] == "kube-lxcfs"
    assert "--inject-mode=hostPath" in _webhook_args(objects)
    assert all(PSA in keys for keys in _selector_keys(objects))
    assert "initContainers" not in objects["DaemonSet"]["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["injection.mode=runtimeClass"], "needs runtimeClass.enabled=true"),
        (["injection.mode=sidecar"], "injection.mode"),
        ([*RC_MODE, "runtimeClass.name=Bad_Name"], "runtimeClass.name"),
    ],
)
def test_bad_mode_values_are_refused(sets: list[str], message: str) -> None:
    with pytest.raises(ValuesError, match=message):
        resolve(sets=sets)


def test_setup_node_best_effort_never_fails_the_agent(tmp_path: Path) -> None:
    """The init container's command on a node that cannot: reported, exit 0 (exit 1 without)."""
    base = [sys.executable, "-m", "kube_lxcfs", "setup-node", "--host-root", str(tmp_path)]
    strict = subprocess.run(base, capture_output=True, text=True, timeout=60, check=False)
    assert strict.returncode == 1, strict.stderr
    assert "python3 >= 3.10" in strict.stdout
    lenient = subprocess.run(
        [*base, "--best-effort"], capture_output=True, text=True, timeout=60, check=False
    )
    assert lenient.returncode == 0, lenient.stderr
    assert "python3 >= 3.10" in lenient.stdout and "--best-effort" in lenient.stdout
    assert list(tmp_path.iterdir()) == []  # nothing written on a node that cannot


def test_doctor_knows_the_runtime_class_mode(tmp_path: Path) -> None:
    """doctor: the class must exist (else FAIL), and hardened namespaces count as injected."""
    from kube_lxcfs.deploy.doctor import FAIL, OK, WARN, cluster_findings
    from kube_lxcfs.deploy.kubeapi import connect
    from support.fake_apiserver import fake_apiserver

    hardened = {"lxcfs-admission-webhook": "enabled", PSA: "restricted"}
    with fake_apiserver(tmp_path) as server:
        api = connect(str(server.kubeconfig))
        server.put(
            "/api/v1/namespaces/hardened",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "hardened",
                                                                   "labels": hardened}},
        )  # fmt: skip
        for obj in render(resolve(sets=["runtimeClass.enabled=true"])):
            api.apply(obj)
        findings = {f.check: f for f in cluster_findings(api, "lxcfs")}
        assert "runtime class" not in findings  # hostPath mode: the class is optional
        assert findings["namespace hardened"].level == WARN

        for obj in render(resolve(sets=RC_MODE)):
            api.apply(obj)
        findings = {f.check: f for f in cluster_findings(api, "lxcfs")}
        assert findings["runtime class"].level == OK
        assert "handler kube-lxcfs" in findings["runtime class"].detail
        assert "namespace hardened" not in findings
        assert "hardened" in findings["namespaces"].detail

        server.state.objects.pop("/apis/node.k8s.io/v1/runtimeclasses/kube-lxcfs")
        findings = {f.check: f for f in cluster_findings(api, "lxcfs")}
        assert findings["runtime class"].level == FAIL
        assert "refuses" in findings["runtime class"].detail
        assert "runtimeClass.enabled=true" in findings["runtime class"].fix

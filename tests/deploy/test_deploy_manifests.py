"""The rendered deployment: drift, schema validity on 1.25 → current, and what the issue asks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube_lxcfs.deploy import generate
from kube_lxcfs.deploy.render import from_yaml, normalize, render
from kube_lxcfs.deploy.values import ValuesError, parse_set, resolve
from support.deploy_variants import RUNTIME_CLASS_VARIANTS
from support.k8s_schemas import has_schema, validation_errors, versions

REPO = Path(__file__).resolve().parents[2]

VARIANTS = {
    "defaults": [],
    "cert-manager": ["certManager.enabled=true"],
    **RUNTIME_CLASS_VARIANTS,
    "agent-without-metrics": ["nodeAgent.metrics.enabled=false"],
    "monitoring+fail+no-opt-in": [
        "serviceMonitor.enabled=true",
        "podMonitor.enabled=true",
        "webhook.failurePolicy=Fail",
        "webhook.podOptIn=false",
        "createNamespace=false",
        "serviceAccount.create=false",
    ],
}


def _kinds(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in objects}


def _manifests_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kube_lxcfs", "manifests", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_committed_chart_and_manifest_are_what_the_code_generates() -> None:
    stale = generate.stale_files(REPO)
    assert stale == [], "run: python -m kube_lxcfs.deploy.generate"


def test_static_manifest_equals_manifests_command_output() -> None:
    proc = _manifests_cli()
    assert proc.returncode == 0, proc.stderr
    static = from_yaml((REPO / "deploy/manifests/kube-lxcfs.yaml").read_text())
    assert static == from_yaml(proc.stdout)
    assert [o["kind"] for o in static] == [
        "Namespace",
        "ServiceAccount",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "DaemonSet",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "MutatingWebhookConfiguration",
    ]


def test_the_drift_check_notices_an_edited_artefact(tmp_path: Path) -> None:
    generate.write(tmp_path)
    assert generate.stale_files(tmp_path) == []
    target = tmp_path / generate.CHART_DIR / "templates/daemonset.yaml"
    target.write_text(target.read_text().replace("hostPID: true", "hostPID: false"))
    (tmp_path / generate.CHART_DIR / "templates/extra.yaml").write_text("kind: ConfigMap\n")
    assert sorted(p.name for p in generate.stale_files(tmp_path)) == [
        "daemonset.yaml",
        "extra.yaml",
    ]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_object_validates_against_kubernetes_schemas(variant: str) -> None:
    objects = render(resolve(sets=VARIANTS[variant]))
    problems = []
    checked = 0
    for version in versions():
        for obj in objects:
            if obj["apiVersion"].startswith(("cert-manager.io/", "monitoring.coreos.com/")):
                continue  # custom resources: checked field by field below
            assert has_schema(obj, version), f"no schema for {obj['kind']} at {version}"
            problems += [f"{version}: {p}" for p in validation_errors(obj, version)]
            checked += 1
    assert problems == []
    assert checked >= 8 * len(versions())
    assert versions()[0] == "1.25.0"
    assert len(versions()) >= 10


def test_node_agent_daemonset() -> None:
    ds = _kinds(render(resolve()))["DaemonSet"]
    pod = ds["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["hostPID"] is True
    assert container["securityContext"]["privileged"] is True
    assert container["command"] + container["args"] == [
        "kube-lxcfs",
        "fs",
        "--metrics-address=:9110",
        "--health-deadline=10",
        "/var/lib/lxcfs",
    ]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert volumes["fuse"]["hostPath"] == {"path": "/dev/fuse", "type": "CharDevice"}
    assert volumes["cgroup"]["hostPath"]["path"] == "/sys/fs/cgroup"
    # kube-lxcfs fs --state-dir default: the repair records survive the agent pod.
    assert volumes["run"]["hostPath"] == {"path": "/run/kube-lxcfs", "type": "DirectoryOrCreate"}
    assert mounts["run"]["mountPath"] == "/run/kube-lxcfs"
    assert volumes["mount-dir"]["hostPath"] == {
        "path": "/var/lib/lxcfs",
        "type": "DirectoryOrCreate",
    }
    assert mounts["mount-dir"]["mountPropagation"] == "Bidirectional"
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["priorityClassName"] == "system-node-critical"
    assert ds["spec"]["updateStrategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}
    assert container["ports"] == [{"name": "metrics", "containerPort": 9110, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    # Deliberately a liveness probe now: a hung request loop blocks every pod's reads, and the
    # restarted agent repairs the running pods' bind mounts (docs/operations.md).
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["resources"]["requests"]
    assert ds["spec"]["template"]["metadata"]["annotations"] == {"kube-lxcfs.io/inject": "false"}


def _restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The Pod Security 'restricted' rules (v1.25+) that a pod spec breaks."""
    out = []
    if pod.get("hostPID") or pod.get("hostIPC") or pod.get("hostNetwork"):
        out.append("host namespaces")
    allowed = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
               "persistentVolumeClaim", "projected", "secret"}  # fmt: skip
    for volume in pod.get("volumes", []):
        if not set(volume) - {"name"} <= allowed:
            out.append(f"volume {volume['name']}")
    pod_sc = pod.get("securityContext", {})
    for c in pod["containers"] + pod.get("initContainers", []):
        sc = c.get("securityContext", {})
        if sc.get("privileged"):
            out.append("privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append("allowPrivilegeEscalation")
        if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc["capabilities"].get("add"):
            out.append("capabilities")
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            out.append("runAsNonRoot")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            out.append("runAsUser 0")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            out.append("seccomp")
    return out


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_webhook_deployment_is_restricted_compliant(variant: str) -> None:
    objects = _kinds(render(resolve(sets=VARIANTS[variant])))
    dep = objects["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    assert _restricted_violations(pod) == []
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert dep["spec"]["replicas"] == 2
    assert len(pod["topologySpreadConstraints"]) == 2
    assert objects["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    assert objects["PodDisruptionBudget"]["spec"]["selector"] == dep["spec"]["selector"]
    assert objects["Service"]["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]


def test_the_restricted_checker_can_fail() -> None:
    ds = _kinds(render(resolve()))["DaemonSet"]
    found = _restricted_violations(ds["spec"]["template"]["spec"])
    assert {"host namespaces", "privileged", "volume fuse"} <= set(found)


def _images(objects: list[dict[str, Any]]) -> dict[str, str]:
    kinds = _kinds(objects)
    return {
        kind: kinds[kind]["spec"]["template"]["spec"]["containers"][0]["image"]
        for kind in ("DaemonSet", "Deployment")
    }


@pytest.mark.parametrize("tag", ["1", "20251203", "1.0", "1.10", "007", "v1"])
def test_an_image_tag_is_text_from_the_command_line(tag: str) -> None:
    proc = _manifests_cli("--image", f"example.org/kube-lxcfs:{tag}")
    assert proc.returncode == 0, proc.stderr
    assert _images(from_yaml(proc.stdout))["DaemonSet"] == f"example.org/kube-lxcfs:{tag}"


@pytest.mark.parametrize("tag", ["2", "20251203", "1.0", "1.10"])
def test_an_image_tag_is_text_from_set(tag: str) -> None:
    proc = _manifests_cli("--set", f"webhook.image.tag={tag}")
    assert proc.returncode == 0, proc.stderr
    assert _images(from_yaml(proc.stdout))["Deployment"].endswith(f":{tag}")


def test_an_image_tag_is_text_from_a_values_file(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        "nodeAgent:\n  image:\n    tag: 1.10\nwebhook:\n  image:\n    tag: 20251203\n"
    )
    proc = _manifests_cli("-f", str(values))
    assert proc.returncode == 0, proc.stderr
    images = _images(from_yaml(proc.stdout))
    assert images["DaemonSet"].endswith(":1.10") and images["Deployment"].endswith(":20251203")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_workloads_get_no_service_link_variables(variant: str) -> None:
    """The kubelet's KUBE_LXCFS_WEBHOOK_PORT=tcp://... once crash-looped the webhook."""
    kinds = _kinds(render(resolve(sets=VARIANTS[variant])))
    for kind in ("DaemonSet", "Deployment"):
        assert kinds[kind]["spec"]["template"]["spec"]["enableServiceLinks"] is False, kind


def test_mutating_webhook_configuration() -> None:
    mwc = _kinds(render(resolve()))["MutatingWebhookConfiguration"]
    assert mwc["apiVersion"] == "admissionregistration.k8s.io/v1"
    by_ns, by_pod = mwc["webhooks"]
    for hook in (by_ns, by_pod):
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1", "v1beta1"]
        assert hook["timeoutSeconds"] <= 10
        assert hook["failurePolicy"] == "Ignore"
        assert hook["reinvocationPolicy"] == "IfNeeded"
        assert hook["clientConfig"]["service"] == {
            "name": "kube-lxcfs-webhook",
            "namespace": "lxcfs",
            "path": "/mutate",
            "port": 443,
        }
        assert hook["rules"][0]["operations"] == ["CREATE"]
        assert "caBundle" not in hook["clientConfig"]  # filled at run time
        exprs = {e["key"]: e for e in hook["namespaceSelector"]["matchExpressions"]}
        assert exprs["pod-security.kubernetes.io/enforce"] == {
            "key": "pod-security.kubernetes.io/enforce",
            "operator": "NotIn",
            "values": ["baseline", "restricted"],
        }
        assert exprs["kubernetes.io/metadata.name"]["values"] == ["lxcfs"]
    ns_rule = by_ns["namespaceSelector"]["matchExpressions"][0]
    assert ns_rule == {"key": "lxcfs-admission-webhook", "operator": "In", "values": ["enabled"]}
    pod_ns_rule = by_pod["namespaceSelector"]["matchExpressions"][0]
    assert pod_ns_rule["operator"] == "NotIn"  # never called twice for one pod
    assert by_pod["objectSelector"] == {"matchLabels": {"kube-lxcfs.io/inject": "true"}}


def test_rbac_is_limited_to_one_secret_and_one_configuration() -> None:
    objects = render(resolve(namespace="other"))
    role = next(o for o in objects if o["kind"] == "Role")
    cluster_role = next(o for o in objects if o["kind"] == "ClusterRole")
    for rule in role["rules"]:
        assert rule["resources"] == ["secrets"]
        if rule["verbs"] != ["create"]:
            assert rule["resourceNames"] == ["kube-lxcfs-webhook-tls"]
    (rule,) = cluster_role["rules"]
    assert rule["resourceNames"] == ["kube-lxcfs-webhook"]
    assert "create" not in rule["verbs"] and "delete" not in rule["verbs"]
    agent_sa = next(o for o in objects if o["kind"] == "ServiceAccount")
    assert agent_sa["automountServiceAccountToken"] is False
    assert all(o["metadata"].get("namespace", "other") == "other" for o in objects)


def test_cert_manager_variant() -> None:
    objects = render(resolve(sets=["certManager.enabled=true"]))
    kinds = [o["kind"] for o in objects]
    assert kinds.count("Issuer") == 2 and kinds.count("Certificate") == 2
    assert "Role" not in kinds and "ClusterRole" not in kinds
    mwc = _kinds(objects)["MutatingWebhookConfiguration"]
    assert mwc["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": "lxcfs/kube-lxcfs-webhook"
    }
    serving = next(
        o
        for o in objects
        if o["metadata"]["name"] == "kube-lxcfs-webhook" and o["kind"] == "Certificate"
    )
    assert "kube-lxcfs-webhook.lxcfs.svc" in serving["spec"]["dnsNames"]
    dep = _kinds(objects)["Deployment"]
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not any(a.startswith("--self-provision") for a in args)
    (volume,) = dep["spec"]["template"]["spec"]["volumes"]
    assert volume["secret"]["secretName"] == serving["spec"]["secretName"]


def test_agent_without_metrics_has_no_liveness_probe() -> None:
    ds = _kinds(render(resolve(sets=["nodeAgent.metrics.enabled=false"])))["DaemonSet"]
    container = ds["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["/var/lib/lxcfs"]
    assert "ports" not in container
    assert container["readinessProbe"]["exec"]["command"] == ["cat", "/var/lib/lxcfs/proc/meminfo"]
    assert "livenessProbe" not in container  # nothing tells a hung loop from a busy one


def test_pod_monitor_variant() -> None:
    assert "PodMonitor" not in _kinds(render(resolve()))
    objects = _kinds(render(resolve(sets=["podMonitor.enabled=true"])))
    monitor = objects["PodMonitor"]
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"] == objects["DaemonSet"]["spec"]["selector"]


def test_service_monitor_variant() -> None:
    objects = _kinds(render(resolve(sets=["serviceMonitor.enabled=true"])))
    monitor = objects["ServiceMonitor"]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    ports = {p["name"] for p in objects["Service"]["spec"]["ports"]}
    assert "metrics" in ports


def test_values_flow_into_the_objects() -> None:
    objects = _kinds(
        render(
            resolve(
                namespace="ops",
                sets=[
                    "mountDir=/run/lxcfs",
                    "injectedFiles={proc/meminfo,proc/cpuinfo}",
                    "webhook.replicaCount=3",
                    "nodeAgent.extraArgs={--disable-loadavg}",
                ],
            )
        )
    )
    ds_container = objects["DaemonSet"]["spec"]["template"]["spec"]["containers"][0]
    assert ds_container["args"][-2:] == ["/run/lxcfs", "--disable-loadavg"]
    wh_args = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--mount-dir=/run/lxcfs" in wh_args
    assert "--files=proc/meminfo,proc/cpuinfo" in wh_args
    assert objects["Deployment"]["spec"]["replicas"] == 3
    assert objects["Namespace"]["metadata"]["name"] == "ops"


def test_parse_set_follows_helm_scalars() -> None:
    assert parse_set("a.b=true") == (["a", "b"], True)
    assert parse_set("a=3") == (["a"], 3)
    assert parse_set("a=0.1.0") == (["a"], "0.1.0")
    assert parse_set("a={x,y}") == (["a"], ["x", "y"])
    assert parse_set("a={}") == (["a"], [])
    for bad in ("novalue", "=x", "a..b=1"):
        with pytest.raises(ValuesError):
            parse_set(bad)


def test_values_file_and_set_precedence(tmp_path: Path) -> None:
    values_file = tmp_path / "v.yaml"
    values_file.write_text(yaml.safe_dump({"webhook": {"replicaCount": 4, "timeoutSeconds": 3}}))
    values = resolve(values_files=[str(values_file)], sets=["webhook.replicaCount=5"])
    assert values["webhook"]["replicaCount"] == 5
    assert values["webhook"]["timeoutSeconds"] == 3
    assert values["webhook"]["port"] == 8443  # maps merge


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "webhook.failurePolicy=Sometimes"], "webhook.failurePolicy"),
        (["--set", "nope=1"], "'nope' was unexpected"),
        (["--set", "broken"], "key=value"),
        (["-n", "Bad_Name"], "DNS label"),
        (["-f", "/nonexistent/values.yaml"], "No such file"),
    ],
)
def test_bad_values_are_one_line_usage_errors(args: list[str], message: str) -> None:
    proc = _manifests_cli(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_image_options() -> None:
    proc = _manifests_cli("--image", "registry:5000/team/agent:v9", "--webhook-image", "hook")
    assert proc.returncode == 0, proc.stderr
    objects = _kinds(from_yaml(proc.stdout))
    agent = objects["DaemonSet"]["spec"]["template"]["spec"]["containers"][0]["image"]
    hook = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert agent == "registry:5000/team/agent:v9"
    assert hook == "hook:0.1.0"


def test_normalize_is_keyed_by_identity() -> None:
    objects = render(resolve())
    assert len(normalize(objects)) == len(objects)

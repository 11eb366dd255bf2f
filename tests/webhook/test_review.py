"""The pure review over hand-written AdmissionReview fixtures (v1 and v1beta1).

Every returned patch is applied with the jsonpatch library, the result is validated against the
Kubernetes OpenAPI schemas of several versions, and reviewing the result again gives no patch.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kube_lxcfs.files import INJECTED_FILES
from kube_lxcfs.webhook import admission as review_mod
from kube_lxcfs.webhook.admission import BadReviewError, decode_patch, review
from kube_lxcfs.webhook.config import InjectOptions, make_options
from webhook.podcheck import (
    apply,
    as_version,
    assert_consistent,
    assert_schema_valid_like,
    load,
)

DEFAULT = InjectOptions()
V1 = "admission.k8s.io/v1"
V1BETA1 = "admission.k8s.io/v1beta1"

DEFAULT_MOUNT_PATHS = ["/" + path.rstrip("/") for path in INJECTED_FILES]
"""The table's default list (pinned as a compatibility contract in tests/unit/test_table.py)."""

MUTATED_FIXTURES = [
    "bare-pod.json",
    "deployment-pod.json",
    "existing-volumes.json",
    "conflicting-mountpath.json",
    "init-and-sidecar.json",
    "opt-in-label.json",
    "seed-injected-v1beta1.json",
]
UNTOUCHED_FIXTURES = {
    "opt-out-seed-annotation.json": ("skipped", "opt-out"),
    "opt-out-own-annotation.json": ("skipped", "opt-out"),
    "mirror-pod.json": ("skipped", "mirror-pod"),
    "kube-system-pod.json": ("skipped", "namespace"),
    "own-agent-pod.json": ("skipped", "own-pod"),
    "non-pod-configmap.json": ("ignored", "not a pod"),
}


def run(review_doc: dict[str, Any], opts: InjectOptions = DEFAULT) -> tuple[Any, list[dict]]:
    result = review(review_doc, opts)
    return result, decode_patch(result.response)


def mounts_of(container: dict[str, Any]) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}


def huge_review(containers: int = 100) -> dict[str, Any]:
    doc = load("deployment-pod.json")
    template = doc["request"]["object"]["spec"]["containers"][0]
    pod_containers = []
    for i in range(containers):
        c = copy.deepcopy(template)
        c["name"] = f"worker-{i}"
        pod_containers.append(c)
    doc["request"]["object"]["spec"]["containers"] = pod_containers
    return doc


ALL_MUTATED = [*MUTATED_FIXTURES, "huge"]


def fixture(name: str) -> dict[str, Any]:
    return huge_review() if name == "huge" else load(name)


@pytest.mark.parametrize("api_version", [V1, V1BETA1])
@pytest.mark.parametrize("name", ALL_MUTATED)
def test_patch_applies_validates_and_is_idempotent(name: str, api_version: str) -> None:
    doc = as_version(fixture(name), api_version)
    pod = doc["request"]["object"]
    result, ops = run(doc)

    assert result.response["apiVersion"] == api_version
    assert result.response["kind"] == "AdmissionReview"
    assert result.response["response"]["uid"] == doc["request"]["uid"]
    assert result.response["response"]["allowed"] is True
    assert result.response["response"]["patchType"] == "JSONPatch"
    assert ops and all(op["op"] == "add" for op in ops)

    patched = apply(pod, ops)
    assert_consistent(patched)
    assert_schema_valid_like(pod, patched)
    assert patched["metadata"]["annotations"]["kube-lxcfs.io/status"] in {"injected", "partial"}

    again = copy.deepcopy(doc)
    again["request"]["object"] = patched
    second, second_ops = run(again)
    assert second_ops == []
    assert "patch" not in second.response["response"]
    assert second.outcome == "unchanged"


@pytest.mark.parametrize("api_version", [V1, V1BETA1])
@pytest.mark.parametrize(("name", "expected"), UNTOUCHED_FIXTURES.items())
def test_untouched_pods_are_allowed_without_patch(
    name: str, expected: tuple[str, str], api_version: str
) -> None:
    doc = as_version(load(name), api_version)
    result, ops = run(doc)
    assert ops == []
    assert result.response == {
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "response": {"uid": doc["request"]["uid"], "allowed": True},
    }
    assert (result.outcome, result.reason) == expected


def test_bare_pod_exact_patch() -> None:
    opts = make_options(files=["proc/meminfo", "sys/devices/system/cpu"], mount_dir="/run/lxcfs/")
    _, ops = run(load("bare-pod.json"), opts)
    assert ops == [
        {
            "op": "add",
            "path": "/spec/volumes",
            "value": [
                {
                    "name": "lxcfs-proc-meminfo",
                    "hostPath": {"path": "/run/lxcfs/proc/meminfo", "type": "File"},
                },
                {
                    "name": "lxcfs-sys-devices-system-cpu",
                    "hostPath": {"path": "/run/lxcfs/sys/devices/system/cpu", "type": "Directory"},
                },
            ],
        },
        {
            "op": "add",
            "path": "/spec/containers/0/volumeMounts",
            "value": [
                {"name": "lxcfs-proc-meminfo", "mountPath": "/proc/meminfo", "readOnly": True},
                {
                    "name": "lxcfs-sys-devices-system-cpu",
                    "mountPath": "/sys/devices/system/cpu",
                    "readOnly": True,
                },
            ],
        },
        {
            "op": "add",
            "path": "/metadata/annotations",
            "value": {"kube-lxcfs.io/status": "injected"},
        },
    ]


def test_default_files_and_host_path_types() -> None:
    doc = load("bare-pod.json")
    _, ops = run(doc)
    patched = apply(doc["request"]["object"], ops)
    volumes = {v["name"]: v["hostPath"] for v in patched["spec"]["volumes"]}
    for f in (p.removeprefix("proc/") for p in INJECTED_FILES if p.startswith("proc/")):
        assert volumes[f"lxcfs-proc-{f}"] == {"path": f"/var/lib/lxcfs/proc/{f}", "type": "File"}
    assert volumes["lxcfs-sys-devices-system-cpu"] == {
        "path": "/var/lib/lxcfs/sys/devices/system/cpu",
        "type": "Directory",
    }
    mounts = patched["spec"]["containers"][0]["volumeMounts"]
    assert [m["mountPath"] for m in mounts] == DEFAULT_MOUNT_PATHS
    assert all(m["readOnly"] is True for m in mounts)


def test_controller_pod_uses_request_namespace_and_keeps_every_field() -> None:
    doc = load("deployment-pod.json")
    pod = doc["request"]["object"]
    result, ops = run(doc)
    assert result.namespace == "shop"
    assert result.name == "cart-7d4b9c8f6b-"
    # Existing arrays are appended to, never replaced.
    assert [op["path"] for op in ops[:8]] == ["/spec/volumes/-"] * 8
    assert [op["path"] for op in ops[8:16]] == ["/spec/containers/0/volumeMounts/-"] * 8
    patched = apply(pod, ops)
    for key in ("ownerReferences", "managedFields", "labels", "generateName", "creationTimestamp"):
        assert patched["metadata"][key] == pod["metadata"][key]
    assert patched["spec"]["volumes"][0] == pod["spec"]["volumes"][0]
    for key in ("tolerations", "preemptionPolicy", "enableServiceLinks", "schedulerName"):
        assert patched["spec"][key] == pod["spec"][key]
    assert patched["status"] == {}


def test_kube_system_is_skipped_by_request_namespace_even_without_object_namespace() -> None:
    doc = load("kube-system-pod.json")
    assert "namespace" not in doc["request"]["object"]["metadata"]
    result, _ = run(doc)
    assert result.reason == "namespace"
    # The same pod in another request namespace is injected.
    doc["request"]["namespace"] = "apps"
    result, ops = run(doc)
    assert result.outcome == "injected" and ops


def test_own_namespace_is_never_mutated() -> None:
    opts = make_options(own_namespace="kube-lxcfs")
    doc = load("bare-pod.json")
    doc["request"]["namespace"] = "kube-lxcfs"
    assert run(doc, opts)[0].reason == "namespace"


def test_annotation_keys_are_escaped_and_existing_annotations_kept() -> None:
    doc = load("existing-volumes.json")
    pod = doc["request"]["object"]
    _, ops = run(doc)
    assert ops[-1] == {
        "op": "add",
        "path": "/metadata/annotations/kube-lxcfs.io~1status",
        "value": "injected",
    }
    patched = apply(pod, ops)
    assert patched["metadata"]["annotations"] == {
        **pod["metadata"]["annotations"],
        "kube-lxcfs.io/status": "injected",
    }
    redis, exporter = patched["spec"]["containers"]
    assert list(mounts_of(redis))[:2] == ["/data", "/etc/redis"]
    assert list(mounts_of(redis))[2:] == DEFAULT_MOUNT_PATHS
    assert list(mounts_of(exporter)) == DEFAULT_MOUNT_PATHS


def test_conflicting_mount_path_and_volume_name_are_left_alone_with_warnings() -> None:
    doc = load("conflicting-mountpath.json")
    result, ops = run(doc)
    patched = apply(doc["request"]["object"], ops)
    app, plain = patched["spec"]["containers"]
    # app keeps its own /proc/meminfo; plain gets ours.
    assert mounts_of(app)["/proc/meminfo"] == "fake-meminfo"
    assert mounts_of(plain)["/proc/meminfo"] == "lxcfs-proc-meminfo"
    # A foreign volume already named lxcfs-proc-stat: /proc/stat is injected nowhere.
    assert "/proc/stat" not in mounts_of(app) and "/proc/stat" not in mounts_of(plain)
    stat_volume = [v for v in patched["spec"]["volumes"] if v["name"] == "lxcfs-proc-stat"]
    assert stat_volume == [{"name": "lxcfs-proc-stat", "emptyDir": {}}]
    assert result.outcome == "partial"
    assert patched["metadata"]["annotations"]["kube-lxcfs.io/status"] == "partial"
    warnings = result.response["response"]["warnings"]
    assert len(warnings) == 2
    assert "/proc/meminfo" in warnings[0] and "app mounts fake-meminfo" in warnings[0]
    assert "/proc/stat" in warnings[1] and "lxcfs-proc-stat" in warnings[1]


def test_everything_taken_is_a_conflict() -> None:
    opts = make_options(files=["proc/meminfo"])
    doc = load("conflicting-mountpath.json")
    doc["request"]["object"]["spec"]["containers"].pop()  # only "app", whose meminfo is taken
    result, ops = run(doc, opts)
    assert result.outcome == "conflict"
    assert ops == [
        {"op": "add", "path": "/metadata/annotations/kube-lxcfs.io~1status", "value": "conflict"}
    ]
    assert len(result.response["response"]["warnings"]) == 1


@pytest.mark.parametrize("inject_init", [True, False])
def test_init_containers_and_native_sidecars(inject_init: bool) -> None:
    opts = make_options(inject_init_containers=inject_init)
    doc = load("init-and-sidecar.json")
    _, ops = run(doc, opts)
    patched = apply(doc["request"]["object"], ops)
    migrate, proxy = patched["spec"]["initContainers"]
    (api,) = patched["spec"]["containers"]
    assert list(mounts_of(proxy)) == ["/etc/envoy", *DEFAULT_MOUNT_PATHS]  # sidecar: always
    assert list(mounts_of(api)) == DEFAULT_MOUNT_PATHS
    assert list(mounts_of(migrate)) == (DEFAULT_MOUNT_PATHS if inject_init else [])
    assert proxy["restartPolicy"] == "Always"  # the field typed models used to drop


def test_seed_injected_pod_only_gets_what_is_missing() -> None:
    doc = load("seed-injected-v1beta1.json")
    result, ops = run(doc)
    assert result.response["apiVersion"] == V1BETA1
    assert ops == [
        {
            "op": "add",
            "path": "/spec/volumes/-",
            "value": {
                "name": "lxcfs-sys-devices-system-cpu",
                "hostPath": {"path": "/var/lib/lxcfs/sys/devices/system/cpu", "type": "Directory"},
            },
        },
        {
            "op": "add",
            "path": "/spec/containers/0/volumeMounts/-",
            "value": {
                "name": "lxcfs-sys-devices-system-cpu",
                "mountPath": "/sys/devices/system/cpu",
                "readOnly": True,
            },
        },
        {"op": "add", "path": "/metadata/annotations/kube-lxcfs.io~1status", "value": "injected"},
    ]


def test_huge_pod_patch_is_linear() -> None:
    doc = huge_review(100)
    result, ops = run(doc)
    assert result.outcome == "injected"
    assert len(ops) == 8 + 100 * 8 + 1
    assert len(json.dumps(ops)) < 200_000


def test_update_is_not_mutated() -> None:
    doc = load("bare-pod.json")
    doc["request"]["operation"] = "UPDATE"
    doc["request"]["oldObject"] = copy.deepcopy(doc["request"]["object"])
    assert run(doc)[0].reason == "operation"


def test_pod_subresources_are_ignored() -> None:
    doc = load("bare-pod.json")
    doc["request"]["subResource"] = "ephemeralcontainers"
    assert run(doc)[0].outcome == "ignored"
    doc = load("bare-pod.json")
    doc["request"]["resource"]["resource"] = "bindings"
    assert run(doc)[0].outcome == "ignored"


def test_dry_run_is_answered_like_a_real_request() -> None:
    doc = load("bare-pod.json")
    doc["request"]["dryRun"] = True
    assert run(doc)[0].outcome == "injected"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.__setitem__("apiVersion", "admission.k8s.io/v2"), "apiVersion"),
        (lambda d: d.__setitem__("kind", "Review"), "kind"),
        (lambda d: d.pop("request"), "request is missing"),
        (lambda d: d["request"].pop("uid"), "uid"),
        (lambda d: d["request"].__setitem__("uid", 7), "uid"),
        (lambda d: d["request"].__setitem__("object", None), "object"),
        (lambda d: d["request"].__setitem__("object", [1]), "object"),
    ],
)
def test_bad_reviews_raise(mutate: Any, message: str) -> None:
    doc = load("bare-pod.json")
    mutate(doc)
    with pytest.raises(BadReviewError, match=message):
        review(doc, DEFAULT)


@pytest.mark.parametrize("body", [None, [], "review", 3, {"request": {}}])
def test_non_objects_are_bad_reviews(body: Any) -> None:
    with pytest.raises(BadReviewError):
        review(body, DEFAULT)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda s: s.__setitem__("containers", {"name": "c"}),
        lambda s: s.__setitem__("containers", ["c"]),
        lambda s: s["containers"][0].__setitem__("volumeMounts", "x"),
        lambda s: s.__setitem__("volumes", {}),
    ],
)
def test_malformed_pods_are_allowed_untouched_with_a_warning(breakage: Any) -> None:
    doc = load("bare-pod.json")
    breakage(doc["request"]["object"]["spec"])
    result, ops = run(doc)
    assert ops == []
    assert (result.outcome, result.reason) == ("skipped", "malformed")
    assert result.response["response"]["allowed"] is True
    assert result.response["response"]["warnings"][0].startswith("kube-lxcfs: pod not injected")


def test_null_arrays_are_created(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = load("bare-pod.json")
    spec = doc["request"]["object"]["spec"]
    spec["volumes"] = None
    spec["containers"][0]["volumeMounts"] = None
    doc["request"]["object"]["metadata"]["annotations"] = None
    _, ops = run(doc)
    assert [op["path"] for op in ops] == [
        "/spec/volumes",
        "/spec/containers/0/volumeMounts",
        "/metadata/annotations",
    ]


def test_internal_error_allows_with_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(pod: Any, opts: Any) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(review_mod, "plan_mutation", broken)
    doc = load("bare-pod.json")
    result, ops = run(doc)
    assert ops == []
    assert result.outcome == "error" and isinstance(result.error, KeyError)
    assert result.response["response"] == {
        "uid": doc["request"]["uid"],
        "allowed": True,
        "warnings": [review_mod.INTERNAL_ERROR_WARNING],
    }


def test_windows_pods_are_skipped() -> None:
    doc = load("bare-pod.json")
    doc["request"]["object"]["spec"]["os"] = {"name": "windows"}
    assert run(doc)[0].reason == "windows"
    doc["request"]["object"]["spec"]["os"] = {"name": "linux"}
    assert run(doc)[0].outcome == "injected"

"""``--inject-mode runtimeclass``: the pod gets spec.runtimeClassName and the status annotation,
never a volume (Pod Security baseline/restricted admit it); another class is kept; idempotent."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from kube_lxcfs.webhook.admission import decode_patch, review
from kube_lxcfs.webhook.config import ConfigError, make_options
from webhook.podcheck import apply, as_version, assert_consistent, assert_schema_valid_like, load
from webhook.test_command import run_cli
from webhook.test_properties import contains, pods, wrap
from webhook.test_review import ALL_MUTATED, UNTOUCHED_FIXTURES, V1, V1BETA1, fixture

RC = make_options(mode="runtimeclass")
STATUS = "kube-lxcfs.io/status"


def run(doc: dict[str, Any], opts: Any = RC) -> tuple[Any, list[dict[str, Any]]]:
    result = review(doc, opts)
    return result, decode_patch(result.response)


def bare(**spec: Any) -> dict[str, Any]:
    doc = load("bare-pod.json")
    doc["request"]["object"]["spec"].update(spec)
    return doc


def test_bare_pod_exact_patch() -> None:
    result, ops = run(load("bare-pod.json"))
    assert ops == [
        {"op": "add", "path": "/spec/runtimeClassName", "value": "kube-lxcfs"},
        {"op": "add", "path": "/metadata/annotations", "value": {STATUS: "injected"}},
    ]
    assert result.outcome == "injected"
    assert "warnings" not in result.response["response"]


@pytest.mark.parametrize("api_version", [V1, V1BETA1])
@pytest.mark.parametrize("name", ALL_MUTATED)
def test_every_fixture_gets_the_class_and_no_volume(name: str, api_version: str) -> None:
    doc = as_version(fixture(name), api_version)
    pod = doc["request"]["object"]
    result, ops = run(doc)
    assert result.response["response"]["patchType"] == "JSONPatch"
    assert all(op["op"] == "add" for op in ops)
    assert not any("volume" in op["path"].lower() for op in ops)
    patched = apply(pod, ops)
    assert patched["spec"]["runtimeClassName"] == "kube-lxcfs"
    assert patched["spec"].get("volumes") == pod["spec"].get("volumes")
    assert patched["metadata"]["annotations"][STATUS] == "injected"
    assert_consistent(patched)
    assert_schema_valid_like(pod, patched)

    again = copy.deepcopy(doc)
    again["request"]["object"] = patched
    second, second_ops = run(again)
    assert second_ops == [] and "patch" not in second.response["response"]
    assert second.outcome == "unchanged"


@pytest.mark.parametrize(("name", "expected"), UNTOUCHED_FIXTURES.items())
def test_selection_rules_are_the_same_in_both_modes(name: str, expected: tuple[str, str]) -> None:
    result, ops = run(load(name))
    assert ops == []
    assert (result.outcome, result.reason) == expected


def test_a_pod_with_another_runtime_class_keeps_it_with_a_warning() -> None:
    result, ops = run(bare(runtimeClassName="gvisor"))
    assert ops == []
    assert "patch" not in result.response["response"]
    [warning] = result.response["response"]["warnings"]
    assert "gvisor" in warning and "kube-lxcfs" in warning
    assert result.reason == "conflict"


def test_a_pod_already_on_our_class_only_gets_the_annotation() -> None:
    _, ops = run(bare(runtimeClassName="kube-lxcfs"))
    assert ops == [{"op": "add", "path": "/metadata/annotations", "value": {STATUS: "injected"}}]


def test_an_empty_runtime_class_name_is_replaced() -> None:
    _, ops = run(bare(runtimeClassName=""))
    assert {"op": "add", "path": "/spec/runtimeClassName", "value": "kube-lxcfs"} in ops


def test_the_class_name_is_configurable() -> None:
    _, ops = run(load("bare-pod.json"), make_options(mode="runtimeclass", runtime_class_name="x.y"))
    assert ops[0] == {"op": "add", "path": "/spec/runtimeClassName", "value": "x.y"}


def test_a_non_string_class_name_is_malformed_and_allowed_untouched() -> None:
    result, ops = run(bare(runtimeClassName=7))
    assert ops == [] and result.reason == "malformed"
    assert result.response["response"]["allowed"] is True


def test_hostpath_mode_is_the_default_and_unchanged() -> None:
    _, ops = run(load("bare-pod.json"), make_options())
    assert any(op["path"] == "/spec/volumes" for op in ops)
    assert not any(op["path"] == "/spec/runtimeClassName" for op in ops)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "sidecar"}, "inject mode"),
        ({"mode": "runtimeclass", "runtime_class_name": "Kube_LXCFS"}, "DNS subdomain"),
        ({"mode": "runtimeclass", "runtime_class_name": ""}, "DNS subdomain"),
        ({"mode": "runtimeclass", "runtime_class_name": "a" * 254}, "DNS subdomain"),
    ],
)
def test_bad_options_are_config_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_options(**kwargs)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pod=pods())
def test_runtime_class_patch_properties(pod: dict[str, Any]) -> None:
    """Applies, only adds, keeps every field, never touches volumes or mounts, idempotent."""
    original = copy.deepcopy(pod)
    result = review(wrap(pod), RC)
    assert pod == original
    assert result.outcome != "error", result.error
    ops = decode_patch(result.response)
    assert all(op["op"] == "add" for op in ops)
    assert {op["path"] for op in ops} <= {
        "/spec/runtimeClassName",
        "/metadata/annotations",
        "/metadata/annotations/kube-lxcfs.io~1status",
    }
    patched = apply(pod, ops)
    kept = copy.deepcopy(original)
    (kept["metadata"].get("annotations") or {}).pop(STATUS, None)
    assert contains(patched, kept)
    assert patched["spec"]["runtimeClassName"] == "kube-lxcfs"
    assert patched["metadata"]["annotations"][STATUS] == "injected"
    assert decode_patch(review(wrap(patched), RC).response) == []


def _certs(tmp_path: Path) -> list[str]:
    from webhook.pki import new_ca

    new_ca().issue(tmp_path / "tls.crt", tmp_path / "tls.key", ["x.y.svc"])
    return ["--tls-cert", str(tmp_path / "tls.crt"), "--tls-key", str(tmp_path / "tls.key")]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--inject-mode", "sidecar"], {}, "invalid choice"),
        ([], {"KUBE_LXCFS_WEBHOOK_INJECT_MODE": "sidecar"}, "KUBE_LXCFS_WEBHOOK_INJECT_MODE"),
        (["--inject-mode", "runtimeclass", "--runtime-class-name", "No_Good"], {}, "No_Good"),
        ([], {"KUBE_LXCFS_WEBHOOK_RUNTIME_CLASS_NAME": "No_Good"}, "DNS subdomain"),
    ],
)
def test_bad_mode_flags_are_usage_errors(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    proc = run_cli([*_certs(tmp_path), *args], env=env)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_help_documents_the_mode_flags(tmp_path: Path) -> None:
    proc = run_cli(["--help"])
    out = " ".join(proc.stdout.split())
    for flag in ("--inject-mode", "--runtime-class-name"):
        assert flag in out
    assert "KUBE_LXCFS_WEBHOOK_INJECT_MODE" in out.replace(" ", "")
    assert "default: hostpath" in out

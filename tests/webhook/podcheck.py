"""Test-side checks of a patched pod: apply the patch with a JSON-patch library, validate against
the Kubernetes OpenAPI schemas bundled by kubernetes-validate, and the API server's semantic
rules that a schema cannot express (unique names, mounts that refer to volumes)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonpatch
from kubernetes_validate import utils as kv

FIXTURES = Path(__file__).parent / "fixtures"

# Schema versions checked: the oldest bundled by kubernetes-validate, the first with native
# sidecars (restartPolicy on containers, 1.29 GA-beta), a recent one and the newest.
SCHEMA_VERSIONS = ("1.25", "1.29", "1.33", "1.37")

# core/v1 HostPathType values (API reference, HostPathVolumeSource.type).
HOST_PATH_TYPES = {
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
}


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def as_version(review: dict[str, Any], api_version: str) -> dict[str, Any]:
    """The same review sent as another admission.k8s.io version (the request shape is shared)."""
    other = copy.deepcopy(review)
    other["apiVersion"] = api_version
    return other


def apply(pod: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply with the jsonpatch library (independent of the code under test)."""
    return jsonpatch.JsonPatch(ops).apply(pod, in_place=False)


def valid_versions(pod: dict[str, Any]) -> list[str]:
    """The schema versions (strict: no unknown fields) the pod validates against."""
    ok = []
    for version in SCHEMA_VERSIONS:
        try:
            kv.validate(pod, version, strict=True)
        except kv.ValidationError:
            continue
        ok.append(version)
    return ok


def assert_schema_valid_like(original: dict[str, Any], patched: dict[str, Any]) -> list[str]:
    """The patched pod validates wherever the original did, and in at least the newest schema."""
    before = valid_versions(original)
    assert SCHEMA_VERSIONS[-1] in before, "fixture must be a valid pod in the newest schema"
    for version in before:
        kv.validate(patched, version, strict=True)  # raises with the schema path on failure
    return before


def assert_consistent(pod: dict[str, Any]) -> None:
    """Rules the API server's validation enforces beyond the schema."""
    spec = pod["spec"]
    volumes = spec.get("volumes") or []
    names = [v["name"] for v in volumes]
    assert len(names) == len(set(names)), f"duplicate volume names: {names}"
    for volume in volumes:
        if "hostPath" in volume:
            assert volume["hostPath"].get("type", "") in HOST_PATH_TYPES
            assert volume["hostPath"]["path"].startswith("/")
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            mounts = container.get("volumeMounts") or []
            paths = [m["mountPath"] for m in mounts]
            assert len(paths) == len(set(paths)), f"{container['name']}: duplicate mount paths"
            for mount in mounts:
                assert mount["name"] in names, f"{container['name']}: mount of unknown volume"

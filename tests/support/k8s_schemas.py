"""Offline validation of Kubernetes objects against the JSON schemas of several releases.

The schemas come from the ``kubernetes-validate`` package (test-only dependency,
deps/pip/deploy.txt), which bundles them for every release from 1.25 on; nothing
is fetched at test time. Custom resources (cert-manager, Prometheus Operator) have
no schema there and are reported as such, never silently passed.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
from kubernetes_validate.utils import all_versions

# Oldest supported release to the newest the package knows.
MIN_VERSION = (1, 25)


def versions() -> list[str]:
    """Every bundled Kubernetes version from 1.25 to the newest, e.g. '1.25.0'."""
    out = []
    for version in all_versions():
        major, minor = (int(x) for x in version.split(".")[:2])
        if (major, minor) >= MIN_VERSION and version not in out:
            out.append(version)
    return out


def has_schema(obj: dict[str, Any], version: str) -> bool:
    """True when the package has a schema for the object's kind at ``version``."""
    try:
        kubernetes_validate.validate(
            {"apiVersion": obj["apiVersion"], "kind": obj["kind"]}, version, strict=False
        )
    except kubernetes_validate.SchemaNotFoundError:
        return False
    except kubernetes_validate.ValidationError:
        return True
    return True


def validation_errors(obj: dict[str, Any], version: str, *, strict: bool = True) -> list[str]:
    """Schema violations of ``obj`` at ``version`` (strict: unknown fields are errors)."""
    try:
        kubernetes_validate.validate(obj, version, strict=strict)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        return [f"{obj['kind']}/{obj['metadata'].get('name')} at {where}: {exc.message}"]
    return []

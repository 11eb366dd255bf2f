"""``install`` and ``uninstall``: apply or remove the rendered objects, idempotently.

Apply is server-side apply (one PATCH per object, creating or updating it), so a
second install changes nothing and says "unchanged". Uninstall removes the
MutatingWebhookConfiguration first: once the webhook is gone nothing routes pod
creations to it, so no pod creation can fail or hang while the rest goes away.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kube_lxcfs.deploy.kubeapi import ApiError, KubeApi, collection_path, describe, object_path
from kube_lxcfs.deploy.values import NAMESPACE_LABEL
from kube_lxcfs.errors import KubeLxcfsError

Say = Callable[[str], None]
CRD_GROUPS = {"cert-manager.io": "cert-manager", "monitoring.coreos.com": "the Prometheus Operator"}


class InstallError(KubeLxcfsError):
    """An object could not be applied or removed; the message says which and why."""


def _missing_api_hint(obj: dict[str, Any]) -> str:
    group = obj["apiVersion"].split("/")[0]
    if group in CRD_GROUPS:
        return f" ({CRD_GROUPS[group]} is not installed: its {obj['kind']} API is missing)"
    return ""


def install(
    api: KubeApi | None, objects: list[dict[str, Any]], say: Say, *, dry_run: str = ""
) -> dict[str, str]:
    """Apply ``objects`` in order; one progress line per object; result word by object.

    ``dry_run``: "" (apply), "client" (print only, no API calls), "server" (the API
    server validates and admits everything but stores nothing).
    """
    results: dict[str, str] = {}
    for obj in objects:
        name = describe(obj)
        if dry_run == "client":
            word = "would be applied (client dry run)"
        else:
            assert api is not None
            word = _apply_one(api, obj, dry_run=dry_run == "server")
        results[name] = word
        say(f"{name} {word}")
    return results


def _apply_one(api: KubeApi, obj: dict[str, Any], *, dry_run: bool) -> str:
    path = object_path(obj)
    try:
        before = api.get(path)
        after = api.apply(obj, dry_run=dry_run)
    except ApiError as exc:
        namespace = obj["metadata"].get("namespace")
        if dry_run and exc.status == 404 and f'namespaces "{namespace}" not found' in exc.message:
            # A dry run stores nothing, not even the namespace it would create first.
            return (
                f"created (server dry run; not validated: namespace {namespace} does not exist yet)"
            )
        hint = _missing_api_hint(obj) if exc.status == 404 else ""
        raise InstallError(f"{describe(obj)}: {exc}{hint}") from None
    suffix = " (server dry run)" if dry_run else ""
    if before is None:
        return "created" + suffix
    old = before.get("metadata", {}).get("resourceVersion")
    new = after.get("metadata", {}).get("resourceVersion")
    return ("unchanged" if old == new else "configured") + suffix


def uninstall_order(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The webhook configuration first, then everything else in reverse apply order."""
    first = [o for o in objects if o["kind"] == "MutatingWebhookConfiguration"]
    rest = [o for o in reversed(objects) if o["kind"] != "MutatingWebhookConfiguration"]
    return first + rest


def uninstall(
    api: KubeApi | None,
    objects: list[dict[str, Any]],
    say: Say,
    *,
    dry_run: str = "",
    extra: list[dict[str, Any]] | None = None,
) -> dict[str, str]:
    """Delete ``objects`` (and ``extra``, e.g. the self-provisioned Secret) in safe order."""
    ordered = uninstall_order(objects)
    # Objects made at run time go before their namespace.
    namespace_objs = [o for o in ordered if o["kind"] == "Namespace"]
    ordered = [o for o in ordered if o["kind"] != "Namespace"] + list(extra or []) + namespace_objs
    results: dict[str, str] = {}
    for obj in ordered:
        name = describe(obj)
        if dry_run == "client":
            word = "would be deleted (client dry run)"
        else:
            assert api is not None
            try:
                gone = api.delete(object_path(obj), dry_run=dry_run == "server")
            except ApiError as exc:
                if exc.status == 404:  # the API itself is absent (e.g. a CRD never installed)
                    gone = False
                else:
                    raise InstallError(f"{name}: {exc}") from None
            word = "deleted" if gone else "not found"
            if dry_run == "server" and gone:
                word += " (server dry run)"
        results[name] = word
        say(f"{name} {word}")
    return results


def labelled_namespaces(api: KubeApi) -> list[str]:
    """Namespaces still opted in with ``lxcfs-admission-webhook=enabled``."""
    items = api.list("/api/v1/namespaces", label_selector=f"{NAMESPACE_LABEL}=enabled")
    return sorted(item["metadata"]["name"] for item in items)


@dataclass
class Readiness:
    """What --wait waits for, and whether it is there yet."""

    name: str
    ready: bool
    detail: str


def readiness(api: KubeApi, objects: list[dict[str, Any]]) -> list[Readiness]:
    """The readiness of the DaemonSet, the Deployment and the webhook's caBundle."""
    out = []
    for obj in objects:
        kind = obj["kind"]
        if kind not in ("DaemonSet", "Deployment", "MutatingWebhookConfiguration"):
            continue
        live = api.get(object_path(obj)) or {}
        status = live.get("status") or {}
        generation = live.get("metadata", {}).get("generation", 0)
        # No observedGeneration yet: the controller has not looked at it (a fresh object).
        observed = status.get("observedGeneration", -1) >= generation
        if kind == "DaemonSet":
            want = status.get("desiredNumberScheduled", 0)
            have = status.get("numberReady", 0)
            updated = status.get("updatedNumberScheduled", 0)
            ok = bool(live) and observed and have >= want and updated >= want
            out.append(Readiness(describe(obj), ok, f"{have}/{want} nodes ready"))
        elif kind == "Deployment":
            want = live.get("spec", {}).get("replicas", 1)
            have = status.get("readyReplicas", 0)
            ok = bool(live) and observed and have >= want
            out.append(Readiness(describe(obj), ok, f"{have}/{want} replicas ready"))
        else:
            bundles = [
                w.get("clientConfig", {}).get("caBundle") for w in live.get("webhooks") or []
            ]
            ok = bool(bundles) and all(bundles)
            detail = "caBundle set" if ok else "caBundle not set yet"
            out.append(Readiness(describe(obj), ok, detail))
    return out


def wait_ready(
    api: KubeApi,
    objects: list[dict[str, Any]],
    say: Say,
    *,
    timeout: float,
    interval: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Poll until everything is ready or ``timeout`` passes; report each change."""
    deadline = clock() + timeout
    last: dict[str, str] = {}
    while True:
        states = readiness(api, objects)
        for state in states:
            if last.get(state.name) != state.detail:
                say(f"{state.name}: {state.detail}")
                last[state.name] = state.detail
        if all(s.ready for s in states):
            return True
        if clock() >= deadline:
            waiting = ", ".join(s.name for s in states if not s.ready)
            say(f"timed out after {timeout:.0f}s waiting for {waiting}")
            return False
        sleep(interval)


def wait_deleted(
    api: KubeApi,
    paths: list[str],
    *,
    timeout: float,
    interval: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Poll until the objects at ``paths`` are gone; the ones still there at the deadline."""
    deadline = clock() + timeout
    while True:
        left = [p for p in paths if api.get(p) is not None]
        if not left or clock() >= deadline:
            return left
        sleep(interval)


def self_provisioned_secret(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The Secret the webhook creates at run time (not a rendered object), when it does."""
    if values["certManager"]["enabled"]:
        return []
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": values["webhook"]["tlsSecretName"],
                "namespace": values["namespace"],
            },
        }
    ]


def ca_bundle_of(config: dict[str, Any]) -> bytes:
    """The decoded caBundle of a webhook configuration's first webhook (b"" when unset)."""
    hooks = config.get("webhooks") or []
    raw = hooks[0].get("clientConfig", {}).get("caBundle", "") if hooks else ""
    return base64.b64decode(raw) if raw else b""


__all__ = ["collection_path"]

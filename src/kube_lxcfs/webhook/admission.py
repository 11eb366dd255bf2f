"""The pure admission function: AdmissionReview dict → AdmissionReview response dict.

Two error channels, kept apart:
- ``BadReviewError``: the body is not an AdmissionReview we can answer (no uid, unknown
  apiVersion, ...). The server turns it into HTTP 400 with a JSON message.
- Everything about the pod is answered inside a review with ``allowed: true``: a pod we skip, a
  non-pod object, and even our own bugs (a warning, never a blocked pod creation).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kube_lxcfs.errors import KubeLxcfsError
from kube_lxcfs.webhook.config import MODE_RUNTIME_CLASS, InjectOptions
from kube_lxcfs.webhook.mutation import (
    InjectionStatus,
    MalformedPodError,
    Mutation,
    plan_mutation,
)
from kube_lxcfs.webhook.runtimeclass import plan_runtime_class
from kube_lxcfs.webhook.selection import request_namespace, skip_reason
from kube_lxcfs.webhook.structs import (
    ADMISSION_API_VERSIONS,
    AdmissionResponse,
    AdmissionReview,
)


class ReviewOutcome(StrEnum):
    """What one review did: the ``outcome`` label of kube_lxcfs_webhook_admissions_total."""

    INJECTED = "injected"
    PARTIAL = "partial"
    CONFLICT = "conflict"
    UNCHANGED = "unchanged"  # already injected: empty patch
    SKIPPED = "skipped"  # selection rules said no (see ``reason``)
    IGNORED = "ignored"  # not a pod
    ERROR = "error"  # our bug: allowed without files, with a warning


INTERNAL_ERROR_WARNING = "kube-lxcfs: internal error, pod admitted without the virtual /proc files"


class BadReviewError(KubeLxcfsError, ValueError):
    """The request body is not an AdmissionReview this webhook can answer (→ HTTP 400)."""


@dataclass(frozen=True)
class ReviewResult:
    """The response to send, and what happened (for logs and metrics)."""

    response: AdmissionReview
    outcome: ReviewOutcome
    reason: str = ""  # skip reason, or malformed-pod detail
    namespace: str = ""
    name: str = ""
    error: BaseException | None = None
    patch_ops: int = 0


def review(body: Any, opts: InjectOptions) -> ReviewResult:
    """Answer one AdmissionReview (v1 or v1beta1) in the version it was asked in."""
    api_version, request = _check_review(body)
    uid = request["uid"]
    pod = request.get("object")
    if not _is_pod_request(request):
        return ReviewResult(_allow(api_version, uid), ReviewOutcome.IGNORED, reason="not a pod")
    if not isinstance(pod, Mapping):
        raise BadReviewError("request.object must be the Pod object")
    namespace = request_namespace(request, pod)
    name = _pod_name(request, pod)
    try:
        reason = skip_reason(request, pod, opts)
        if reason:
            return ReviewResult(
                _allow(api_version, uid), ReviewOutcome.SKIPPED, reason, namespace, name
            )
        try:
            if opts.mode == MODE_RUNTIME_CLASS:
                mutation = plan_runtime_class(pod, opts)
            else:
                mutation = plan_mutation(pod, opts)
        except MalformedPodError as exc:
            warning = f"kube-lxcfs: pod not injected: {exc}"
            response = _allow(api_version, uid, warnings=[warning])
            return ReviewResult(response, ReviewOutcome.SKIPPED, "malformed", namespace, name)
        return _mutated(api_version, uid, mutation, namespace, name)
    except Exception as exc:  # never block a pod because of us
        response = _allow(api_version, uid, warnings=[INTERNAL_ERROR_WARNING])
        return ReviewResult(response, ReviewOutcome.ERROR, type(exc).__name__, namespace, name, exc)


def _mutated(
    api_version: str, uid: str, mutation: Mutation, namespace: str, name: str
) -> ReviewResult:
    if not mutation.op_count:
        response = _allow(api_version, uid, warnings=mutation.warnings)
        reason = mutation.status or ""
        return ReviewResult(response, ReviewOutcome.UNCHANGED, reason, namespace, name)
    response = _allow(api_version, uid, warnings=mutation.warnings)
    patch_json = mutation.patch_json.encode()
    response["response"]["patchType"] = "JSONPatch"
    response["response"]["patch"] = base64.b64encode(patch_json).decode("ascii")
    status = mutation.status or InjectionStatus.INJECTED
    return ReviewResult(
        response, ReviewOutcome(status), status, namespace, name, patch_ops=mutation.op_count
    )


def _check_review(body: Any) -> tuple[str, Mapping[str, Any]]:
    if not isinstance(body, Mapping):
        raise BadReviewError("body must be a JSON object (an AdmissionReview)")
    api_version = body.get("apiVersion")
    if api_version not in ADMISSION_API_VERSIONS:
        raise BadReviewError(
            f"apiVersion must be one of {', '.join(ADMISSION_API_VERSIONS)}, got {api_version!r}"
        )
    if body.get("kind") != "AdmissionReview":
        raise BadReviewError(f"kind must be AdmissionReview, got {body.get('kind')!r}")
    request = body.get("request")
    if not isinstance(request, Mapping):
        raise BadReviewError("request is missing")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReviewError("request.uid is missing")
    return str(api_version), request


def _is_pod_request(request: Mapping[str, Any]) -> bool:
    """A core/v1 Pod itself (not a subresource such as pods/ephemeralcontainers or binding)."""
    kind = request.get("kind")
    resource = request.get("resource")
    if not isinstance(kind, Mapping) or kind.get("kind") != "Pod" or kind.get("group", "") != "":
        return False
    if isinstance(resource, Mapping) and resource.get("resource", "pods") != "pods":
        return False
    return not request.get("subResource")


def _pod_name(request: Mapping[str, Any], pod: Mapping[str, Any]) -> str:
    metadata = pod.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    for value in (request.get("name"), metadata.get("name"), metadata.get("generateName")):
        if isinstance(value, str) and value:
            return value
    return ""


def _allow(api_version: str, uid: str, warnings: list[str] | None = None) -> AdmissionReview:
    response: AdmissionResponse = {"uid": uid, "allowed": True}
    if warnings:
        response["warnings"] = list(warnings)
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}


def encode_review(review: Mapping[str, Any]) -> bytes:
    """The JSON body of an answer. The base64 patch (nothing to escape) is spliced in instead
    of passing through the encoder, which scanned its ~3 KB for ~15 µs per admission."""
    response = review.get("response")
    patch = response.get("patch") if isinstance(response, dict) else None
    if not isinstance(patch, str) or len(review) < 2 or len(response) < 2:  # type: ignore[arg-type]
        return _COMPACT.encode(review).encode()
    try:
        raw = patch.encode("ascii")
    except UnicodeEncodeError:
        raw = b"-"
    if raw.translate(None, _BASE64_ALPHABET):  # anything but base64: let the encoder escape it
        return _COMPACT.encode(review).encode()
    outer = {k: v for k, v in review.items() if k != "response"}
    inner = {k: v for k, v in response.items() if k != "patch"}  # type: ignore[union-attr]
    return b"".join(
        (
            _COMPACT.encode(outer)[:-1].encode(),
            b',"response":',
            _COMPACT.encode(inner)[:-1].encode(),
            b',"patch":"',
            raw,
            b'"}}',
        )
    )


_COMPACT = json.JSONEncoder(separators=(",", ":"))  # made once: json.dumps makes one per call
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def decode_patch(response: AdmissionReview) -> list[dict[str, Any]]:
    """The JSON patch carried by a response ([] when none); for tests and debugging."""
    payload = response.get("response", {}).get("patch")
    if not payload:
        return []
    return json.loads(base64.b64decode(payload))

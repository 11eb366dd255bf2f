"""Which pods get the virtual files: the rules applied before any patch is built.

Namespace selection proper is the API server's job (the webhook configuration's
namespaceSelector on ``lxcfs-admission-webhook=enabled`` and an objectSelector for pod opt-in).
The server still refuses what must never be mutated, whatever the configuration says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kube_lxcfs.defaults import INJECT_KEY
from kube_lxcfs.webhook.config import (
    MIRROR_ANNOTATION,
    SEED_OPT_OUT_ANNOTATION,
    InjectOptions,
    labels_match,
)

# The seed's opt-out values (case-insensitive) for lxcfs-admission-webhook.aliyun.com/mutate.
SEED_OPT_OUT_VALUES = frozenset({"n", "no", "false", "off"})
# Our own key takes the usual boolean spellings.
FALSE_VALUES = frozenset({"false", "no", "n", "off", "0", "disabled"})


def request_namespace(request: Mapping[str, Any], pod: Mapping[str, Any]) -> str:
    """The pod's namespace: from the request, since controller-made pods have none in the object."""
    namespace = request.get("namespace")
    if isinstance(namespace, str) and namespace:
        return namespace
    metadata = pod.get("metadata")
    if isinstance(metadata, Mapping):
        from_object = metadata.get("namespace")
        if isinstance(from_object, str):
            return from_object
    return ""


def skip_reason(request: Mapping[str, Any], pod: Mapping[str, Any], opts: InjectOptions) -> str:
    """Why this pod must not be injected, or "" when it should be.

    Reasons (also the ``reason`` label of the skip metric): ``operation`` (not a CREATE: a running
    pod's volumes are immutable), ``namespace``, ``mirror-pod`` (static pods: kubelet owns them),
    ``opt-out`` (annotation or label), ``own-pod`` (kube-lxcfs's agent and webhook),
    ``windows`` (``spec.os.name: windows``: there is no /proc to cover).
    """
    if request.get("operation") != "CREATE":
        return "operation"
    if request_namespace(request, pod) in opts.excluded_namespaces:
        return "namespace"
    metadata = pod.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    annotations = _string_map(metadata.get("annotations"))
    labels = _string_map(metadata.get("labels"))
    if MIRROR_ANNOTATION in annotations:
        return "mirror-pod"
    if annotations.get(SEED_OPT_OUT_ANNOTATION, "").strip().lower() in SEED_OPT_OUT_VALUES:
        return "opt-out"
    for source in (annotations, labels):
        if source.get(INJECT_KEY, "").strip().lower() in FALSE_VALUES:
            return "opt-out"
    if any(labels_match(labels, wanted) for wanted in opts.skip_pod_labels):
        return "own-pod"
    spec = pod.get("spec")
    os_spec = spec.get("os") if isinstance(spec, Mapping) else None
    if isinstance(os_spec, Mapping) and os_spec.get("name") == "windows":
        return "windows"
    return ""


def _string_map(value: object) -> dict[str, str]:
    """Annotations/labels as str → str, ignoring entries of other types (the API rejects them)."""
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}

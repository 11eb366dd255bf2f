"""The pure mutation of the runtimeclass mode: point the pod at the kube-lxcfs RuntimeClass.

The pod gets ``spec.runtimeClassName`` and the status annotation, and no volume at all: the
runtime wrapper (kube-lxcfs-runc) adds the virtual files and the sysinfo(2) answer below the Pod
API, so Pod Security baseline/restricted admit the pod. A pod that already names another
runtime class keeps it (its owner chose gVisor, Kata, a GPU runtime...): it is left alone with
a warning. Idempotent: a pod that already has our class and annotation gets no operation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kube_lxcfs.webhook.config import InjectOptions
from kube_lxcfs.webhook.mutation import (
    InjectionStatus,
    MalformedPodError,
    Mutation,
    _add_status,
)


def plan_runtime_class(pod: Mapping[str, Any], opts: InjectOptions) -> Mutation:
    """Decide the patch for one pod; raise ``MalformedPodError`` on shapes the API rejects."""
    spec = pod.get("spec")
    if not isinstance(spec, Mapping):
        raise MalformedPodError("pod has no spec object")
    wanted = opts.runtime_class_name
    current = spec.get("runtimeClassName")
    if current is not None and not isinstance(current, str):
        raise MalformedPodError("spec.runtimeClassName is not a string")
    result = Mutation()
    if current and current != wanted:
        result.status = InjectionStatus.CONFLICT
        result.warnings = [
            f"kube-lxcfs: pod keeps its runtimeClassName {current!r}; not switched to"
            f" {wanted!r}, so it gets no virtual /proc files"
        ]
        return result
    if not current:
        result.add("/spec/runtimeClassName", wanted)
    result.status = InjectionStatus.INJECTED
    _add_status(result, pod)
    return result

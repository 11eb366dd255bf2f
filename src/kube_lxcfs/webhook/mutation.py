"""The pure mutation: a raw pod dict → the minimal RFC 6902 patch that injects the virtual files.

The patch is built against the JSON the API server sent, with ``add`` operations only, and the
pod is never converted to a typed model: fields this code does not know survive untouched.
Idempotent by construction: whatever is already in place (our volume by name, any mount at a
target path) is left alone, so running the mutation on its own output yields no operation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kube_lxcfs.errors import KubeLxcfsError
from kube_lxcfs.webhook.config import STATUS_ANNOTATION, InjectedPath, InjectOptions
from kube_lxcfs.webhook.structs import PatchOp


class InjectionStatus(StrEnum):
    """The value of the pod's status annotation (and the review's outcome when patched)."""

    INJECTED = "injected"  # every selected container has every file
    PARTIAL = "partial"  # some (container, file) pairs were left out because of conflicts
    CONFLICT = "conflict"  # nothing could be injected: every target path was taken


MAX_WARNINGS = 10
MAX_WARNING_LENGTH = 240


class MalformedPodError(KubeLxcfsError, ValueError):
    """The pod's spec has a shape the API would reject anyway (e.g. containers not a list)."""


@dataclass
class Mutation:
    """What the mutation decided: the patch, the status written, and warnings for the user.

    The patch is kept twice: ``patch_json``, assembled from JSON fragments encoded once per
    option set (encoding the operations anew was a sixth of the cost of an admission), and
    ``patch``, the same operations as data, built only when asked (tests, debugging).
    """

    status: InjectionStatus | None = None  # the status annotation the pod ends up with
    warnings: list[str] = field(default_factory=list)
    added_mounts: int = 0
    _encoded: list[str] = field(default_factory=list, repr=False)
    _ops: list[tuple[str, Callable[[], Any]]] = field(default_factory=list, repr=False)

    @property
    def patch_json(self) -> str:
        return "[" + ",".join(self._encoded) + "]"

    @property
    def patch(self) -> list[PatchOp]:
        """The operations as data (new objects on every call)."""
        return [{"op": "add", "path": path, "value": build()} for path, build in self._ops]

    @property
    def op_count(self) -> int:
        return len(self._encoded)

    def add(self, path: str, value: Any) -> None:
        """Append an ``add`` operation, encoding ``value`` here."""
        op_json = (
            '{"op":"add","path":'
            + json.dumps(path)
            + ',"value":'
            + json.dumps(value, separators=(",", ":"))
            + "}"
        )
        self.add_encoded(op_json, path, lambda: value)

    def add_encoded(self, op_json: str, path: str, build: Callable[[], Any]) -> None:
        """Append an ``add`` operation already encoded as ``op_json``; ``build()`` makes its
        value as data."""
        self._encoded.append(op_json)
        self._ops.append((path, build))


def escape_pointer_token(token: str) -> str:
    """RFC 6901: ``~`` → ``~0`` then ``/`` → ``~1`` (order matters)."""
    return token.replace("~", "~0").replace("/", "~1")


def is_native_sidecar(container: Mapping[str, Any]) -> bool:
    """Init containers with ``restartPolicy: Always`` run for the pod's life (Kubernetes 1.28+)."""
    return container.get("restartPolicy") == "Always"


def plan_mutation(pod: Mapping[str, Any], opts: InjectOptions) -> Mutation:
    """Decide the patch for one pod; raise ``MalformedPodError`` on shapes the API rejects."""
    spec = pod.get("spec")
    if not isinstance(spec, Mapping):
        raise MalformedPodError("pod has no spec object")
    volumes = _list_field(spec, "volumes", "spec.volumes")
    volumes_by_name = {
        v["name"]: v for v in volumes if isinstance(v, Mapping) and isinstance(v.get("name"), str)
    }

    targets = _target_containers(spec, opts)
    mounts_by_path = [
        _mounts_by_path(_list_field(c, "volumeMounts", f"{lst}[{i}].volumeMounts"))
        for lst, i, c in targets
    ]
    result = Mutation()
    path_conflicts: dict[str, list[str]] = {}  # mount path -> what blocked it
    new_mounts: dict[tuple[str, int], list[InjectedPath]] = {}
    pairs_total = 0
    pairs_ours = 0
    volumes_to_add: list[InjectedPath] = []

    for target in opts.paths:
        existing = volumes_by_name.get(target.volume_name)
        if existing is not None and not _is_our_volume(existing, target):
            path_conflicts.setdefault(target.mount_path, []).append(
                f"volume {target.volume_name} exists with another source"
            )
            pairs_total += len(targets)
            continue
        needs_volume = existing is None
        for (list_name, index, container), mounted in zip(targets, mounts_by_path, strict=True):
            pairs_total += 1
            holder = mounted.get(target.mount_path)
            if holder is None:
                new_mounts.setdefault((list_name, index), []).append(target)
                pairs_ours += 1
                if needs_volume:
                    volumes_to_add.append(target)
                    needs_volume = False
            elif holder.get("name") == target.volume_name:
                pairs_ours += 1
            else:
                name = container.get("name", f"#{index}")
                path_conflicts.setdefault(target.mount_path, []).append(
                    f"{name} mounts {holder.get('name')!s} there"
                )

    if volumes_to_add:
        if spec.get("volumes") is not None:
            for t in volumes_to_add:
                result.add_encoded(t.volume_append_op, "/spec/volumes/-", t.volume)
        else:
            encoded = "[" + ",".join(t.volume_json for t in volumes_to_add) + "]"
            result.add_encoded(
                '{"op":"add","path":"/spec/volumes","value":' + encoded + "}",
                "/spec/volumes",
                lambda: [t.volume() for t in volumes_to_add],
            )

    for list_name, index, container in targets:
        added = new_mounts.get((list_name, index))
        if not added:
            continue
        # list_name and index need no JSON or pointer escaping.
        where = f"/spec/{list_name}/{index}/volumeMounts"
        if container.get("volumeMounts") is not None:
            head = '{"op":"add","path":"/spec/' + list_name + "/" + str(index)
            for t in added:
                result.add_encoded(head + t.mount_append_tail, where + "/-", t.mount)
        else:
            encoded = "[" + ",".join(t.mount_json for t in added) + "]"
            result.add_encoded(
                '{"op":"add","path":"' + where + '","value":' + encoded + "}",
                where,
                lambda added=added: [t.mount() for t in added],
            )
        result.added_mounts += len(added)

    if pairs_total == 0:
        return result
    if pairs_ours == pairs_total:
        result.status = InjectionStatus.INJECTED
    elif pairs_ours == 0:
        result.status = InjectionStatus.CONFLICT
    else:
        result.status = InjectionStatus.PARTIAL
    result.warnings = _conflict_warnings(path_conflicts)
    _add_status(result, pod)
    return result


def _target_containers(
    spec: Mapping[str, Any], opts: InjectOptions
) -> list[tuple[str, int, Mapping[str, Any]]]:
    """(list name, index, container) for every container that gets the files."""
    targets: list[tuple[str, int, Mapping[str, Any]]] = []
    for list_name in ("initContainers", "containers"):
        containers = _list_field(spec, list_name, f"spec.{list_name}")
        for index, container in enumerate(containers):
            if not isinstance(container, Mapping):
                raise MalformedPodError(f"spec.{list_name}[{index}] is not an object")
            if (
                list_name == "initContainers"
                and not opts.inject_init_containers
                and not is_native_sidecar(container)
            ):
                continue
            targets.append((list_name, index, container))
    return targets


def _list_field(obj: Mapping[str, Any], key: str, where: str) -> Sequence[Any]:
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise MalformedPodError(f"{where} is not a list")
    return value


def _is_our_volume(volume: Mapping[str, Any], target: InjectedPath) -> bool:
    """Same name and same host source (any hostPath type: the seed set none) → ours."""
    host_path = volume.get("hostPath")
    if not isinstance(host_path, Mapping):
        return False
    path = host_path.get("path")
    return isinstance(path, str) and path.rstrip("/") == target.host_path.rstrip("/")


def _mounts_by_path(mounts: Sequence[Any]) -> dict[str, Mapping[str, Any]]:
    """A container's mounts by normalised mountPath (the first one wins, as in the API)."""
    result: dict[str, Mapping[str, Any]] = {}
    for mount in mounts:
        if isinstance(mount, dict):
            path = mount.get("mountPath")
            if isinstance(path, str):
                result.setdefault(path.rstrip("/") or "/", mount)
    return result


_STATUS_PATH = "/metadata/annotations/" + escape_pointer_token(STATUS_ANNOTATION)
# The operation setting the annotation on a pod that has annotations, by status value.
_STATUS_OPS = {
    str(value): '{"op":"add","path":' + json.dumps(_STATUS_PATH) + ',"value":"' + value + '"}'
    for value in InjectionStatus
}


def _add_status(result: Mutation, pod: Mapping[str, Any]) -> None:
    """Write the status annotation unless it already has this value."""
    status = str(result.status)
    metadata = pod.get("metadata")
    if not isinstance(metadata, Mapping):
        result.add("/metadata", {"annotations": {STATUS_ANNOTATION: status}})
        return
    annotations = metadata.get("annotations")
    if not isinstance(annotations, Mapping):
        result.add("/metadata/annotations", {STATUS_ANNOTATION: status})
    elif annotations.get(STATUS_ANNOTATION) != status:
        result.add_encoded(_STATUS_OPS[status], _STATUS_PATH, lambda: status)


def _conflict_warnings(path_conflicts: Mapping[str, list[str]]) -> list[str]:
    """One short warning per blocked path (the API server shows them to kubectl users)."""
    warnings = []
    for mount_path, reasons in path_conflicts.items():
        text = f"kube-lxcfs: {mount_path} not injected: " + "; ".join(reasons)
        if len(text) > MAX_WARNING_LENGTH:
            text = text[: MAX_WARNING_LENGTH - 3] + "..."
        warnings.append(text)
    if len(warnings) > MAX_WARNINGS:
        rest = len(warnings) - MAX_WARNINGS + 1
        warnings = [*warnings[: MAX_WARNINGS - 1], f"kube-lxcfs: {rest} more paths not injected"]
    return warnings

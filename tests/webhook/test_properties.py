"""Property tests over generated pod shapes: the patch always applies, only adds, keeps every
existing field, gives every selected container every free target path, and is idempotent."""

from __future__ import annotations

import base64
import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kube_lxcfs.webhook.admission import decode_patch, review
from kube_lxcfs.webhook.config import InjectOptions, make_options
from webhook.podcheck import apply, assert_consistent

TARGETS = ["/proc/meminfo", "/proc/cpuinfo", "/proc/stat", "/sys/devices/system/cpu"]
FILES = ["proc/meminfo", "proc/cpuinfo", "proc/stat", "sys/devices/system/cpu/"]
OUR_NAMES = ["lxcfs-proc-meminfo", "lxcfs-proc-cpuinfo", "lxcfs-proc-stat"]

names = st.sampled_from(["data", "config", "tmp", "cache", *OUR_NAMES])
mount_paths = st.sampled_from(["/data", "/etc/app", "/tmp", "/proc/meminfo", "/proc/stat", "/sys"])
unknown_fields = st.dictionaries(
    st.sampled_from(["futureField", "x-extension", "resizePolicy"]),
    st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2)),
    max_size=2,
)


@st.composite
def volumes(draw: Any) -> list[dict[str, Any]] | None:
    if draw(st.booleans()):
        return draw(st.sampled_from([None, []])) if draw(st.booleans()) else None
    chosen = draw(st.lists(names, unique=True, max_size=5))
    result = []
    for name in chosen:
        if name in OUR_NAMES and draw(st.booleans()):
            path = "/var/lib/lxcfs/proc/" + name.removeprefix("lxcfs-proc-")
            result.append({"name": name, "hostPath": {"path": path, "type": "File"}})
        else:
            result.append({"name": name, "emptyDir": {}})
    return result


@st.composite
def container(draw: Any, index: int, vol_names: list[str], init: bool) -> dict[str, Any]:
    c: dict[str, Any] = {"name": f"c{index}", "image": "busybox", **draw(unknown_fields)}
    if init and draw(st.booleans()):
        c["restartPolicy"] = "Always"
    if vol_names and draw(st.booleans()):
        mounts = []
        for path in draw(st.lists(mount_paths, unique=True, max_size=3)):
            mounts.append({"name": draw(st.sampled_from(vol_names)), "mountPath": path})
        c["volumeMounts"] = mounts
    elif draw(st.booleans()):
        c["volumeMounts"] = draw(st.sampled_from([None, []]))
    return c


@st.composite
def pods(draw: Any) -> dict[str, Any]:
    vols = draw(volumes())
    vol_names = [v["name"] for v in vols or []]
    spec: dict[str, Any] = {**draw(unknown_fields)}
    if vols is not None or draw(st.booleans()):
        spec["volumes"] = vols
    n_containers = draw(st.integers(0, 4))
    n_init = draw(st.integers(0, 3))
    spec["containers"] = [draw(container(i, vol_names, False)) for i in range(n_containers)]
    if n_init or draw(st.booleans()):
        spec["initContainers"] = [draw(container(10 + i, vol_names, True)) for i in range(n_init)]
    metadata: dict[str, Any] = {"generateName": "p-"}
    annotations = draw(
        st.one_of(
            st.none(),
            st.dictionaries(
                st.sampled_from(["a/b", "x~y", "kube-lxcfs.io/status", "plain"]),
                st.sampled_from(["", "injected", "v"]),
                max_size=3,
            ),
        )
    )
    if annotations is not None or draw(st.booleans()):
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def wrap(pod: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "apps",
            "operation": "CREATE",
            "object": pod,
        },
    }


def contains(big: Any, small: Any) -> bool:
    """``small`` survives in ``big``: same scalars, dict keys kept, lists only appended to
    (a null array or map may have been created)."""
    if small is None and isinstance(big, list | dict):
        return True
    if isinstance(small, dict):
        return isinstance(big, dict) and all(
            k in big and contains(big[k], v) for k, v in small.items()
        )
    if isinstance(small, list):
        return (
            isinstance(big, list)
            and len(big) >= len(small)
            and all(contains(b, s) for b, s in zip(big, small, strict=False))
        )
    return big == small


def consistent_input(pod: dict[str, Any]) -> bool:
    """Only pods the API could accept as input: every mount refers to an existing volume."""
    vol_names = {v["name"] for v in pod["spec"].get("volumes") or []}
    for key in ("containers", "initContainers"):
        for c in pod["spec"].get(key) or []:
            for m in c.get("volumeMounts") or []:
                if m["name"] not in vol_names:
                    return False
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pod=pods(), inject_init=st.booleans())
def test_patch_properties(pod: dict[str, Any], inject_init: bool) -> None:
    opts: InjectOptions = make_options(files=FILES, inject_init_containers=inject_init)
    original = copy.deepcopy(pod)
    result = review(wrap(pod), opts)
    assert pod == original  # the input is never modified
    assert result.outcome != "error", result.error
    ops = decode_patch(result.response)
    assert all(op["op"] == "add" for op in ops)
    patched = apply(pod, ops)
    kept = copy.deepcopy(original)
    (kept["metadata"].get("annotations") or {}).pop("kube-lxcfs.io/status", None)  # ours to set
    assert contains(patched, kept)
    if consistent_input(original):
        assert_consistent(patched)

    selected = list(patched["spec"]["containers"])
    for c in patched["spec"].get("initContainers") or []:
        if inject_init or c.get("restartPolicy") == "Always":
            selected.append(c)
    foreign = {v["name"] for v in patched["spec"].get("volumes") or [] if "hostPath" not in v}
    added_mounts = []
    for op in ops:
        if "volumeMounts" in op["path"]:
            added_mounts += op["value"] if isinstance(op["value"], list) else [op["value"]]
    assert not {m["name"] for m in added_mounts} & foreign  # never mount a foreign volume
    for c in selected:
        mounted = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
        for target, file in zip(TARGETS, FILES, strict=True):
            ours = "lxcfs-" + file.strip("/").replace("/", "-")
            if ours not in foreign:
                assert target in mounted  # ours, or the container's own mount, kept

    status = (patched["metadata"].get("annotations") or {}).get("kube-lxcfs.io/status")
    if selected:
        assert status in {"injected", "partial", "conflict"}
    if status == "injected":
        assert not result.response["response"].get("warnings")

    again = review(wrap(patched), opts)
    assert decode_patch(again.response) == []


@settings(max_examples=150, deadline=None)
@given(pod=pods(), inject_init=st.booleans())
def test_encoded_patch_is_the_patch(pod: dict[str, Any], inject_init: bool) -> None:
    """The patch assembled from pre-encoded fragments decodes to the operations."""
    import json

    from kube_lxcfs.webhook.mutation import plan_mutation

    mutation = plan_mutation(pod, make_options(files=FILES, inject_init_containers=inject_init))
    assert json.loads(mutation.patch_json) == mutation.patch


@settings(max_examples=200, deadline=None)
@given(
    uid=st.text(min_size=1),
    warnings=st.lists(st.text(), max_size=3),
    patch=st.one_of(st.none(), st.text(), st.binary().map(lambda b: base64.b64encode(b).decode())),
)
def test_encoded_review_is_the_review(uid: str, warnings: list[str], patch: str | None) -> None:
    """The answer's JSON, with the base64 patch spliced in, decodes to the answer (quotes,
    backslashes, control and non-ASCII characters in the other fields included)."""
    import json

    from kube_lxcfs.webhook.admission import encode_review

    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if warnings:
        response["warnings"] = warnings
    if patch is not None:
        response["patchType"] = "JSONPatch"
        response["patch"] = patch
    answer = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
    assert json.loads(encode_review(answer)) == answer
    assert json.loads(encode_review({"response": {"patch": "AAAA"}})) == {
        "response": {"patch": "AAAA"}
    }

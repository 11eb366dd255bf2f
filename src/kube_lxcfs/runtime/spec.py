"""Pure edits of an OCI runtime spec (config.json) for a wrapped container.

Two additions, both skipped when the spec already has them:

* read-only bind mounts of our virtual files over /proc/* and
  /sys/devices/system/cpu (the same files the webhook injects);
* a seccomp rule ``SCMP_ACT_NOTIFY`` for ``sysinfo`` whose ``listenerPath`` is
  the node daemon's socket, merged into an existing profile or, when the spec
  has none, in a new allow-by-default profile.
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kube_lxcfs.defaults import INJECT_KEY, MOUNT_DIR, SECCOMP_SOCKET
from kube_lxcfs.files import INJECTED_FILES

DEFAULT_FILES: tuple[str, ...] = tuple(path.rstrip("/") for path in INJECTED_FILES)
"""What is mounted by default: the table's (and so the webhook's) list, directories without "/"."""

INTERCEPTED_SYSCALLS: tuple[str, ...] = ("sysinfo",)

FILES_ANNOTATION = "kube-lxcfs.io/files"
"""Comma-separated subset of the files to mount (e.g. ``proc/meminfo,proc/cpuinfo``)."""
SYSINFO_ANNOTATION = "kube-lxcfs.io/sysinfo"
"""``"false"`` disables sysinfo(2) interception for the container."""
SANDBOX_ANNOTATIONS: Mapping[str, str] = {
    "io.kubernetes.cri.container-type": "sandbox",
    "io.kubernetes.cri-o.ContainerType": "sandbox",
}
"""The pod's pause container is never touched: it reads nothing."""

FALSE_WORDS = frozenset({"false", "no", "n", "off", "0"})

SECCOMP_NOTIFY_ARCHES: tuple[str, ...] = ("SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64")


@dataclass(frozen=True, slots=True)
class WrapSettings:
    """Where the node's pieces are; the defaults match the node agent's ``kube-lxcfs fs``."""

    mount_dir: str = MOUNT_DIR
    seccomp_socket: str | None = SECCOMP_SOCKET
    """``None`` turns sysinfo interception off."""
    files: tuple[str, ...] = DEFAULT_FILES


@dataclass(slots=True)
class WrapReport:
    """What :func:`wrap_spec` did, for the log line of a ``create``."""

    mounted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seccomp: str = "unchanged"


def _is_false(value: object) -> bool:
    return isinstance(value, str) and value.strip().lower() in FALSE_WORDS


def is_sandbox(spec: Mapping[str, Any]) -> bool:
    """True for a pod's pause container."""
    annotations = spec.get("annotations") or {}
    return any(annotations.get(k) == v for k, v in SANDBOX_ANNOTATIONS.items())


def _chosen_files(spec: Mapping[str, Any], settings: WrapSettings) -> tuple[str, ...]:
    wanted = (spec.get("annotations") or {}).get(FILES_ANNOTATION)
    if not wanted:
        return settings.files
    names = {w.strip().strip("/") for w in wanted.split(",") if w.strip()}
    return tuple(f for f in settings.files if f in names)


def _mount_entry(settings: WrapSettings, name: str) -> dict[str, Any]:
    return {
        "destination": "/" + name,
        "type": "bind",
        "source": posixpath.join(settings.mount_dir, name),
        "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]
        if name.startswith("proc/")
        else ["rbind", "ro", "nosuid", "nodev"],
    }


def _covered(destination: str, mounts: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the spec already mounts something at ``destination`` or above a file of it.

    A mount exactly at the path, or a non-/proc mount at a parent (e.g. the
    user mounted their own /sys/devices/system), means the user decided.
    """
    for m in mounts:
        dest = posixpath.normpath(str(m.get("destination", "")))
        if dest == destination:
            return True
        if dest not in ("/", "/proc", "/sys") and destination.startswith(dest + "/"):
            return True
    return False


def _notify_rule() -> dict[str, Any]:
    return {"names": list(INTERCEPTED_SYSCALLS), "action": "SCMP_ACT_NOTIFY"}


def _merge_seccomp(linux: dict[str, Any], socket: str) -> str:
    """Add the notify rule for sysinfo; return what was done."""
    profile = linux.get("seccomp")
    if profile is None:
        linux["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": list(SECCOMP_NOTIFY_ARCHES),
            "listenerPath": socket,
            "syscalls": [_notify_rule()],
        }
        return "new allow-by-default profile"
    existing = profile.get("listenerPath")
    if existing and existing != socket:
        return f"left alone: the profile already notifies {existing}"
    syscalls: list[dict[str, Any]] = profile.setdefault("syscalls", [])
    allowing = ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG")
    for rule in syscalls:
        names = rule.get("names", [])
        if not any(n in INTERCEPTED_SYSCALLS for n in names):
            continue
        action = rule.get("action")
        if action == "SCMP_ACT_NOTIFY":
            profile["listenerPath"] = socket
            return "already present"
        if action not in allowing or rule.get("args"):
            # An explicit denial or a conditional rule is the profile author's decision.
            return f"left alone: the profile has its own rule for sysinfo ({action})"
    # libseccomp rejects two unconditional rules for one syscall, so sysinfo
    # leaves the allow lists it is in before it gets its notify rule.
    for rule in syscalls:
        names = rule.get("names", [])
        if any(n in INTERCEPTED_SYSCALLS for n in names):
            rule["names"] = [n for n in names if n not in INTERCEPTED_SYSCALLS]
    syscalls[:] = [r for r in syscalls if r.get("names")]
    syscalls.append(_notify_rule())
    profile["listenerPath"] = socket
    return "merged into the existing profile"


def wrap_spec(spec: Mapping[str, Any], settings: WrapSettings) -> tuple[dict[str, Any], WrapReport]:
    """The spec with our mounts and sysinfo interception added; the input is not changed."""
    out = copy.deepcopy(dict(spec))
    report = WrapReport()
    annotations = out.get("annotations") or {}
    if is_sandbox(out) or _is_false(annotations.get(INJECT_KEY)):
        report.seccomp = "untouched (opted out or sandbox)"
        return out, report
    mounts: list[dict[str, Any]] = out.setdefault("mounts", [])
    for name in _chosen_files(out, settings):
        destination = "/" + name
        if _covered(destination, mounts):
            report.skipped.append(destination)
            continue
        mounts.append(_mount_entry(settings, name))
        report.mounted.append(destination)
    if settings.seccomp_socket and not _is_false(annotations.get(SYSINFO_ANNOTATION)):
        linux = out.setdefault("linux", {})
        report.seccomp = _merge_seccomp(linux, settings.seccomp_socket)
    return out, report

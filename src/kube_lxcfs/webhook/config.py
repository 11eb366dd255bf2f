"""What the webhook injects and whom it leaves alone: the options of the pure mutation.

The injected files are configurable because runc only lets some /proc files be over-mounted
(an older runc refuses /proc/loadavg; a newer one refuses directories such as /proc/pressure)
and because users differ in what they want virtualised.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from kube_lxcfs.defaults import MOUNT_DIR
from kube_lxcfs.errors import KubeLxcfsError
from kube_lxcfs.files import INJECTED_FILES, KNOWN_DIRECTORIES

# The API server caps objects near 3 MiB; reviews carry two. (Here, not in server.py,
# so that building the CLI parser does not import the TLS stack.)
DEFAULT_MAX_BODY = 8 * 1024 * 1024

# Relative to the mount dir; a trailing "/" marks a directory.  The table of virtual files
# decides; paths it serves as directories get hostPath type Directory even without "/".
DEFAULT_FILES: tuple[str, ...] = INJECTED_FILES

# The seed's namespaces plus the lease namespace: never mutate these.
DEFAULT_EXCLUDED_NAMESPACES: tuple[str, ...] = ("kube-system", "kube-public", "kube-node-lease")

# Pods carrying one of these labels are kube-lxcfs's own (node agent, webhook) and are skipped:
# a node agent with /proc/meminfo over-mounted by itself would read its own output.
DEFAULT_SKIP_POD_LABELS: tuple[str, ...] = ("app.kubernetes.io/part-of=kube-lxcfs",)

STATUS_ANNOTATION = "kube-lxcfs.io/status"
SEED_OPT_OUT_ANNOTATION = "lxcfs-admission-webhook.aliyun.com/mutate"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
VOLUME_PREFIX = "lxcfs-"

# Delivery modes: hostPath volumes in the pod spec, or the pod's runtimeClassName pointing at
# the OCI runtime wrapper (kube-lxcfs-runc), which adds the same mounts plus sysinfo(2) below
# the Pod API, so the pod stays admissible under Pod Security baseline/restricted.
MODE_HOSTPATH = "hostpath"
MODE_RUNTIME_CLASS = "runtimeclass"
INJECT_MODES = (MODE_HOSTPATH, MODE_RUNTIME_CLASS)
# The RuntimeClass the deployment creates; its handler is what `kube-lxcfs setup-node` registers.
DEFAULT_RUNTIME_CLASS = "kube-lxcfs"


class ConfigError(KubeLxcfsError, ValueError):
    """An option value that cannot work (bad path, bad label selector)."""


@dataclass(frozen=True)
class InjectedPath:
    """One virtual file or directory: its volume, where it comes from and where it goes."""

    relative: str  # e.g. "proc/meminfo", as under the mount dir
    volume_name: str  # e.g. "lxcfs-proc-meminfo" (the seed's and peers' naming)
    host_path: str  # e.g. MOUNT_DIR + "/proc/meminfo"
    mount_path: str  # e.g. "/proc/meminfo"
    host_path_type: str  # "File" or "Directory"

    def volume(self) -> dict[str, Any]:
        """A new hostPath volume for a pod spec."""
        return {
            "name": self.volume_name,
            "hostPath": {"path": self.host_path, "type": self.host_path_type},
        }

    def mount(self) -> dict[str, Any]:
        """A new read-only volume mount for a container."""
        return {"name": self.volume_name, "mountPath": self.mount_path, "readOnly": True}

    @cached_property
    def volume_json(self) -> str:
        """``volume()`` encoded once: patches are assembled from these fragments."""
        return json.dumps(self.volume(), separators=(",", ":"))

    @cached_property
    def mount_json(self) -> str:
        return json.dumps(self.mount(), separators=(",", ":"))

    @cached_property
    def volume_append_op(self) -> str:
        """The whole operation appending ``volume()`` to a pod's existing volumes."""
        return '{"op":"add","path":"/spec/volumes/-","value":' + self.volume_json + "}"

    @cached_property
    def mount_append_tail(self) -> str:
        """The end of the operation appending ``mount()`` to a container's existing mounts,
        after ``{"op":"add","path":"/spec/<list>/<index>``."""
        return '/volumeMounts/-","value":' + self.mount_json + "}"


@dataclass(frozen=True)
class InjectOptions:
    """Everything the pure review needs to decide; built once from flags."""

    paths: tuple[InjectedPath, ...] = field(
        default_factory=lambda: build_paths(MOUNT_DIR, DEFAULT_FILES)
    )
    excluded_namespaces: frozenset[str] = frozenset(DEFAULT_EXCLUDED_NAMESPACES)
    inject_init_containers: bool = True
    skip_pod_labels: tuple[tuple[str, str], ...] = field(
        default_factory=lambda: tuple(parse_label(item) for item in DEFAULT_SKIP_POD_LABELS)
    )
    mode: str = MODE_HOSTPATH
    runtime_class_name: str = DEFAULT_RUNTIME_CLASS


def parse_label(item: str) -> tuple[str, str]:
    """``key=value`` → (key, value); ``key`` alone matches any value (value "")."""
    key, sep, value = item.strip().partition("=")
    key = key.strip()
    if not key or " " in key:
        raise ConfigError(f"bad label {item!r}: expected KEY=VALUE or KEY")
    return key, value.strip() if sep else ""


def build_paths(mount_dir: str, files: Iterable[str]) -> tuple[InjectedPath, ...]:
    """Turn the configured file list into volumes; reject paths that cannot be mounted safely."""
    if not mount_dir.startswith("/"):
        raise ConfigError(f"mount dir {mount_dir!r} must be an absolute path")
    root = posixpath.normpath(mount_dir)
    result: list[InjectedPath] = []
    seen: set[str] = set()
    for raw in files:
        item = raw.strip()
        if not item:
            continue
        is_dir = item.endswith("/")
        rel = posixpath.normpath(item.strip("/"))
        parts = rel.split("/")
        if item.startswith("/") or rel in {".", ""} or ".." in parts:
            raise ConfigError(f"bad file {raw!r}: expected a relative path like proc/meminfo")
        if parts[0] not in {"proc", "sys"} or len(parts) < 2:
            raise ConfigError(f"bad file {raw!r}: only paths under proc/ and sys/ can be injected")
        if rel in seen:
            continue
        seen.add(rel)
        is_dir = is_dir or rel in KNOWN_DIRECTORIES
        result.append(
            InjectedPath(
                relative=rel,
                volume_name=volume_name_for(rel),
                host_path=f"{root.rstrip('/')}/{rel}",
                mount_path=f"/{rel}",
                host_path_type="Directory" if is_dir else "File",
            )
        )
    if not result:
        raise ConfigError("the file list is empty: nothing to inject")
    return tuple(result)


def volume_name_for(relative: str) -> str:
    """``proc/meminfo`` → ``lxcfs-proc-meminfo``: a DNS-1123 label, as the seed names them."""
    cleaned = "".join(c if c.isalnum() else "-" for c in relative.lower())
    name = VOLUME_PREFIX + "-".join(p for p in cleaned.split("-") if p)
    if len(name) > 63:
        raise ConfigError(f"file {relative!r} gives a volume name longer than 63 characters")
    return name


def make_options(
    *,
    mount_dir: str = MOUNT_DIR,
    files: Iterable[str] = DEFAULT_FILES,
    excluded_namespaces: Iterable[str] = DEFAULT_EXCLUDED_NAMESPACES,
    own_namespace: str | None = None,
    inject_init_containers: bool = True,
    skip_pod_labels: Iterable[str] = DEFAULT_SKIP_POD_LABELS,
    mode: str = MODE_HOSTPATH,
    runtime_class_name: str = DEFAULT_RUNTIME_CLASS,
) -> InjectOptions:
    """Validate option values and build ``InjectOptions`` (raises ``ConfigError``)."""
    if mode not in INJECT_MODES:
        raise ConfigError(f"inject mode {mode!r} is not one of {', '.join(INJECT_MODES)}")
    if not is_dns_subdomain(runtime_class_name):
        raise ConfigError(
            f"runtime class name {runtime_class_name!r} is not a DNS subdomain"
            " (lower-case letters, digits, '-' and '.', at most 253 characters)"
        )
    namespaces = {n.strip() for n in excluded_namespaces if n.strip()}
    if own_namespace:
        namespaces.add(own_namespace)
    return InjectOptions(
        paths=build_paths(mount_dir, files),
        excluded_namespaces=frozenset(namespaces),
        inject_init_containers=inject_init_containers,
        skip_pod_labels=tuple(parse_label(i) for i in skip_pod_labels if i.strip()),
        mode=mode,
        runtime_class_name=runtime_class_name,
    )


def is_dns_subdomain(text: str) -> bool:
    """RFC 1123 subdomain, as the API requires of a RuntimeClass name."""
    label = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
    return len(text) <= 253 and re.fullmatch(rf"{label}(\.{label})*", text) is not None


def labels_match(labels: Mapping[str, object], wanted: tuple[str, str]) -> bool:
    """Whether a pod's labels contain ``wanted`` (an empty wanted value matches any value)."""
    key, value = wanted
    if key not in labels:
        return False
    return value == "" or labels[key] == value

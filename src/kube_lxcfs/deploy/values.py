"""The deployment's values: defaults, JSON schema, ``--set`` overrides.

These defaults are the chart's ``values.yaml`` and this schema is its
``values.schema.json`` (both generated from here), so ``kube-lxcfs manifests``
and ``helm template`` start from the same values. Keys follow Helm's ``create``
scaffold (``image.repository/tag/pullPolicy``, ``resources``, ``tolerations``,
``nodeSelector``, ``serviceAccount``...), camelCase, maps rather than lists where
users will ``--set`` them.
"""

from __future__ import annotations

import copy
from typing import Any

from kube_lxcfs import __version__
from kube_lxcfs.defaults import HEALTH_PORT, MOUNT_DIR, WEBHOOK_PORT
from kube_lxcfs.errors import KubeLxcfsError
from kube_lxcfs.webhook.config import DEFAULT_FILES as WEBHOOK_DEFAULT_FILES
from kube_lxcfs.webhook.config import DEFAULT_RUNTIME_CLASS

NAME = "kube-lxcfs"
DEFAULT_NAMESPACE = "lxcfs"
NAMESPACE_LABEL = "lxcfs-admission-webhook"
INJECTION_MODES = ("hostPath", "runtimeClass")

# What the webhook injects by default (its own list, so the two never disagree).
DEFAULT_FILES = list(WEBHOOK_DEFAULT_FILES)

DEFAULTS: dict[str, Any] = {
    # Helm takes this from --namespace (.Release.Namespace); it is not in values.yaml.
    "namespace": DEFAULT_NAMESPACE,
    "createNamespace": True,
    "mountDir": MOUNT_DIR,
    "injectedFiles": list(DEFAULT_FILES),
    "imagePullSecrets": [],
    # How pods get the files: hostPath volumes added by the webhook (needs a privileged-level
    # namespace), or runtimeClass: the webhook sets spec.runtimeClassName and the node's
    # kube-lxcfs-runc wrapper adds the files and sysinfo(2) (Pod Security baseline/restricted).
    "injection": {"mode": "hostPath"},
    "runtimeClass": {
        # The RuntimeClass object and, with setupNode, the node agent's setup-node init
        # container (host / mounted read-write: installs the wrapper, registers the handler).
        "enabled": False,
        "name": DEFAULT_RUNTIME_CLASS,
        "setupNode": True,
        # Only nodes carrying these labels run pods of the class (empty: every node).
        "nodeSelector": {},
    },
    "nodeAgent": {
        "image": {
            "repository": "kube-lxcfs/node-agent",
            "tag": __version__,
            "pullPolicy": "IfNotPresent",
        },
        "extraArgs": [],
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        },
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"operator": "Exists"}],
        "affinity": {},
        "priorityClassName": "system-node-critical",
        "maxUnavailable": 1,
        "maxSurge": 0,
        # /metrics, /healthz (livenessProbe) and /readyz (readinessProbe) on the port named
        # metrics; off: no liveness probe, readiness by reading a file through the mount.
        "metrics": {"enabled": True, "port": 9110, "healthDeadlineSeconds": 10},
    },
    "webhook": {
        "replicaCount": 2,
        "image": {
            "repository": "kube-lxcfs/webhook",
            "tag": __version__,
            "pullPolicy": "IfNotPresent",
        },
        "port": WEBHOOK_PORT,
        "healthPort": HEALTH_PORT,
        "logLevel": "info",
        # Processes serving admissions; 0: as many as the container's CPU limit (its cgroup
        # quota) allows, or the node's CPUs without a limit, at most 4 (each ~30 MiB RSS).
        "workers": 0,
        "extraArgs": [],
        "failurePolicy": "Ignore",
        "timeoutSeconds": 5,
        "reinvocationPolicy": "IfNeeded",
        "podOptIn": True,
        "tlsSecretName": "kube-lxcfs-webhook-tls",
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        },
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [],
        "affinity": {},
        "priorityClassName": "",
        "podDisruptionBudget": {"minAvailable": 1},
    },
    "service": {"port": 443},
    "serviceAccount": {"create": True, "annotations": {}},
    "certManager": {"enabled": False},
    "serviceMonitor": {"enabled": False, "interval": "30s", "labels": {}},
    "podMonitor": {"enabled": False, "interval": "30s", "labels": {}},
}

_STRING = {"type": "string"}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_IMAGE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["repository", "tag", "pullPolicy"],
    "properties": {
        "repository": {"type": "string", "minLength": 1},
        # An integer is accepted for Helm's `--set image.tag=1` (the templates toString it);
        # kube-lxcfs itself keeps every tag as the text it was given.
        "tag": {
            "type": ["string", "integer"],
            "minLength": 1,
            "description": "image tag; quote numeric tags such as 1.10 in values files",
        },
        "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    },
}
_RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"requests": {"type": "object"}, "limits": {"type": "object"}},
}
_LIST_OF_OBJECTS = {"type": "array", "items": {"type": "object"}}
_ARGS = {"type": "array", "items": {"type": "string"}}
_DNS_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = f"^{_DNS_LABEL}(\\.{_DNS_LABEL})*$"
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}


def _obj(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": sorted(properties),
        "properties": properties,
    }


SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "kube-lxcfs chart values",
    **_obj(
        {
            "createNamespace": {"type": "boolean"},
            "mountDir": {"type": "string", "pattern": "^/"},
            "injectedFiles": {
                "type": "array",
                "minItems": 1,
                "uniqueItems": True,
                "items": {"type": "string", "pattern": "^(proc|sys)/[A-Za-z0-9_./-]+$"},
            },
            "imagePullSecrets": _LIST_OF_OBJECTS,
            "injection": _obj({"mode": {"enum": list(INJECTION_MODES)}}),
            "runtimeClass": _obj(
                {
                    "enabled": {"type": "boolean"},
                    "name": {
                        "type": "string",
                        "maxLength": 253,
                        "pattern": _DNS_SUBDOMAIN,
                    },
                    "setupNode": {"type": "boolean"},
                    "nodeSelector": _STRING_MAP,
                }
            ),
            "nodeAgent": _obj(
                {
                    "image": _IMAGE,
                    "extraArgs": _ARGS,
                    "resources": _RESOURCES,
                    "nodeSelector": _STRING_MAP,
                    "tolerations": _LIST_OF_OBJECTS,
                    "affinity": {"type": "object"},
                    "priorityClassName": _STRING,
                    "maxUnavailable": {"type": ["integer", "string"]},
                    "maxSurge": {"type": ["integer", "string"]},
                    "metrics": _obj(
                        {
                            "enabled": {"type": "boolean"},
                            "port": _PORT,
                            "healthDeadlineSeconds": {"type": "integer", "minimum": 1},
                        }
                    ),
                }
            ),
            "webhook": _obj(
                {
                    "replicaCount": {"type": "integer", "minimum": 1},
                    "image": _IMAGE,
                    "port": _PORT,
                    "healthPort": _PORT,
                    "logLevel": {"enum": ["debug", "info", "warning", "error"]},
                    "workers": {"type": "integer", "minimum": 0, "maximum": 64},
                    "extraArgs": _ARGS,
                    "failurePolicy": {"enum": ["Ignore", "Fail"]},
                    "timeoutSeconds": {"type": "integer", "minimum": 1, "maximum": 30},
                    "reinvocationPolicy": {"enum": ["Never", "IfNeeded"]},
                    "podOptIn": {"type": "boolean"},
                    "tlsSecretName": {"type": "string", "minLength": 1},
                    "resources": _RESOURCES,
                    "nodeSelector": _STRING_MAP,
                    "tolerations": _LIST_OF_OBJECTS,
                    "affinity": {"type": "object"},
                    "priorityClassName": _STRING,
                    "podDisruptionBudget": _obj({"minAvailable": {"type": ["integer", "string"]}}),
                }
            ),
            "service": _obj({"port": _PORT}),
            "serviceAccount": _obj({"create": {"type": "boolean"}, "annotations": _STRING_MAP}),
            "certManager": _obj({"enabled": {"type": "boolean"}}),
            "serviceMonitor": _obj(
                {
                    "enabled": {"type": "boolean"},
                    "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                    "labels": _STRING_MAP,
                }
            ),
            "podMonitor": _obj(
                {
                    "enabled": {"type": "boolean"},
                    "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                    "labels": _STRING_MAP,
                }
            ),
        }
    ),
    # runtimeClass mode needs the RuntimeClass: the API server refuses pods naming a missing one.
    "if": {"properties": {"injection": {"properties": {"mode": {"const": "runtimeClass"}}}}},
    "then": {"properties": {"runtimeClass": {"properties": {"enabled": {"const": True}}}}},
}


class ValuesError(KubeLxcfsError, ValueError):
    """Bad values or a bad ``--set`` expression; the message is one line for the user."""


def defaults() -> dict[str, Any]:
    """A fresh copy of the default values."""
    return copy.deepcopy(DEFAULTS)


def chart_values() -> dict[str, Any]:
    """The chart's ``values.yaml`` content: the defaults without the release namespace."""
    values = defaults()
    del values["namespace"]
    return values


TEXT_KEYS = frozenset({"tag"})
"""Keys whose value is text even when it looks like a number (``tag: 1.10``, ``--set tag=1``)."""


def parse_set(expr: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value`` as Helm's ``--set`` does for scalars and ``{x,y}`` lists."""
    path, sep, raw = expr.partition("=")
    if not sep or not path or any(not part for part in path.split(".")):
        raise ValuesError(f"--set expects key=value with a dotted key, got {expr!r}")
    value: Any
    if path.split(".")[-1] in TEXT_KEYS and raw not in ("", "null"):
        value = raw
    elif raw.startswith("{") and raw.endswith("}"):
        inner = raw[1:-1]
        value = [_scalar(item) for item in inner.split(",")] if inner else []
    else:
        value = _scalar(raw)
    return path.split("."), value


def _scalar(raw: str) -> Any:
    if raw == "":
        return ""
    if raw in ("true", "false"):
        return raw == "true"
    if raw == "null":
        return None
    try:
        return int(raw)
    except ValueError:
        return raw


def apply_sets(values: dict[str, Any], exprs: list[str]) -> dict[str, Any]:
    """A copy of ``values`` with every ``--set`` expression applied in order."""
    out = copy.deepcopy(values)
    for expr in exprs:
        path, value = parse_set(expr)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return out


def validate(values: dict[str, Any]) -> None:
    """Check ``values`` against the schema; ValuesError names the first problem."""
    import jsonschema

    without_ns = {k: v for k, v in values.items() if k != "namespace"}
    namespace = values.get("namespace")
    if not isinstance(namespace, str) or not _is_dns_label(namespace):
        raise ValuesError(f"namespace must be a DNS label, got {namespace!r}")
    injection = values.get("injection")
    runtime_class = values.get("runtimeClass")
    if (
        isinstance(injection, dict)
        and injection.get("mode") == "runtimeClass"
        and isinstance(runtime_class, dict)
        and runtime_class.get("enabled") is not True
    ):
        raise ValuesError(
            "injection.mode=runtimeClass needs runtimeClass.enabled=true"
            " (the API server refuses pods naming a missing RuntimeClass)"
        )
    validator = jsonschema.Draft7Validator(SCHEMA)
    errors = sorted(validator.iter_errors(without_ns), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ValuesError(f"invalid value at {where}: {error.message}")


def _is_dns_label(text: str) -> bool:
    import re

    return bool(re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", text))


def resolve(
    namespace: str | None = None,
    sets: list[str] | None = None,
    values_files: list[str] | None = None,
) -> dict[str, Any]:
    """Defaults, then ``-f`` files, then ``--set``s, then the namespace; validated."""
    values = defaults()
    for path in values_files or []:
        with open(path, encoding="utf-8") as f:
            loaded = load_values_text(f.read()) or {}
        if not isinstance(loaded, dict):
            raise ValuesError(f"{path}: a values file must hold a mapping")
        values = merge(values, loaded)
    values = apply_sets(values, sets or [])
    if namespace is not None:
        values["namespace"] = namespace
    validate(values)
    return values


def load_values_text(text: str) -> Any:
    """YAML as ``safe_load`` reads it, except that a :data:`TEXT_KEYS` value keeps its text.

    YAML reads ``tag: 1.10`` as the float 1.1 and ``tag: 20251203`` as an int; an image tag is
    the characters the user wrote.
    """
    import yaml

    class ValuesLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: ValuesLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        loader.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if (
                key in TEXT_KEYS
                and isinstance(value_node, yaml.ScalarNode)
                and value_node.tag != "tag:yaml.org,2002:null"
            ):
                mapping[key] = value_node.value
            else:
                mapping[key] = loader.construct_object(value_node, deep=True)
        return mapping

    ValuesLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return yaml.load(text, Loader=ValuesLoader)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge as Helm does for values files: maps merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out

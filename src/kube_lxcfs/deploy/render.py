"""Concrete objects from values, and their YAML.

The functional core of ``kube-lxcfs manifests`` and ``install``: values in,
Kubernetes objects out, no I/O.
"""

from __future__ import annotations

from typing import Any

import yaml

from kube_lxcfs.deploy.objects import templates
from kube_lxcfs.deploy.template import OMIT, evaluate


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object the values ask for, in apply order."""
    objects = []
    for _, tree in templates():
        obj = evaluate(tree, values)
        if obj is not OMIT:
            objects.append(obj)
    return objects


class _Dumper(yaml.SafeDumper):
    """Block-style YAML without aliases, strings quoted only when needed."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """A multi-document YAML stream, one ``---`` document per object."""
    return "".join(
        "---\n" + yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
        for obj in objects
    )


def from_yaml(text: str) -> list[dict[str, Any]]:
    """Parse a multi-document stream, dropping empty documents (as kubectl and Helm do)."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def object_key(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    """apiVersion, kind, namespace, name: what identifies an object."""
    md = obj.get("metadata", {})
    return (obj["apiVersion"], obj["kind"], md.get("namespace", ""), md["name"])


def normalize(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], Any]:
    """Objects keyed by identity, for order-insensitive comparison of two renderings."""
    return {object_key(obj): obj for obj in objects}

"""A tiny template language for Kubernetes objects with two interpreters.

The deployment's objects are written once (``objects.py``) as plain dicts and
lists in which a few nodes refer to the chart values. ``evaluate`` turns such a
tree into concrete objects for a values dict (``kube-lxcfs manifests``,
``install``); ``helm_template`` turns the same tree into Helm template text
(``deploy/helm/kube-lxcfs/templates``). Both readings come from one definition,
and a test renders the generated chart with the real ``helm`` binary and compares
it with ``evaluate``: that is the drift check.

Nodes:
- ``Ref("a.b")``: the value at that path (``namespace`` is Helm's release namespace);
- ``Fmt("%s-%s", x, y)``: printf-style string from literals and refs;
- ``Join(",", Ref(...))``: a values list joined into one string;
- ``If(cond, then, otherwise)``: a choice; with ``otherwise=OMIT`` a dict entry or
  list item is left out when the condition is false;
- ``Splice(Ref(...))``: inside a list, all items of a values list;
- conditions: ``Truthy("a.b")``, ``Eq("a.b", "literal")``, ``Not(cond)``.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Any


class _Omit:
    """Marker: leave the dict entry or list item out."""

    def __repr__(self) -> str:
        return "OMIT"


OMIT = _Omit()


@dataclass(frozen=True)
class Ref:
    """The value at a dotted path of the values."""

    path: str


@dataclass(frozen=True)
class Fmt:
    """A printf-style string (only ``%s`` placeholders) built from literals and refs."""

    pattern: str
    args: tuple[Any, ...]

    def __init__(self, pattern: str, *args: Any) -> None:
        object.__setattr__(self, "pattern", pattern)
        object.__setattr__(self, "args", args)


@dataclass(frozen=True)
class Join:
    """A values list of strings joined with ``sep``."""

    sep: str
    ref: Ref


@dataclass(frozen=True)
class Dir:
    """The parent directory of the path at ``ref`` (``/var/lib`` for ``/var/lib/lxcfs``)."""

    ref: Ref


@dataclass(frozen=True)
class Truthy:
    """True when the value at ``path`` is truthy (as Helm's ``if`` sees it)."""

    path: str


@dataclass(frozen=True)
class Eq:
    """True when the value at ``path`` equals the string ``literal`` (a values enum)."""

    path: str
    literal: str


@dataclass(frozen=True)
class Not:
    """Negation of a condition."""

    cond: Truthy | Eq | Not


Cond = Truthy | Eq | Not


@dataclass(frozen=True)
class If:
    """``then`` when ``cond`` holds, else ``otherwise`` (``OMIT`` drops the entry)."""

    cond: Cond
    then: Any
    otherwise: Any = OMIT


@dataclass(frozen=True)
class Splice:
    """Inside a list: every item of the values list at ``ref``."""

    ref: Ref


# ---------------------------------------------------------------- evaluation


def lookup(values: dict[str, Any], path: str) -> Any:
    """The value at a dotted ``path``; KeyError names the path when it is missing."""
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"values have no {path!r}")
        node = node[part]
    return node


def holds(cond: Cond, values: dict[str, Any]) -> bool:
    """Evaluate a condition against ``values``."""
    if isinstance(cond, Not):
        return not holds(cond.cond, values)
    if isinstance(cond, Eq):
        return str(lookup(values, cond.path)) == cond.literal
    return bool(lookup(values, cond.path))


def evaluate(node: Any, values: dict[str, Any]) -> Any:
    """The concrete value of a template tree (``OMIT`` when a top-level ``If`` drops it)."""
    if isinstance(node, Ref):
        return lookup(values, node.path)
    if isinstance(node, Fmt):
        return node.pattern % tuple(str(evaluate(a, values)) for a in node.args)
    if isinstance(node, Join):
        return node.sep.join(str(v) for v in evaluate(node.ref, values))
    if isinstance(node, Dir):
        return posixpath.dirname(str(evaluate(node.ref, values)).rstrip("/") or "/") or "/"
    if isinstance(node, If):
        chosen = node.then if holds(node.cond, values) else node.otherwise
        return chosen if chosen is OMIT else evaluate(chosen, values)
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            result = evaluate(value, values)
            if result is not OMIT:
                out[key] = result
        return out
    if isinstance(node, list):
        items: list[Any] = []
        for item in node:
            if isinstance(item, Splice):
                items.extend(evaluate(item.ref, values))
                continue
            result = evaluate(item, values)
            if result is not OMIT:
                items.append(result)
        return items
    return node


# ---------------------------------------------------------------- Helm


def _values_expr(path: str) -> str:
    if path == "namespace":
        return ".Release.Namespace"
    return ".Values." + path


def _cond_expr(cond: Cond) -> str:
    if isinstance(cond, Not):
        return f"not {_cond_expr(cond.cond)}"
    if isinstance(cond, Eq):
        return f"(eq ({_values_expr(cond.path)} | toString) {json.dumps(cond.literal)})"
    return _values_expr(cond.path)


def _string_expr(node: Any) -> str:
    """A Go template pipeline producing ``node`` as a string/value (no braces)."""
    if isinstance(node, Ref):
        return _values_expr(node.path)
    if isinstance(node, Fmt):
        if not any(_is_expr(a) for a in node.args):
            return json.dumps(node.pattern % tuple(str(a) for a in node.args))
        args = " ".join(_arg_expr(a) for a in node.args)
        return f"printf {json.dumps(node.pattern)} {args}"
    if isinstance(node, Join):
        return f"join {json.dumps(node.sep)} {_values_expr(node.ref.path)}"
    if isinstance(node, Dir):
        return f'dir (trimSuffix "/" {_values_expr(node.ref.path)})'
    raise TypeError(f"not a value expression: {node!r}")


def _arg_expr(node: Any) -> str:
    if isinstance(node, str | int | float | bool):
        return json.dumps(str(node))
    return f"({_string_expr(node)} | toString)"


def _scalar(value: Any) -> str:
    """A literal scalar in YAML: JSON is a subset of YAML flow style and unambiguous."""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(", ", ": "))
    return json.dumps(value)


def _is_expr(node: Any) -> bool:
    return isinstance(node, Ref | Fmt | Join | Dir)


def _inline(node: Any) -> str | None:
    """The one-line form of ``node`` when it has one (scalars, empty containers, refs)."""
    if _is_expr(node):
        return "{{ " + _string_expr(node) + " | toJson }}"
    if isinstance(node, dict | list):
        return "{}" if node == {} else "[]" if node == [] else None
    return _scalar(node)


def _directive(text: str, indent: int) -> str:
    return " " * indent + "{{- " + text + " }}"


def _emit_entry(key: str, value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, If):
        lines = [_directive(f"if {_cond_expr(value.cond)}", indent)]
        if value.then is not OMIT:
            lines += _emit_entry(key, value.then, indent)
        if value.otherwise is not OMIT:
            lines.append(_directive("else", indent))
            lines += _emit_entry(key, value.otherwise, indent)
        lines.append(_directive("end", indent))
        return lines
    one_line = _inline(value)
    if one_line is not None:
        return [f"{pad}{_key(key)}: {one_line}"]
    return [f"{pad}{_key(key)}:", *_emit_block(value, indent + 2)]


def _key(key: str) -> str:
    plain = key.replace("-", "").replace("_", "").replace(".", "").replace("/", "")
    return key if plain.isalnum() and not key[0].isdigit() else json.dumps(key)


def _emit_item(item: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(item, If):
        lines = [_directive(f"if {_cond_expr(item.cond)}", indent)]
        if item.then is not OMIT:
            lines += _emit_item(item.then, indent)
        if item.otherwise is not OMIT:
            lines.append(_directive("else", indent))
            lines += _emit_item(item.otherwise, indent)
        lines.append(_directive("end", indent))
        return lines
    if isinstance(item, Splice):
        return [
            _directive(f"range {_values_expr(item.ref.path)}", indent),
            f"{pad}- {{{{ . | toJson }}}}",
            _directive("end", indent),
        ]
    one_line = _inline(item)
    if one_line is not None:
        return [f"{pad}- {one_line}"]
    body = _emit_block(item, indent + 2)
    first = body[0]
    if first.lstrip().startswith("{{"):
        return [f"{pad}-", *body]
    return [f"{pad}- {first[indent + 2 :]}", *body[1:]]


def _emit_block(node: Any, indent: int) -> list[str]:
    if isinstance(node, dict):
        lines: list[str] = []
        for key, value in node.items():
            lines += _emit_entry(key, value, indent)
        return lines
    if isinstance(node, list):
        lines = []
        for item in node:
            lines += _emit_item(item, indent)
        return lines
    raise TypeError(f"not a block: {node!r}")


def helm_template(obj: Any, header: str = "") -> str:
    """The Helm template text of one object tree (a top-level ``If`` wraps the file)."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    if isinstance(obj, If):
        if obj.otherwise is not OMIT:
            raise ValueError("a top-level If must not have an else branch")
        lines.append("{{- if " + _cond_expr(obj.cond) + " }}")
        lines += _emit_block(obj.then, 0)
        lines.append("{{- end }}")
    else:
        lines += _emit_block(obj, 0)
    return "\n".join(lines) + "\n"

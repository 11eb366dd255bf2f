"""The table of virtual files as text: ``--help`` lists and the docs' tables and lists.

Kept apart from :mod:`kube_lxcfs.files`, which the runtime wrapper imports on
every container start.  Docs carry generated parts between markers,
``<!-- files:NAME -->...<!-- /files -->`` (NAME one of :data:`GENERATED`);
``python -m kube_lxcfs.files_text --write docs/*.md`` refreshes them and
``--check`` (run by tests/unit/test_files_text.py) fails on drift.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from kube_lxcfs.files import DIRECTORIES, FILES, INJECTED_FILES, Presence


def names_in(directory: str, *, injected_only: bool = False) -> str:
    """``{cpuinfo,diskstats,...}``: the table's files directly in ``directory``."""
    names = [
        f.path[len(directory) + 1 :]
        for f in FILES
        if f.path.startswith(directory + "/")
        and "/" not in f.path[len(directory) + 1 :]
        and (f.inject or not injected_only)
    ]
    return "{" + ",".join(names) + "}"


def markdown_table() -> str:
    """Every served file: what it shows, how fresh, whose view, when present, injected."""
    lines = [
        "| file | shows | freshness | scope | present | mounted by default |",
        "|---|---|---|---|---|---|",
    ]
    for f in FILES:
        when = "always" if f.present is Presence.ALWAYS else _PRESENCE[f.present]
        if f.option:
            when += f" (host's with `--disable-{f.option}`)"
        injected = "yes" if f.inject else "no"
        lines.append(
            f"| `{f.path}` | {f.about} | {f.freshness.value} | {f.scope.value} | {when} "
            f"| {injected} |"
        )
    for d in DIRECTORIES:
        injected = "yes" if d.inject else "no"
        lines.append(f"| `{d.path}/` | {d.about} | | | | {injected} |")
    return "\n".join(lines)


_PRESENCE = {
    Presence.HOST_FILE: "when the host has it",
    Presence.HOST_CPU: "per host CPU",
}


def injected_braces() -> str:
    """``proc/{cpuinfo,...}``, ``sys/devices/system/cpu/``: the default list, short."""
    dirs = [d.path.lstrip("/") + "/" for d in DIRECTORIES if d.inject]
    return ", ".join([f"`proc/{names_in('/proc', injected_only=True)}`", *(f"`{d}`" for d in dirs)])


GENERATED: dict[str, Callable[[], str]] = {
    "table": lambda: "\n" + markdown_table() + "\n",
    "injected": lambda: "`" + ",".join(INJECTED_FILES) + "`",
    "injected-short": injected_braces,
}
"""Marker name → its text."""

MARKER = re.compile(r"<!-- files:(?P<name>[\w-]+) -->(?P<body>.*?)<!-- /files -->", re.S)


def refresh(text: str) -> str:
    """``text`` with every marked part regenerated (``KeyError`` for an unknown name)."""

    def sub(match: re.Match[str]) -> str:
        name = match.group("name")
        return f"<!-- files:{name} -->{GENERATED[name]()}<!-- /files -->"

    return MARKER.sub(sub, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kube_lxcfs.files_text",
        description="Print the docs' table of virtual files, or refresh/check docs' marked parts.",
    )
    parser.add_argument("docs", nargs="*", type=Path, help="markdown files with markers")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the marked parts")
    mode.add_argument("--check", action="store_true", help="exit 1 if a marked part is stale")
    args = parser.parse_args(argv)
    if not args.docs:
        print(markdown_table())
        return 0
    stale = []
    for doc in args.docs:
        text = doc.read_text()
        fresh = refresh(text)
        if fresh != text:
            stale.append(doc)
            if args.write:
                doc.write_text(fresh)
    for doc in stale:
        print(f"{'refreshed' if args.write else 'stale'}: {doc}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())

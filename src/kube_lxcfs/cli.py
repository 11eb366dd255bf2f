"""Command line entry point: ``kube-lxcfs SUBCOMMAND ...``.

Exit codes: 0 success, 1 failure, 2 usage error (argparse's own) or a missing optional extra.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from kube_lxcfs import __version__
from kube_lxcfs.commands import SUBCOMMANDS
from kube_lxcfs.commands._options import CliParser, configure_logging

# The optional extras of pyproject.toml, by the top-level module each package installs:
# module -> (distribution, extra). A command imports them only where it needs them, so a
# plain ``pip install kube-lxcfs`` runs fs/run/repair/runtime/setup-node and the rest say
# which extra to add (tests/test_missing_extras.py checks this table against pyproject.toml).
EXTRA_MODULES = {
    "cryptography": ("cryptography", "webhook"),
    "kubernetes": ("kubernetes", "kubernetes"),
    "yaml": ("PyYAML", "kubernetes"),
    "jsonschema": ("jsonschema", "kubernetes"),
}


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser; every subcommand registers itself."""
    parser = CliParser(
        prog="kube-lxcfs",
        description=(
            "Container-accurate /proc: a FUSE filesystem that renders /proc and "
            "/sys/devices/system/cpu from the reader's cgroup, the Kubernetes admission "
            "webhook that injects it into pods, and a single-machine runner."
        ),
    )
    parser.add_argument("--version", action="version", version=f"kube-lxcfs {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"kube_lxcfs.commands.{name.replace('-', '_')}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; return its exit code.

    A missing optional extra is one line naming the command, the package and the fix
    (exit 2), not a traceback: it is an installation choice, not a bug.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except ModuleNotFoundError as exc:
        needed = EXTRA_MODULES.get((exc.name or "").partition(".")[0])
        if needed is None:
            raise
        distribution, extra = needed
        command = f"kube-lxcfs {argv[0]}" if argv and argv[0] in SUBCOMMANDS else "kube-lxcfs"
        print(
            f"{command}: needs {distribution} from the optional extra '{extra}', which is not"
            f" installed; fix: pip install 'kube-lxcfs[{extra}]'",
            file=sys.stderr,
        )
        return 2


def _dispatch(argv: list[str]) -> int:
    """Parse ``argv`` and run the chosen subcommand.

    A subcommand whose module defines ``run_raw(argv)`` (the runc-compatible
    ``runtime``) gets its arguments untouched, since they follow another
    program's grammar; only its ``--help`` goes through argparse.
    """
    if argv[1:] and argv[0] in SUBCOMMANDS and argv[1:2] not in (["-h"], ["--help"]):
        module = importlib.import_module(f"kube_lxcfs.commands.{argv[0].replace('-', '_')}")
        run_raw = getattr(module, "run_raw", None)
        if run_raw is not None:
            return int(run_raw(argv[1:]) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    configure_logging(args)
    try:
        return int(handler(args) or 0)
    except BrokenPipeError:
        return 1
    except OSError as exc:
        # A path the user named that cannot be used (a directory where a file must be, not
        # creatable): bad input, one line. Any other OSError is a failure, also one line.
        named = exc.filename is not None and os.fsdecode(exc.filename) in argv
        where = f"{os.fsdecode(exc.filename)}: " if exc.filename is not None else ""
        print(f"kube-lxcfs {argv[0]}: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2 if named else 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

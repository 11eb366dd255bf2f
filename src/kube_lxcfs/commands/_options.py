"""Option plumbing every subcommand shares: value types, logging flags, cluster flags, messages.

One spelling and one meaning per flag across commands: ``--log-level`` and ``--log-format``
(text for a terminal, json for a log collector), ``--dry-run`` (change nothing, say what would
change; the cluster commands also take kubectl's ``=server``), ``--kubeconfig``/``--context``.
A usage error is one line ``kube-lxcfs CMD: message`` and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import NoReturn

from kube_lxcfs.jsonlog import FORMATS as LOG_FORMATS
from kube_lxcfs.jsonlog import LEVELS as LOG_LEVELS
from kube_lxcfs.jsonlog import configure_stderr


class CliParser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``kube-lxcfs CMD: message (see ... --help)``.

    The root parser of ``kube-lxcfs`` is one, so every subcommand's parser is too.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        """Also refuse text values that are not UTF-8 or empty.

        Paths are exempt: ``type=path`` ones may be any bytes (never empty), and ``PATH``
        ones (sockets) may be ``''`` where their help says what that means.
        """
        parsed, extras = super().parse_known_args(args, namespace)
        for action in self._actions:
            value = getattr(parsed, action.dest, None)
            if action.type in PATH_TYPES or action.metavar == "PATH" or not action.option_strings:
                continue
            for text in value if isinstance(value, list) else [value]:
                if not isinstance(text, str) or text == action.default:
                    continue
                name = "/".join(action.option_strings)
                if not text:
                    self.error(f"argument {name}: an empty value")
                if not is_utf8(text):
                    self.error(f"argument {name}: {text!r} is not UTF-8 text")
        return parsed, extras


def is_utf8(text: str) -> bool:
    """False for text that came from bytes that are not UTF-8 (argv's surrogate escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- value types (argparse ``type=``; they raise ArgumentTypeError with a one-line reason) ---


def path(text: str) -> Path:
    """A filesystem path; an empty one is refused (``Path("")`` would be the current directory)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path")
    return Path(text)


def directory(text: str) -> Path:
    """A directory to use or to create: refused when it, or a parent on the way, is not one.

    A missing directory is accepted (the command creates it, or says what a missing one
    means); a file in its place would only fail later, after work has started.
    """
    where = path(text)
    for candidate in (where.absolute(), *where.absolute().parents):
        try:
            if not candidate.exists():
                continue
        except OSError:
            return where  # not ours to judge (no permission to look): the command will say
        if candidate.is_dir():
            return where
        if candidate == where.absolute():
            raise argparse.ArgumentTypeError(f"{text} is a file, not a directory")
        raise argparse.ArgumentTypeError(f"{text}: {candidate} is a file, not a directory")
    return where


def existing_file(text: str) -> Path:
    """A file that must already exist (a directory or a missing path is refused)."""
    where = path(text)
    if where.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory, not a file")
    if not where.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    return where


PATH_TYPES = (path, directory, existing_file)
"""Value types for paths: any bytes are fine, so the UTF-8 check skips them."""


MAX_INT = 2**31 - 1
"""The largest count or size any option takes (more is a typo, and overflows C ints)."""


def positive_int(text: str) -> int:
    """An integer above 0 (and at most :data:`MAX_INT`)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    if value > MAX_INT:
        raise argparse.ArgumentTypeError(f"too large: {text[:20]!r} (at most {MAX_INT})")
    return value


MAX_SECONDS = 366 * 86400.0


def seconds(text: str) -> float:
    """A duration in seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"seconds must not be negative: {text!r}")
    if value > MAX_SECONDS:  # also refuses inf
        raise argparse.ArgumentTypeError(f"too many seconds: {text[:20]!r} (at most a year)")
    return value


def positive_seconds(text: str) -> float:
    """A duration in seconds above 0 (an interval: 0 would mean a busy loop)."""
    value = seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"seconds must be positive: {text!r}")
    return value


def port(text: str) -> int:
    """A TCP port, 0-65535 (0: any free port)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} out of range 0-65535")
    return value


def comma_list(text: str) -> list[str]:
    """``a, b,,c`` → ``["a", "b", "c"]``."""
    return [item.strip() for item in text.split(",") if item.strip()]


# --- messages ---------------------------------------------------------------------------------


def say(line: str) -> None:
    """Progress for the user on stdout, at once (long cluster operations)."""
    print(line, flush=True)


def fail(command: str, message: str, code: int = 2) -> int:
    """Print ``kube-lxcfs COMMAND: message`` on stderr; return ``code`` (2: usage)."""
    print(f"kube-lxcfs {command}: {message}", file=sys.stderr)
    return code


# --- logging ----------------------------------------------------------------------------------


def add_logging_options(parser: argparse.ArgumentParser, default_format: str = "text") -> None:
    """Add --log-level and --log-format (stderr)."""
    group = parser.add_argument_group("logging (stderr)")
    group.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        type=str.lower,
        default=None,
        help="lowest level logged (default: info)",
    )
    group.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        type=str.lower,
        default=default_format,
        help="text lines, or one JSON object per line for log collectors (default: %(default)s)",
    )


def configure_logging(args: argparse.Namespace) -> None:
    """Set up the root logger from --log-level/--log-format (and a command's --debug).

    A process that already has handlers (a test harness) keeps them for text logs.
    """
    level = getattr(args, "log_level", None)
    if not isinstance(level, str) or level not in LOG_LEVELS:
        level = "debug" if getattr(args, "debug", False) else "info"
    asked = bool(getattr(args, "log_level", None) or getattr(args, "debug", False))
    if not asked and logging.getLogger().handlers:
        return  # a harness's handlers and level stay
    configure_stderr(level, getattr(args, "log_format", "text"), keep=True)


# --- cluster commands (install, uninstall, doctor) --------------------------------------------


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """Add --kubeconfig and --context."""
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        type=existing_file,
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else in-cluster)",
    )
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")


def add_dry_run_option(parser: argparse.ArgumentParser, *, server: bool = False) -> None:
    """Add --dry-run: change nothing, say what would change.

    With ``server``, kubectl's ``--dry-run=server`` too (the API server validates and admits
    every request but stores nothing); bare ``--dry-run`` and ``=client`` are the plain one.
    """
    if not server:
        parser.add_argument(
            "--dry-run", action="store_true", help="say what would change, change nothing"
        )
        return
    parser.add_argument(
        "--dry-run",
        nargs="?",
        const="client",
        default="",
        choices=("client", "server"),
        help="client (the default when given bare): only print what would be done, no API "
        "calls; server: the API server validates and admits every request but stores nothing",
    )

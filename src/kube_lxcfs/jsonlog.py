"""Structured logs: one JSON object per line on stderr, for log collectors in a cluster.

Fields: ``ts`` (UTC, RFC 3339), ``level``, ``logger``, ``msg``, every ``extra=`` key of the call,
and ``error``/``traceback`` for exceptions.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any, TextIO

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else came from ``extra=`` and is logged as a field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry: dict[str, Any] = {
            "ts": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            entry["error"] = repr(record.exc_info[1])
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    """Send every log record of the process to ``stream`` (stderr) as JSON at ``level``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def configure_stderr(level: str = "info", log_format: str = "text", *, keep: bool = False) -> None:
    """Log to stderr at ``level``: JSON lines (``json``) or text lines (``text``).

    With ``keep``, a process that already has handlers (a test harness) keeps them for text
    logs and only gets the level.
    """
    if log_format == "json":
        configure(level)
        return
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level.upper(), format=TEXT_FORMAT, stream=sys.stderr)
    elif keep:
        root.setLevel(level.upper())
    else:
        for old in list(root.handlers):
            root.removeHandler(old)
        logging.basicConfig(level=level.upper(), format=TEXT_FORMAT, stream=sys.stderr)

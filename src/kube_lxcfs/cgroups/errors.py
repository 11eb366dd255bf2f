"""The errors of the cgroup layer: one base, so the tree can fall back on any of them."""

from __future__ import annotations

from kube_lxcfs.errors import KubeLxcfsError


class CgroupError(KubeLxcfsError):
    """Base of every error the cgroup layer raises on purpose."""


class ParseError(CgroupError, ValueError):
    """Kernel text that does not have the expected layout.

    Carries the file (or kind of file) and the offending text, so one log line
    says what broke.
    """

    def __init__(self, source: str, text: str, why: str = "unexpected format") -> None:
        shown = text if len(text) <= 200 else text[:200] + "..."
        super().__init__(f"{source}: {why}: {shown!r}")
        self.source = source
        self.text = text
        self.why = why


class CgroupUnavailable(CgroupError):
    """The pid or cgroup a read needs is gone, out of view, or has no hierarchy."""


class ProcessGone(CgroupUnavailable):
    """The reading process (or its namespace init) exited before its read was answered."""

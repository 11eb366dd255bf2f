"""/proc/pressure/{cpu,io,memory}: the cgroup's own PSI file on cgroup v2, else the host's."""

from __future__ import annotations


def render_pressure(host_text: str, cgroup_text: str | None) -> bytes:
    """The cgroup's pressure file when there is one (v2, non-root), the host's otherwise."""
    return (host_text if cgroup_text is None else cgroup_text).encode()

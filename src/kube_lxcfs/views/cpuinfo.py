"""/proc/cpuinfo: only the visible CPUs' blocks, real ids kept, counts rewritten."""

from __future__ import annotations

import re

_PROCESSOR = re.compile(r"processor\s*:\s*(\d+)\s*$")
_COUNTS = re.compile(r"(siblings|cpu cores)(\s*:\s*)\d+\s*$")


def render_cpuinfo(host_text: str, visible: tuple[int, ...]) -> bytes:
    """Keep the ``processor`` blocks of visible CPUs (their real ids stay, unlike lxcfs).

    ``siblings`` and ``cpu cores`` become the visible count, as a VM with that many
    single-threaded vCPUs shows them.  Lines before the first block are kept.
    """
    wanted = frozenset(visible)
    count = str(len(visible))
    out: list[str] = []
    keep = True
    for line in host_text.splitlines():
        match = _PROCESSOR.match(line)
        if match:
            keep = int(match.group(1)) in wanted
        if not keep:
            continue
        counts = _COUNTS.match(line)
        out.append(counts.group(1) + counts.group(2) + count if counts else line)
    return ("\n".join(out) + "\n").encode() if out else b""

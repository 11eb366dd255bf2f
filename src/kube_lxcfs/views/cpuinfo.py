"""/proc/cpuinfo: only the visible CPUs' blocks, real ids kept, counts rewritten."""

from __future__ import annotations

_COUNT_KEYS = ("siblings", "cpu cores")


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
        if line.startswith("processor"):
            key, colon, value = line.partition(":")
            if colon and key.strip() == "processor" and value.strip().isdigit():
                keep = int(value) in wanted
        if not keep:
            continue
        if line.startswith(_COUNT_KEYS):
            key, colon, _ = line.partition(":")
            if colon and key.rstrip() in _COUNT_KEYS:
                line = f"{key}: {count}"  # noqa: PLW2901 - the rewritten line replaces it
        out.append(line)
    return ("\n".join(out) + "\n").encode() if out else b""

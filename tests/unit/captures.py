"""Loading the recorded lxcfs captures in tests/fixtures (copied from shared/reference)."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def capture_body(name: str, version: str = "v1") -> str:
    """A capture file without its ``#`` header (everything after the ``# ----`` line)."""
    text = (FIXTURES / version / name).read_text()
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith("# ----"):
            return "".join(lines[i + 1 :])
    return text


def cgroup_files(scenario: str) -> dict[str, str]:
    """The ``## /sys/fs/cgroup/...`` sections of a ``*.cgroup-files.txt`` capture."""
    files: dict[str, str] = {}
    current: str | None = None
    for line in (FIXTURES / "v1" / f"{scenario}.cgroup-files.txt").read_text().splitlines():
        if line.startswith("## "):
            current = line[3:].replace("//", "/")
            files[current] = ""
        elif current is not None and not line.startswith("# "):
            files[current] += line + "\n"
    return files


def write_tree(root: Path, files: dict[str, str]) -> None:
    """Write ``{absolute path: text}`` under ``root``."""
    for path, text in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

"""Containers that read /proc/meminfo in a loop, and what they saw.

Each container's init is a busybox shell loop that opens /proc/meminfo with the
shell's own ``read`` builtin (no program is started per read) and writes
``<ok count> <error count> <first line of the last good read>`` to /tmp/status.
The test reads that file from the host through ``/proc/<pid>/root``.

The ``bare`` root filesystem holds nothing but a static busybox at ``/busybox``:
no /bin/sh, no mount binary, so nothing from the image can help a repair.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

READ_LOOP = """\
ok=0; err=0; last=none
while :; do
  if read -r line < /proc/meminfo; then ok=$((ok+1)); last=$line
  else err=$((err+1)); fi 2>/dev/null
  echo "$ok $err $last" > /tmp/status.new
  {mv} /tmp/status.new /tmp/status
  {sleep} 0.05
done
"""

MOUNTPOINTS = ("proc", "sys", "dev", "tmp", "run", "etc", "root")


def loop_args(busybox: str | None) -> list[str]:
    """The container's argv: the loop through ``/bin/sh``, or through a bare busybox."""
    if busybox is None:
        return ["/bin/sh", "-c", READ_LOOP.format(mv="mv", sleep="sleep")]
    script = READ_LOOP.format(mv=f"{busybox} mv", sleep=f"{busybox} sleep")
    return [busybox, "sh", "-c", script]


def make_bare_rootfs(tiny_rootfs: Path, target: Path) -> Path:
    """A root filesystem with only ``/busybox`` (copied from the tiny image) and mount points."""
    target.mkdir(parents=True)
    shutil.copy2(tiny_rootfs / "bin" / "busybox", target / "busybox")
    for name in MOUNTPOINTS:
        (target / name).mkdir()
    for name in ("hostname", "hosts", "resolv.conf"):
        (target / "etc" / name).touch()
    assert not (target / "bin").exists()
    return target


@dataclass(frozen=True)
class Status:
    ok: int
    errors: int
    first_line: str


def read_status(pid: int) -> Status | None:
    """What the loop in the container of init ``pid`` reported last (None before the first)."""
    try:
        text = Path(f"/proc/{pid}/root/tmp/status").read_text()
    except OSError:
        return None
    ok, _, rest = text.strip().partition(" ")
    errors, _, line = rest.partition(" ")
    if not ok.isdigit() or not errors.isdigit():
        return None
    return Status(int(ok), int(errors), line)


def memtotal_kib(status: Status | None) -> int | None:
    if status is None or not status.first_line.startswith("MemTotal:"):
        return None
    return int(status.first_line.split()[1])

"""seccomp user notification, the kernel side: receive, validate, answer.

A wrapped container's filter returns ``SCMP_ACT_NOTIFY`` for sysinfo(2); the
calling thread then waits until the holder of the notify fd answers.  These are
the four ioctls of that protocol (linux/seccomp.h), for 64-bit Linux.
"""

from __future__ import annotations

import errno
import fcntl
import os
import platform
import struct
from dataclasses import dataclass

_NOTIF = struct.Struct("=QIIiIQ6Q")
"""struct seccomp_notif: id, pid, flags, then seccomp_data (nr, arch, ip, args[6])."""
_RESP = struct.Struct("=QqiI")
"""struct seccomp_notif_resp: id, val, error, flags."""


def _iowr(nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (ord("!") << 8) | nr


def _iow(nr: int, size: int) -> int:
    return (1 << 30) | (size << 16) | (ord("!") << 8) | nr


IOCTL_NOTIF_RECV = _iowr(0, _NOTIF.size)
IOCTL_NOTIF_SEND = _iowr(1, _RESP.size)
IOCTL_NOTIF_ID_VALID = _iow(2, 8)
USER_NOTIF_FLAG_CONTINUE = 1

SYSINFO_NR = {"x86_64": 99, "aarch64": 179}
"""sysinfo(2)'s number on the architectures we build for."""


def sysinfo_number(machine: str | None = None) -> int:
    """sysinfo's syscall number on this machine."""
    machine = machine or platform.machine()
    try:
        return SYSINFO_NR[machine]
    except KeyError:
        raise RuntimeError(f"sysinfo interception is not supported on {machine}") from None


@dataclass(frozen=True, slots=True)
class Notification:
    """One intercepted system call."""

    id: int
    pid: int
    """The calling thread, in the listener's pid namespace."""
    syscall: int
    arch: int
    args: tuple[int, ...]


def receive(fd: int) -> Notification | None:
    """The next notification on ``fd``; ``None`` if the caller went away meanwhile."""
    buf = bytearray(_NOTIF.size)
    try:
        fcntl.ioctl(fd, IOCTL_NOTIF_RECV, buf, True)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EINTR):
            return None
        raise
    nid, pid, _flags, nr, arch, _ip, *args = _NOTIF.unpack(buf)
    return Notification(nid, pid, nr, arch, tuple(args))


def is_valid(fd: int, notification_id: int) -> bool:
    """Whether the caller of ``notification_id`` is still waiting (guards pid reuse)."""
    try:
        fcntl.ioctl(fd, IOCTL_NOTIF_ID_VALID, struct.pack("=Q", notification_id))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True


def _send(fd: int, notification_id: int, value: int, error: int, flags: int) -> bool:
    try:
        fcntl.ioctl(fd, IOCTL_NOTIF_SEND, _RESP.pack(notification_id, value, error, flags))
    except OSError as exc:
        if exc.errno == errno.ENOENT:  # the caller was killed while we worked
            return False
        raise
    return True


def reply(fd: int, notification_id: int, value: int = 0, error: int = 0) -> bool:
    """Complete the call with ``value`` (or ``-error``, an errno)."""
    return _send(fd, notification_id, value, -abs(error) if error else 0, 0)


def let_through(fd: int, notification_id: int) -> bool:
    """Let the kernel run the call as if it had not been intercepted."""
    return _send(fd, notification_id, 0, 0, USER_NOTIF_FLAG_CONTINUE)


def write_memory(fd: int, notification_id: int, pid: int, address: int, data: bytes) -> bool:
    """Write ``data`` at ``address`` in ``pid``, only if it is still the waiting caller.

    The mem file is opened first and the notification validated after, so a pid
    recycled between the two cannot receive the bytes.
    """
    mem = os.open(f"/proc/{pid}/mem", os.O_WRONLY)
    try:
        if not is_valid(fd, notification_id):
            return False
        os.pwrite(mem, data, address)
    finally:
        os.close(mem)
    return True

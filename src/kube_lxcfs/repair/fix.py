"""Fix what :mod:`kube_lxcfs.repair.plan` found: swap stale mounts for live ones.

For each namespace: clone every needed live file in our namespace with
``open_tree(OPEN_TREE_CLONE)`` (read-only etc. set on the clone with
``mount_setattr``), then fork a child that joins the target namespace
(``setns``), checks that the stale mount is still the one a lookup reaches, and
swaps it:

- ``beneath`` (Linux >= 6.5): ``move_mount(MOVE_MOUNT_BENEATH)`` puts the clone
  under the stale mount, then ``umount2(MNT_DETACH)`` removes the stale one. The
  switch is one atomic step: a reader sees ENOTCONN, then the live file.
- ``replace`` (Linux 5.2-6.4): unmount the stale mount, then ``move_mount`` the
  clone; for the microseconds in between the path shows what lies under it
  (the real /proc file).
- ``stack``: ``move_mount`` on top of the stale mount, which stays hidden under
  it. Used for namespaces owned by another user namespace, where inherited
  mounts are locked and cannot be unmounted.
- ``bind`` (no new mount API): classic bind mount from a path where the live
  filesystem is visible inside the namespace; without one, unrepairable.

Nothing from the container image is run, so images without a shell or a
``mount`` binary are repaired as well. The child runs only syscalls and
reports one JSON line per mount through a pipe.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import select
import time
from dataclasses import dataclass
from enum import StrEnum

from kube_lxcfs import linux
from kube_lxcfs.mountinfo import MountEntry, parse_mountinfo, topmost_at
from kube_lxcfs.repair.plan import LiveFs, bind_source_inside
from kube_lxcfs.repair.scan import Namespace

NS_GET_USERNS = 0xB701
"""ioctl on a namespace fd: an fd of the user namespace owning it."""

CHILD_TIMEOUT = 10.0


class Strategy(StrEnum):
    """How a stale mount is swapped (see the module docstring)."""

    AUTO = "auto"
    BENEATH = "beneath"
    REPLACE = "replace"
    STACK = "stack"
    BIND = "bind"


@dataclass(slots=True)
class Action:
    """One mount to change inside one namespace."""

    mount_point: str
    expect_mount_id: int | None
    """The mount a lookup must still reach (None: the path must hold none of ours)."""
    kind: str
    """``swap`` a stale mount, ``attach`` where nothing of ours is, ``detach`` a live one."""
    clone_fd: int | None = None
    bind_source: str | None = None
    ms_flags: int = 0
    remount_after: bool = False
    """mount_setattr is missing: apply ``ms_flags`` with a remount after attaching."""
    live_dev: tuple[int, int] | None = None
    """For ``attach``: a mount with this device at the path means already attached."""


@dataclass(slots=True)
class ActionResult:
    mount_point: str
    ok: bool
    method: str = ""
    reason: str = ""
    gone: bool = False
    skipped: bool = False
    """Nothing to do any more: the mount was changed or its path vanished meanwhile."""


def mount_attrs_of(entry: MountEntry) -> tuple[int, int]:
    """(MOUNT_ATTR_* for mount_setattr, MS_* for a remount) preserving ``entry``'s flags."""
    attrs, ms = 0, 0
    for name, attr, flag in (
        ("ro", linux.MOUNT_ATTR_RDONLY, linux.MS_RDONLY),
        ("nosuid", linux.MOUNT_ATTR_NOSUID, linux.MS_NOSUID),
        ("nodev", linux.MOUNT_ATTR_NODEV, linux.MS_NODEV),
        ("noexec", linux.MOUNT_ATTR_NOEXEC, linux.MS_NOEXEC),
    ):
        if name in entry.mount_options:
            attrs |= attr
            ms |= flag
    return attrs, ms


def owned_by_other_userns(ns_fd: int) -> bool:
    """Whether the namespace belongs to a user namespace other than ours (locked mounts)."""
    try:
        userns_fd = fcntl.ioctl(ns_fd, NS_GET_USERNS)
    except OSError:
        return False
    try:
        return os.fstat(userns_fd).st_ino != os.stat("/proc/self/ns/user").st_ino
    finally:
        os.close(userns_fd)


def prepare_clone(live: LiveFs, entry: MountEntry, action: Action, *, new_api: bool) -> None:
    """Clone the live counterpart of ``entry`` into ``action`` (raises OSError)."""
    attrs, ms = mount_attrs_of(entry)
    action.ms_flags = ms
    if not new_api:
        return
    fd = linux.open_tree_clone(live.path_of(entry.root))
    try:
        if attrs:
            try:
                linux.set_mount_attrs(fd, attrs)
            except OSError as exc:
                if exc.errno != errno.ENOSYS:
                    raise
                action.remount_after = True
    except BaseException:
        os.close(fd)
        raise
    action.clone_fd = fd


def new_api_available() -> bool:
    """Whether open_tree/move_mount exist (Linux >= 5.2)."""
    try:
        fd = linux.open_tree_clone("/")
    except OSError as exc:
        return exc.errno != errno.ENOSYS
    os.close(fd)
    return True


def run_in_namespace(
    ns: Namespace, actions: list[Action], strategy: Strategy, *, timeout: float = CHILD_TIMEOUT
) -> list[ActionResult]:
    """Carry out ``actions`` inside ``ns`` from a forked child; one result per action."""
    if not actions:
        return []
    pid = ns.pid
    try:
        ns_fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return _all(actions, gone=exc.errno in (errno.ENOENT, errno.ESRCH), why=exc)
    try:
        if os.fstat(ns_fd).st_ino != ns.inode:
            return _all(actions, gone=True, why="the process left the namespace")
        try:
            root_fd = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            return _all(actions, gone=exc.errno in (errno.ENOENT, errno.ESRCH), why=exc)
        try:
            if strategy in (Strategy.AUTO, Strategy.BENEATH) and owned_by_other_userns(ns_fd):
                strategy = Strategy.STACK
            return _fork_and_run(ns_fd, root_fd, actions, strategy, timeout)
        finally:
            os.close(root_fd)
    finally:
        os.close(ns_fd)


def _all(actions: list[Action], *, gone: bool, why: object) -> list[ActionResult]:
    reason = why.strerror if isinstance(why, OSError) and why.strerror else str(why)
    reason = f"container exited ({reason})" if gone else f"cannot enter the namespace: {reason}"
    return [ActionResult(a.mount_point, ok=False, reason=reason, gone=gone) for a in actions]


def _fork_and_run(
    ns_fd: int, root_fd: int, actions: list[Action], strategy: Strategy, timeout: float
) -> list[ActionResult]:
    proc_fd = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, reported through the pipe
            os.close(read_end)
            code = 0
            try:
                _child(ns_fd, root_fd, proc_fd, write_end, actions=actions, strategy=strategy)
            except BaseException:
                code = 1
            os._exit(code)
        os.close(write_end)
        write_end = -1
        text = _read_all(read_end, timeout)
        if text is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        os.waitpid(pid, 0)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
        os.close(proc_fd)
    if text is None:
        return [
            ActionResult(a.mount_point, ok=False, reason="repair helper timed out") for a in actions
        ]
    results = [ActionResult(**json.loads(line)) for line in text.splitlines() if line]
    done = {r.mount_point for r in results}
    results += [
        ActionResult(a.mount_point, ok=False, reason="repair helper died")
        for a in actions
        if a.mount_point not in done
    ]
    return results


def _read_all(fd: int, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks).decode()
        chunks.append(chunk)


def _child(
    ns_fd: int,
    root_fd: int,
    proc_fd: int,
    out_fd: int,
    *,
    actions: list[Action],
    strategy: Strategy,
) -> None:  # pragma: no cover - runs in the forked child
    def emit(result: ActionResult) -> None:
        payload = {
            "mount_point": result.mount_point,
            "ok": result.ok,
            "method": result.method,
            "reason": result.reason,
            "gone": result.gone,
            "skipped": result.skipped,
        }
        os.write(out_fd, (json.dumps(payload) + "\n").encode())

    try:
        linux.setns(ns_fd, linux.CLONE_NEWNS)
        os.fchdir(root_fd)
        os.chroot(".")
    except OSError as exc:
        for a in actions:
            emit(ActionResult(a.mount_point, ok=False, reason=f"cannot enter: {exc.strerror}"))
        return
    for action in actions:
        try:
            emit(_apply(action, strategy, proc_fd))
        except OSError as exc:
            emit(ActionResult(action.mount_point, ok=False, reason=_describe(exc)))


def _describe(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    if exc.errno == errno.EINVAL and "umount2" in text:
        text += " (mount locked by its user namespace?)"
    return text


def _current_mounts(proc_fd: int) -> list[MountEntry]:
    fd = os.open(f"{os.getpid()}/mountinfo", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc_fd)
    with os.fdopen(fd, encoding="utf-8", errors="surrogateescape") as f:
        return parse_mountinfo(f.read())


def _apply(action: Action, strategy: Strategy, proc_fd: int) -> ActionResult:
    mp = action.mount_point
    top = topmost_at(_current_mounts(proc_fd), mp)
    if action.kind == "attach":
        if top is not None and top.dev == action.live_dev:
            return ActionResult(mp, ok=True, method="already attached")
        if not os.path.lexists(mp):
            return ActionResult(mp, ok=False, reason="the mount point is gone", skipped=True)
    elif top is None or top.mount_id != action.expect_mount_id:
        return ActionResult(
            mp, ok=False, reason="the mount changed since it was found", skipped=True
        )

    if action.kind == "detach":
        linux.umount2(mp)
        return ActionResult(mp, ok=True, method="umount")

    if action.clone_fd is None:
        return _apply_bind(action)

    if action.kind == "attach":
        linux.move_mount_fd(action.clone_fd, mp)
        method = "move_mount"
    elif strategy is Strategy.STACK:
        linux.move_mount_fd(action.clone_fd, mp)
        method = "stack"
    else:
        method = _swap(action, strategy)
    if action.remount_after:
        linux.remount_bind_flags(mp, action.ms_flags)
    return ActionResult(mp, ok=True, method=method)


def _swap(action: Action, strategy: Strategy) -> str:
    mp = action.mount_point
    if strategy in (Strategy.AUTO, Strategy.BENEATH):
        try:
            linux.move_mount_fd(action.clone_fd, mp, beneath=True)
        except OSError as exc:
            if strategy is Strategy.BENEATH or exc.errno not in (errno.EINVAL, errno.ENOSYS):
                raise
        else:
            linux.umount2(mp)
            return "beneath"
    linux.umount2(mp)
    linux.move_mount_fd(action.clone_fd, mp)
    return "replace"


def _apply_bind(action: Action) -> ActionResult:
    mp = action.mount_point
    if action.bind_source is None:
        return ActionResult(
            mp,
            ok=False,
            reason="unrepairable: no open_tree/move_mount and no live path inside the container",
        )
    if action.kind == "swap":
        linux.umount2(mp)
    linux.bind_mount(action.bind_source, mp)
    if action.ms_flags:
        linux.remount_bind_flags(mp, action.ms_flags)
    return ActionResult(mp, ok=True, method="bind")


def bind_action(live: LiveFs, mounts: list[MountEntry], entry: MountEntry) -> Action:
    """A ``swap`` action for the no-new-API fallback."""
    _, ms = mount_attrs_of(entry)
    return Action(
        mount_point=entry.mount_point,
        expect_mount_id=entry.mount_id,
        kind="swap",
        bind_source=bind_source_inside(mounts, live, entry),
        ms_flags=ms,
    )

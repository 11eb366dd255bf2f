"""Repair through the real path: lxcfs as the FUSE source, ``unshare -m`` namespaces.

Each namespace holds read-only bind mounts of lxcfs files over sentinel files,
as a container holds them over /proc. ``kill -9`` of lxcfs makes them stale;
after a new lxcfs is mounted on the same path, repair must make every one of
them serve the live file again, without anything running inside the namespace.
"""

from __future__ import annotations

import errno
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kube_lxcfs.repair import Strategy, detach, repair
from kube_lxcfs.repair import scan as scan_module
from support.waiting import wait_for

from .conftest import needs_root
from .helpers import SENTINEL

pytestmark = [needs_root, pytest.mark.root, pytest.mark.fuse, pytest.mark.lxcfs]

FILES = {"proc/meminfo": "ctr/proc/meminfo", "proc/uptime": "ctr/proc/uptime"}


def is_live(text: str) -> bool:
    return text != SENTINEL and bool(text)


def stale_set(report) -> set[tuple[int, str]]:
    return {(o.namespace.inode, o.mount_point) for o in report.outcomes if o.status == "stale"}


def mine(report, *holders) -> list:
    """Outcomes in the test's namespaces; others on this busy machine may hold copies of
    the mount directory (a namespace made by ``unshare -m`` or runc copies every mount)."""
    inodes = {h.ns_inode for h in holders}
    return [o for o in report.outcomes if o.namespace.inode in inodes]


def only_mount_dir_copies(report, mount_dir: Path, *holders) -> bool:
    inodes = {h.ns_inode for h in holders}
    return all(
        o.mount_point == str(mount_dir) for o in report.outcomes if o.namespace.inode not in inodes
    )


def reads_enotconn(holder, path: str) -> bool:
    try:
        holder.read(path)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def test_dry_run_lists_exactly_the_stale_mounts(lxcfs, holders, tmp_path: Path) -> None:
    a = holders(lxcfs.mount_dir, FILES)
    b = holders(lxcfs.mount_dir, {"proc/cpuinfo": "ctr/proc/cpuinfo"})
    healthy_before = repair(str(lxcfs.mount_dir), dry_run=True)
    assert stale_set(healthy_before) == set()

    lxcfs.kill9()
    lxcfs.start()
    report = repair(str(lxcfs.mount_dir), dry_run=True)

    # unshare -m copied the FUSE mount itself into each namespace: stale too.
    expected = {(a.ns_inode, t) for t in a.targets.values()}
    expected |= {(b.ns_inode, t) for t in b.targets.values()}
    expected |= {(h.ns_inode, str(lxcfs.mount_dir)) for h in (a, b)}
    assert {
        (o.namespace.inode, o.mount_point) for o in mine(report, a, b) if o.status == "stale"
    } == expected
    assert only_mount_dir_copies(report, lxcfs.mount_dir, a, b)
    # dry run changed nothing
    assert all(reads_enotconn(a, t) for t in a.targets.values())


@pytest.mark.parametrize("strategy", [Strategy.AUTO, Strategy.REPLACE])
def test_repair_restores_reads_keeps_read_only_and_second_pass_is_noop(
    lxcfs, holders, strategy: Strategy
) -> None:
    """``auto`` swaps beneath (this kernel); ``replace`` is the path of kernels 5.2-6.4."""
    a = holders(lxcfs.mount_dir, FILES)
    b = holders(lxcfs.mount_dir, FILES)
    lxcfs.kill9()
    lxcfs.start()
    assert all(reads_enotconn(h, t) for h in (a, b) for t in h.targets.values())

    report = repair(str(lxcfs.mount_dir), strategy=strategy)

    assert report.failed == []
    assert [o.status for o in mine(report, a, b)] == ["repaired"] * 6
    method = "beneath" if strategy is Strategy.AUTO else "replace"
    assert {o.method for o in mine(report, a, b)} == {method}  # 2 files + mount dir, twice
    for h in (a, b):
        assert h.read(h.targets["proc/meminfo"]).startswith("MemTotal:")
        assert float(h.read(h.targets["proc/uptime"]).split()[0]) >= 0
        by_point = {m.mount_point: m for m in h.mounts()}
        for target in h.targets.values():
            entry = by_point[target]
            assert entry.dev == lxcfs.dev
            assert entry.read_only
    again = repair(str(lxcfs.mount_dir))
    assert again.count("repaired") == 0
    assert again.failed == []
    assert [o.status for o in mine(again, a, b)] == ["healthy"] * 6


def test_cli_dry_run_then_repair_then_noop(lxcfs, holders) -> None:
    a = holders(lxcfs.mount_dir, FILES)
    lxcfs.kill9()
    lxcfs.start()
    cmd = [
        sys.executable,
        "-m",
        "kube_lxcfs",
        "repair",
        "--mount-dir",
        str(lxcfs.mount_dir),
        "--state-dir",
        str(lxcfs.base / "state"),
    ]
    dry = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, check=True)
    listed = sorted(ln.split()[1] for ln in dry.stdout.splitlines() if f" pid {a.pid} " in ln)
    assert listed == sorted([*a.targets.values(), str(lxcfs.mount_dir)])
    assert all(
        ln.split()[1] == str(lxcfs.mount_dir)
        for ln in dry.stdout.splitlines()
        if f" pid {a.pid} " not in ln
    )
    fixed = subprocess.run(cmd, capture_output=True, text=True, check=True)
    fixed_mine = [ln for ln in fixed.stdout.splitlines() if f" pid {a.pid} " in ln]
    assert len([ln for ln in fixed_mine if ln.startswith("repaired")]) == 3
    summaries = [ln for ln in fixed.stdout.splitlines() if ln.startswith(f"container pid {a.pid} ")]
    assert len(summaries) == 1
    assert summaries[0].endswith(": 3 repaired")
    assert a.read(a.targets["proc/meminfo"]).startswith("MemTotal:")
    noop = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert noop.stdout == ""
    assert " repaired" not in noop.stderr


def test_repair_without_live_filesystem_fails_clearly(tmp_path: Path) -> None:
    empty = tmp_path / "nothing"
    empty.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "kube_lxcfs", "repair", "--mount-dir", str(empty)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert f"no FUSE filesystem is mounted at {empty}" in proc.stderr


@pytest.mark.parametrize("strategy", [Strategy.BENEATH, Strategy.STACK])
def test_readers_see_old_error_or_new_content_never_the_file_below(
    lxcfs, holders, strategy: Strategy
) -> None:
    """The swap is atomic: a reader never sees the sentinel under the mount."""
    h = holders(lxcfs.mount_dir, {"proc/meminfo": "ctr/meminfo"})
    target = h.targets["proc/meminfo"]
    lxcfs.kill9()
    lxcfs.start()
    seen: dict[str, int] = {"enotconn": 0, "live": 0, "sentinel": 0, "other": 0}
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                text = h.read(target)
            except OSError as exc:
                seen["enotconn" if exc.errno == errno.ENOTCONN else "other"] += 1
                continue
            seen["sentinel" if text == SENTINEL else "live"] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        wait_for(lambda: seen["enotconn"] > 0, what="reader started")
        report = repair(str(lxcfs.mount_dir), strategy=strategy)
        wait_for(lambda: seen["live"] > 20, what="reader sees live content")
    finally:
        stop.set()
        thread.join()
    assert report.failed == []
    assert seen["sentinel"] == 0
    assert seen["other"] == 0


def test_mount_replaced_by_user_is_left_alone(lxcfs, holders) -> None:
    h = holders(lxcfs.mount_dir, FILES)
    replaced = h.targets["proc/uptime"]
    lxcfs.kill9()
    lxcfs.start()
    # the user mounts their own file over the (now stale) bind mount
    mine = Path(replaced).parent / "mine"
    mine.write_text("mine\n")
    h.run("mount", "--bind", str(mine), replaced)

    report = repair(str(lxcfs.mount_dir))

    by_point = {o.mount_point: o for o in report.outcomes if o.namespace.inode == h.ns_inode}
    assert by_point[replaced].status == "skipped"
    assert "shadowed" in by_point[replaced].reason
    assert h.read(replaced) == "mine\n"
    assert by_point[h.targets["proc/meminfo"]].status == "repaired"
    assert report.failed == []


def test_container_that_exits_during_repair_is_reported_gone(
    lxcfs, holders, monkeypatch: pytest.MonkeyPatch
) -> None:
    doomed = holders(lxcfs.mount_dir, FILES)
    survivor = holders(lxcfs.mount_dir, FILES)
    lxcfs.kill9()
    lxcfs.start()
    real_probe = scan_module.probe

    def probe_then_exit(ns, entry, timeout=2.0, proc="/proc"):
        result = real_probe(ns, entry, timeout, proc)
        if ns.pid == doomed.pid and doomed.proc.poll() is None:
            doomed.proc.kill()
            doomed.proc.wait()
        return result

    monkeypatch.setattr(scan_module, "probe", probe_then_exit)
    report = repair(str(lxcfs.mount_dir))

    statuses = {(o.namespace.pid, o.mount_point): o.status for o in report.outcomes}
    assert {s for (pid, _), s in statuses.items() if pid == doomed.pid} == {"gone"}
    assert statuses[(survivor.pid, survivor.targets["proc/meminfo"])] == "repaired"
    assert survivor.read(survivor.targets["proc/meminfo"]).startswith("MemTotal:")


@pytest.mark.parametrize(
    ("capability", "reason"),
    [
        # setns into a mount namespace needs CAP_SYS_CHROOT: clones work, entering fails
        ("sys_chroot", "cannot enter: setns: Operation not permitted"),
        # without CAP_SYS_ADMIN not even the live file can be cloned
        ("sys_admin", "cannot clone: open_tree: Operation not permitted"),
    ],
)
def test_namespace_we_cannot_enter_is_reported_not_fatal(
    lxcfs, holders, capability: str, reason: str
) -> None:
    h = holders(lxcfs.mount_dir, FILES)
    lxcfs.kill9()
    lxcfs.start()
    proc = subprocess.run(
        [
            "setpriv",
            f"--bounding-set=-{capability}",
            f"--inh-caps=-{capability}",
            sys.executable,
            "-m",
            "kube_lxcfs",
            "repair",
            "--mount-dir",
            str(lxcfs.mount_dir),
            "--state-dir",
            str(lxcfs.base / "state"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    failed = [ln for ln in proc.stdout.splitlines() if ln.startswith("failed")]
    assert {ln.split()[1] for ln in failed} >= set(h.targets.values())
    assert all(reason in ln for ln in failed), failed
    assert "Traceback" not in proc.stderr
    # and a privileged pass afterwards repairs them
    assert repair(str(lxcfs.mount_dir)).failed == []


def test_user_namespace_owned_mounts_are_stacked(lxcfs, holders) -> None:
    """Inherited mounts of a userns-owned namespace are locked: the live file goes on top."""
    h = holders(lxcfs.mount_dir, {}, unshare_args=("-U", "--map-root-user"))
    lxcfs.kill9()
    lxcfs.start()
    report = repair(str(lxcfs.mount_dir))
    mine = [o for o in report.outcomes if o.namespace.inode == h.ns_inode]
    assert [(o.mount_point, o.status, o.method) for o in mine] == [
        (str(lxcfs.mount_dir), "repaired", "stack")
    ]
    assert h.read(str(lxcfs.mount_dir / "proc" / "meminfo")).startswith("MemTotal:")
    assert repair(str(lxcfs.mount_dir)).count("repaired") == 0


def test_bind_fallback_uses_a_live_path_inside_or_reports_unrepairable(
    shared_lxcfs, holders
) -> None:
    """Without the new mount API: bind from the mount dir propagated into the namespace."""
    slave = holders(shared_lxcfs.mount_dir, FILES, propagation="slave")
    private = holders(shared_lxcfs.mount_dir, FILES, propagation="private")
    shared_lxcfs.kill9()
    shared_lxcfs.start()
    report = repair(str(shared_lxcfs.mount_dir), strategy=Strategy.BIND)
    by = {(o.namespace.inode, o.mount_point): o for o in report.outcomes}
    for target in slave.targets.values():
        assert by[(slave.ns_inode, target)].status == "repaired"
        assert by[(slave.ns_inode, target)].method == "bind"
    assert slave.read(slave.targets["proc/meminfo"]).startswith("MemTotal:")
    assert all(m.read_only for m in slave.mounts() if m.mount_point in slave.targets.values())
    for target in private.targets.values():
        assert by[(private.ns_inode, target)].status == "failed"
        assert "unrepairable" in by[(private.ns_inode, target)].reason


def test_detach_falls_back_to_the_file_below_and_repair_reattaches(lxcfs, holders) -> None:
    h = holders(lxcfs.mount_dir, FILES)
    state = lxcfs.base / "state"
    report = detach(str(lxcfs.mount_dir), state_dir=str(state))
    assert report.failed == []
    assert {o.mount_point for o in report.outcomes if o.namespace.inode == h.ns_inode} >= set(
        h.targets.values()
    )
    assert h.read(h.targets["proc/meminfo"]) == SENTINEL
    lxcfs.stop()
    assert h.read(h.targets["proc/meminfo"]) == SENTINEL  # daemon down: no error
    lxcfs.start()
    dry = repair(str(lxcfs.mount_dir), state_dir=str(state), dry_run=True)
    assert {t for (_, t) in stale_set(dry)} >= set(h.targets.values())
    back = repair(str(lxcfs.mount_dir), state_dir=str(state))
    assert back.failed == []
    reattached = {o.mount_point for o in back.outcomes if o.status == "reattached"}
    assert reattached >= set(h.targets.values())
    assert h.read(h.targets["proc/meminfo"]).startswith("MemTotal:")
    assert all(m.read_only for m in h.mounts() if m.mount_point in h.targets.values())
    assert repair(str(lxcfs.mount_dir), state_dir=str(state)).count("reattached") == 0

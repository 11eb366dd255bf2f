"""The daemon repairs containers by itself after every start, and detaches on request."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kube_lxcfs.fuse.stop import DRAIN_TIMEOUT
from kube_lxcfs.repair import repair
from support.waiting import wait_for

from .conftest import needs_root
from .helpers import SENTINEL, KubeLxcfsSource

pytestmark = [needs_root, pytest.mark.root, pytest.mark.fuse]

FILES = {"proc/meminfo": "ctr/proc/meminfo", "proc/uptime": "ctr/proc/uptime"}


def reads_live(holder, path: str) -> bool:
    try:
        text = holder.read(path)
    except OSError:
        return False
    # meminfo starts with MemTotal, uptime with the seconds
    return text.startswith("MemTotal:") or text[:1].isdigit()


def test_daemon_repairs_after_kill9_without_help(daemon: KubeLxcfsSource, holders) -> None:
    hs = [holders(daemon.mount_dir, FILES) for _ in range(3)]
    metrics = daemon.base / "repair.prom"
    daemon.kill9()
    for h in hs:
        with pytest.raises(OSError) as exc:
            h.read(h.targets["proc/meminfo"])
        assert exc.value.errno == errno.ENOTCONN
    daemon.start("--repair-metrics-file", str(metrics))
    wait_for(
        lambda: all(reads_live(h, t) for h in hs for t in h.targets.values()),
        timeout=5,
        what="every namespace reads live files",
    )
    wait_for(daemon.repaired, what="repair summary in the log")
    assert "repaired" in daemon.log()
    wait_for(metrics.exists, what="the metrics file")
    samples = {
        (s.name, s.labels.get("outcome")): s.value
        for family in text_string_to_metric_families(metrics.read_text())
        for s in family.samples
    }
    assert samples[("kube_lxcfs_repair_passes_total", None)] == 1
    assert samples[("kube_lxcfs_repair_mounts_total", "repaired")] >= 9  # 3 x (2 files + dir)
    for h in hs:
        assert all(
            m.read_only and m.dev == daemon.dev
            for m in h.mounts()
            if m.mount_point in h.targets.values()
        )
    # the daemon's pass left nothing to do
    assert repair(str(daemon.mount_dir)).count("repaired") == 0


def test_faults_during_the_start_up_repair_do_not_stop_the_daemon(
    daemon: KubeLxcfsSource, holders
) -> None:
    replaced = holders(daemon.mount_dir, FILES)
    healthy = holders(daemon.mount_dir, FILES)
    userns = holders(daemon.mount_dir, {}, unshare_args=("-U", "--map-root-user"))
    daemon.kill9()
    mine = Path(replaced.targets["proc/uptime"]).parent / "mine"
    mine.write_text("mine\n")
    replaced.run("mount", "--bind", str(mine), replaced.targets["proc/uptime"])
    daemon.start()
    wait_for(daemon.repaired, what="repair summary in the log")
    assert daemon.alive()
    assert replaced.read(replaced.targets["proc/uptime"]) == "mine\n"
    assert reads_live(replaced, replaced.targets["proc/meminfo"])
    assert reads_live(healthy, healthy.targets["proc/meminfo"])
    assert reads_live(userns, str(daemon.mount_dir / "proc" / "meminfo"))
    assert (daemon.mount_dir / "proc" / "meminfo").read_text().startswith("MemTotal:")


def test_on_stop_detach_falls_back_to_the_file_below_and_next_start_reattaches(
    tmp_path: Path, holders
) -> None:
    daemon = KubeLxcfsSource(tmp_path / "kube-lxcfs", "--on-stop=detach")
    try:
        daemon.start()
        h = holders(daemon.mount_dir, FILES)
        assert reads_live(h, h.targets["proc/meminfo"])
        assert daemon.stop() == 0
        assert "detached" in daemon.log()
        # daemon down: the sentinel under the mount, no error
        assert h.read(h.targets["proc/meminfo"]) == SENTINEL
        assert h.read(h.targets["proc/uptime"]) == SENTINEL
        assert daemon.dev is None
        daemon.start()
        wait_for(
            lambda: all(reads_live(h, t) for t in h.targets.values()),
            timeout=5,
            what="re-attached after restart",
        )
        wait_for(daemon.repaired, what="repair summary in the log")
        assert "reattached" in daemon.log()
        assert all(m.read_only for m in h.mounts() if m.mount_point in h.targets.values())
    finally:
        daemon.close()


def test_on_stop_detach_lets_a_read_that_opened_before_the_detach_finish(
    tmp_path: Path, holders
) -> None:
    """A container's file opened just before its mount was detached still reads: the daemon
    serves on until it is closed (found by the chaos run: a read racing a SIGTERM failed with
    ENOTCONN at a SIGTERM), and a file held open longer does not hold the stop for long."""
    daemon = KubeLxcfsSource(tmp_path / "kube-lxcfs", "--on-stop=detach")
    try:
        daemon.start()
        h = holders(daemon.mount_dir, FILES)
        held = os.open(f"/proc/{h.pid}/root{h.targets['proc/meminfo']}", os.O_RDONLY)
        try:
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: "detached" in daemon.log(), what="the detach pass")
            with pytest.raises(AssertionError):  # still serving the open file
                wait_for(lambda: daemon.proc.poll() is not None, timeout=0.3)
            assert os.pread(held, 4096, 0).startswith(b"MemTotal:")
        finally:
            os.close(held)
        assert daemon.proc.wait(timeout=5) == 0
        assert h.read(h.targets["proc/meminfo"]) == SENTINEL
        daemon.proc = None
        # held past the drain: the stop still ends, about a second later, and says so
        daemon.start()
        wait_for(lambda: reads_live(h, h.targets["proc/meminfo"]), timeout=5, what="reattached")
        held = os.open(f"/proc/{h.pid}/root{h.targets['proc/meminfo']}", os.O_RDONLY)
        try:
            started = time.monotonic()
            assert daemon.stop() == 0
            assert time.monotonic() - started < DRAIN_TIMEOUT + 4
            assert "files still open" in daemon.log()
            with pytest.raises(OSError) as exc:
                os.pread(held, 4096, 0)
            assert exc.value.errno == errno.ENOTCONN
        finally:
            os.close(held)
    finally:
        daemon.close()


HALF_A_PASS = """\
import os, signal, sys
from kube_lxcfs.repair import engine
real_run = engine._run
def run_then_die(*args, **kwargs):
    outcomes = real_run(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # killed right after its first container
engine._run = run_then_die
engine.repair(sys.argv[1], state_dir=sys.argv[2], only_known=True)
"""


def test_mounts_of_a_generation_killed_half_way_through_its_repair_are_still_ours(
    tmp_path: Path, holders
) -> None:
    """A daemon killed during its start-up pass left containers on its own connection; two
    generations later they must still count as ours (found by the chaos run: the generation
    was only recorded at the end of the pass, so they were "skipped foreign" for good)."""
    daemon = KubeLxcfsSource(tmp_path / "kube-lxcfs")
    try:
        daemon.start()
        wait_for(daemon.repaired, what="generation 1's pass (it records generation 1)")
        hs = [holders(daemon.mount_dir, FILES) for _ in range(2)]
        daemon.kill9()
        daemon.start("--no-repair")  # generation 2: no pass of its own ...
        half = subprocess.run(  # ... but half of one, then it dies with its pass
            [sys.executable, "-c", HALF_A_PASS, str(daemon.mount_dir), str(daemon.state_dir)],
            check=False,
            capture_output=True,
            text=True,
        )
        assert half.returncode == -signal.SIGKILL, half.stderr
        live = [h for h in hs if reads_live(h, h.targets["proc/meminfo"])]
        assert len(live) == 1, "the half pass repaired exactly one namespace"
        daemon.kill9()  # the one it repaired is dead again, on generation 2's connection
        daemon.start("--no-repair")  # generation 3 dies before any pass: "the previous one"
        daemon.kill9()
        daemon.start()  # generation 4 repairs as the node's daemon does
        wait_for(daemon.repaired, what="repair summary in the log")
        assert all(reads_live(h, t) for h in hs for t in h.targets.values()), daemon.log()
        assert "skipped" not in daemon.log()
    finally:
        daemon.close()


def test_on_stop_keep_leaves_containers_stale_until_the_next_start(
    daemon: KubeLxcfsSource, holders
) -> None:
    h = holders(daemon.mount_dir, FILES)
    assert daemon.stop() == 0
    with pytest.raises(OSError) as exc:
        h.read(h.targets["proc/meminfo"])
    assert exc.value.errno == errno.ENOTCONN
    daemon.start()
    wait_for(lambda: reads_live(h, h.targets["proc/meminfo"]), timeout=5, what="repaired")


def test_a_clean_stop_forgets_the_generations_only_when_no_container_holds_them(
    daemon: KubeLxcfsSource, holders
) -> None:
    """After an uninstall nothing of ours stays in the state directory; while a container
    still holds our files, the record stays for the next start's repair (issue 13)."""

    def records() -> list[Path]:
        return list(daemon.state_dir.glob("generations-*.json"))

    h = holders(daemon.mount_dir, FILES)
    wait_for(daemon.repaired, timeout=10, what="the start-up repair pass")
    assert records()
    assert daemon.stop() == 0
    assert records(), "a container holds our mounts: the next start must know them"
    daemon.start()
    wait_for(lambda: reads_live(h, h.targets["proc/meminfo"]), timeout=5, what="repaired")
    h.close()
    assert daemon.stop() == 0
    assert not records(), daemon.log()[-2000:]


def test_a_second_daemon_of_the_same_name_leaves_the_first_ones_containers_alone(
    tmp_path: Path, daemon: KubeLxcfsSource, holders
) -> None:
    """Only generations of its own mount directory are repaired by a daemon."""
    mine = holders(daemon.mount_dir, FILES)
    other = KubeLxcfsSource(tmp_path / "other", fsname=daemon.fsname)
    try:
        other.start()
        daemon.kill9()
        other.kill9()
        other.start()  # restarts first: must not take the first daemon's stale mounts
        wait_for(other.repaired, what="second daemon's repair summary")
        for target in mine.targets.values():
            with pytest.raises(OSError) as exc:
                mine.read(target)
            assert exc.value.errno == errno.ENOTCONN
        daemon.start()
        wait_for(
            lambda: all(reads_live(mine, t) for t in mine.targets.values()),
            timeout=5,
            what="the first daemon repairs its own",
        )
        assert all(
            m.dev == daemon.dev for m in mine.mounts() if m.mount_point in mine.targets.values()
        )
    finally:
        other.close()


def test_a_fresh_daemon_on_another_directory_takes_nothing(
    tmp_path: Path, daemon: KubeLxcfsSource, holders
) -> None:
    """A private daemon (e.g. of `kube-lxcfs run`) with no history of its own directory
    leaves another daemon's stale mounts alone, even with the same name."""
    mine = holders(daemon.mount_dir, FILES)
    daemon.kill9()
    private = KubeLxcfsSource(tmp_path / "private", fsname=daemon.fsname)
    try:
        private.start()
        wait_for(private.repaired, what="private daemon's repair summary")
        assert "repaired" not in private.log().split("repair:")[-1]
        with pytest.raises(OSError) as exc:
            mine.read(mine.targets["proc/meminfo"])
        assert exc.value.errno == errno.ENOTCONN
    finally:
        private.close()


def test_the_start_up_repair_never_holds_the_request_loop(daemon: KubeLxcfsSource, holders) -> None:
    """Reads of the new mount are answered while the repair pass is still running."""
    hs = [holders(daemon.mount_dir, FILES) for _ in range(12)]
    daemon.kill9()
    answered: list[float] = []
    stop = threading.Event()
    meminfo = daemon.mount_dir / "proc" / "meminfo"

    def reader() -> None:
        while not stop.is_set():
            try:
                if meminfo.read_text().startswith("MemTotal:"):
                    answered.append(time.time())
            except OSError:
                continue  # down, or the dead mount: not answered

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        daemon.start()
        summary = wait_for(
            lambda: re.search(
                r"^(\S+ \S+) INFO kube_lxcfs.repair: repair: .* in (\d+) ms$",
                daemon.log(),
                re.M,
            ),
            what="repair summary in the log",
        )
    finally:
        stop.set()
        thread.join()
    ended = datetime.strptime(summary.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    began = ended - int(summary.group(2)) / 1000
    assert int(summary.group(2)) >= 20, "the pass is too short to tell"
    during = [t for t in answered if began < t < ended]
    assert during, f"no read answered during the {summary.group(2)} ms repair pass"
    assert all(reads_live(h, h.targets["proc/meminfo"]) for h in hs)

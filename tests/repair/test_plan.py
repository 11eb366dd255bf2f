"""The pure half of repair: mountinfo text + probe results -> findings."""

from __future__ import annotations

import errno

from kube_lxcfs.mountinfo import is_visible, parse_line, parse_mountinfo, topmost_at
from kube_lxcfs.repair.plan import (
    Probe,
    State,
    bind_source_inside,
    classify,
    find_live_fs,
    probe_targets,
)

# Recorded on this machine: lxcfs (fsname kube-lxcfs) on /var/lib/lxcfs, restarted once
# (old connection 0:43, new 0:41), seen from the host and from a container.
HOST = """\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
27 22 0:25 / /var rw,relatime shared:5 - tmpfs tmpfs rw
47 27 0:41 / /var/lib/lxcfs rw,nosuid,nodev,relatime - fuse.lxcfs kube-lxcfs rw,user_id=0
"""

CONTAINER = """\
300 280 0:60 / / ro,relatime - overlay overlay rw
301 300 0:61 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
302 301 0:43 /proc/meminfo /proc/meminfo ro,nosuid,nodev,relatime - fuse.lxcfs kube-lxcfs rw
303 301 0:41 /proc/uptime /proc/uptime ro,nosuid,nodev,relatime - fuse.lxcfs kube-lxcfs rw
304 301 0:43 /proc/cpuinfo /proc/cpuinfo ro,nosuid,nodev,relatime - fuse.lxcfs kube-lxcfs rw
305 304 0:62 / /proc/cpuinfo rw,relatime - tmpfs usertmp rw
306 300 0:43 /sys/devices/system/cpu /sys/devices/system/cpu ro,relatime - fuse.lxcfs kube-lxcfs rw
307 300 0:50 / /data\\040dir rw - fuse.lxcfs lxcfs rw
308 300 0:41 / /var/lib/lxcfs ro,relatime - fuse.lxcfs kube-lxcfs rw
"""


def live():
    result = find_live_fs(parse_mountinfo(HOST), "/var/lib/lxcfs")
    assert result is not None
    return result


def test_parse_line_unescapes_paths_and_reads_flags() -> None:
    entry = parse_line("307 300 0:50 / /data\\040dir rw - fuse.lxcfs lxcfs rw")
    assert entry.mount_point == "/data dir"
    assert entry.dev == (0, 50)
    assert not entry.read_only
    assert parse_line(CONTAINER.splitlines()[2]).read_only


def test_a_deleted_root_is_the_path_it_was() -> None:
    """A dead FUSE file whose lookup failed shows ``//deleted`` after its root (seen here)."""
    line = "119 47 0:50 /proc/meminfo//deleted /ctr/meminfo ro - fuse.lxcfs kube-lxcfs ro"
    assert parse_line(line).root == "/proc/meminfo"


def test_live_fs_is_the_top_fuse_mount_at_the_directory() -> None:
    fs = live()
    assert (fs.mount_id, fs.dev, fs.fstype, fs.source) == (47, (0, 41), "fuse.lxcfs", "kube-lxcfs")
    assert fs.path_of("/proc/meminfo") == "/var/lib/lxcfs/proc/meminfo"
    assert fs.path_of("/") == "/var/lib/lxcfs"
    assert find_live_fs(parse_mountinfo(HOST), "/var/lib") is None


def test_stacked_and_covered_mounts_are_not_visible() -> None:
    mounts = parse_mountinfo(CONTAINER)
    by_id = {m.mount_id: m for m in mounts}
    assert topmost_at(mounts, "/proc/cpuinfo").mount_id == 305
    assert not is_visible(mounts, by_id[304])
    assert is_visible(mounts, by_id[305])
    assert is_visible(mounts, by_id[302])
    # a new /proc over the old one hides everything mounted under the old one
    covered = [*mounts, parse_line("309 300 0:70 / /proc rw - proc proc rw")]
    assert not is_visible(covered, by_id[302])


def test_only_visible_mounts_of_an_old_connection_are_probed() -> None:
    targets = probe_targets(parse_mountinfo(CONTAINER), live(), host=False)
    assert [m.mount_id for m in targets] == [302, 306]


def test_classify_uses_device_then_probe() -> None:
    probes = {302: Probe(error=errno.ENOTCONN), 306: Probe()}
    findings = classify(parse_mountinfo(CONTAINER), live(), probes, host=False)
    states = {f.entry.mount_id: f.state for f in findings}
    assert states == {
        302: State.STALE,
        303: State.HEALTHY,
        304: State.SHADOWED,
        306: State.FOREIGN,
        308: State.HEALTHY,
    }  # 307 belongs to another filesystem (source lxcfs): not ours


def test_probe_timeouts_and_other_errors_are_unknown_not_stale() -> None:
    mounts = parse_mountinfo(CONTAINER)
    findings = classify(
        mounts, live(), {302: Probe(timed_out=True), 306: Probe(error=errno.EACCES)}, host=False
    )
    unknown = {f.entry.mount_id: f.reason for f in findings if f.state is State.UNKNOWN}
    assert unknown == {
        302: "statvfs did not answer in time",
        306: "statvfs failed: Permission denied",
    }


def test_the_live_mount_itself_is_not_a_finding_in_the_host_namespace() -> None:
    assert classify(parse_mountinfo(HOST), live(), {}, host=True) == []


def test_bind_source_inside_finds_the_propagated_mount_dir() -> None:
    mounts = parse_mountinfo(CONTAINER)
    meminfo = next(m for m in mounts if m.mount_id == 302)
    assert bind_source_inside(mounts, live(), meminfo) == "/var/lib/lxcfs/proc/meminfo"
    without = [m for m in mounts if m.mount_id != 308]
    assert bind_source_inside(without, live(), meminfo) is None


def test_known_generations_decide_which_stale_mounts_are_ours() -> None:
    mounts = parse_mountinfo(CONTAINER)
    assert [m.mount_id for m in probe_targets(mounts, live(), host=False, known_devs=set())] == []
    known = {(0, 43)}
    assert [m.mount_id for m in probe_targets(mounts, live(), host=False, known_devs=known)] == [
        302,
        306,
    ]
    findings = classify(mounts, live(), {}, host=False, known_devs={(0, 99)})
    foreign = {f.entry.mount_id: f.reason for f in findings if f.state is State.FOREIGN}
    assert foreign == {
        302: "a connection this mount directory never had",
        306: "a connection this mount directory never had",
    }


def test_another_daemons_mount_point_in_our_namespace_is_never_ours() -> None:
    host = parse_mountinfo(HOST + "48 27 0:44 / /var/lib/other rw - fuse.lxcfs kube-lxcfs rw\n")
    findings = classify(host, live(), {}, host=True)
    assert [(f.entry.mount_id, f.state) for f in findings] == [(48, State.FOREIGN)]
    assert probe_targets(host, live(), host=True) == []

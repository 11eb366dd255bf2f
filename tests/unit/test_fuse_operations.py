"""TreeOperations without a kernel: snapshots, offsets, attributes, errors."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from kube_lxcfs.fuse import operations
from kube_lxcfs.fuse.daemon import mount_options, parse_mount_options
from kube_lxcfs.fuse.operations import FuseError, TreeOperations
from kube_lxcfs.mountinfo import parse_mountinfo
from kube_lxcfs.vfs import Node


class FakeTree:
    """Renders ``<path> for <pid> #<n>`` so every render is distinguishable."""

    def __init__(self) -> None:
        self.renders = 0
        self.lengths = 0

    def lookup(self, path: str) -> Node | None:
        return {
            "/": Node("dir", 0o755),
            "/proc": Node("dir", 0o555),
            "/proc/meminfo": Node("file", 0o444),
            "/proc/fail": Node("file", 0o444),
            "/proc/sized": Node("file", 0o444, per_reader_size=True),
            "/proc/sized-fail": Node("file", 0o444, per_reader_size=True),
            "/link": Node("symlink", 0o777, target="proc/meminfo"),
        }.get(path)

    def listdir(self, path: str) -> list[str]:
        return {"/": ["proc", "link"], "/proc": ["meminfo", "fail"]}[path]

    def read(self, path: str, pid: int) -> bytes:
        if path in ("/proc/fail", "/proc/sized-fail"):
            raise RuntimeError("boom")
        self.renders += 1
        return f"{path} for {pid} #{self.renders}\n".encode()

    def text_length(self, path: str, pid: int) -> int:
        """The length of the next render (which it does not count)."""
        if path in ("/proc/fail", "/proc/sized-fail"):
            raise RuntimeError("boom")
        self.lengths += 1
        return len(f"{path} for {pid} #{self.renders + 1}\n".encode())


@pytest.fixture
def ops() -> TreeOperations:
    caller = {"pid": 100}
    operations = TreeOperations(FakeTree(), caller_pid=lambda: caller["pid"], clock_ns=lambda: 7)
    operations.caller = caller  # type: ignore[attr-defined]
    return operations


def test_offset_zero_renders_and_later_offsets_slice_the_snapshot(ops: TreeOperations) -> None:
    fh = ops.open("/proc/meminfo", os.O_RDONLY)
    assert ops.read("/proc/meminfo", 5, 0, fh) == b"/proc"
    ops.caller["pid"] = 200  # type: ignore[attr-defined]
    # the rest of the same read sequence comes from the snapshot, not a new render
    assert ops.read("/proc/meminfo", 100, 5, fh) == b"/meminfo for 100 #1\n"
    assert ops.read("/proc/meminfo", 100, 500, fh) == b""
    # lseek(0) + read renders again, for whoever reads now
    assert ops.read("/proc/meminfo", 100, 0, fh) == b"/proc/meminfo for 200 #2\n"


def test_first_read_at_an_offset_renders(ops: TreeOperations) -> None:
    fh = ops.open("/proc/meminfo", os.O_RDONLY)
    assert ops.read("/proc/meminfo", 3, 14, fh) == b"for"


def test_each_open_has_its_own_snapshot(ops: TreeOperations) -> None:
    first = ops.open("/proc/meminfo", os.O_RDONLY)
    second = ops.open("/proc/meminfo", os.O_RDONLY)
    assert ops.read("/proc/meminfo", 100, 0, first).endswith(b"#1\n")
    assert ops.read("/proc/meminfo", 100, 0, second).endswith(b"#2\n")
    assert ops.read("/proc/meminfo", 100, 21, first) == b" #1\n"
    ops.release("/proc/meminfo", first)
    ops.release("/proc/meminfo", second)
    assert ops.files == {}


def test_writes_are_refused(ops: TreeOperations) -> None:
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC, os.O_WRONLY | os.O_APPEND):
        with pytest.raises(FuseError) as exc:
            ops.open("/proc/meminfo", flags)
        assert exc.value.errno == errno.EACCES


def test_attributes(ops: TreeOperations) -> None:
    attrs = ops.getattr("/proc/meminfo")
    assert stat.S_ISREG(attrs["st_mode"])
    assert stat.S_IMODE(attrs["st_mode"]) == 0o444
    assert (attrs["st_uid"], attrs["st_gid"], attrs["st_nlink"], attrs["st_size"]) == (0, 0, 1, 0)
    assert attrs["st_mtime"] == 7
    assert stat.S_ISDIR(ops.getattr("/proc")["st_mode"])
    assert ops.getattr("/proc")["st_nlink"] == 2
    link = ops.getattr("/link")
    assert stat.S_ISLNK(link["st_mode"])
    assert link["st_size"] == len("proc/meminfo")


def test_missing_paths_and_wrong_kinds(ops: TreeOperations) -> None:
    for call, code in (
        (lambda: ops.getattr("/nope"), errno.ENOENT),
        (lambda: ops.open("/nope", os.O_RDONLY), errno.ENOENT),
        (lambda: ops.open("/proc", os.O_RDONLY), errno.EISDIR),
        (lambda: ops.readdir("/proc/meminfo", 0), errno.ENOTDIR),
        (lambda: ops.readlink("/proc/meminfo"), errno.EINVAL),
        (lambda: ops.flush("/proc/meminfo", 0), errno.ENOSYS),
    ):
        with pytest.raises(FuseError) as exc:
            call()
        assert exc.value.errno == code


def test_listing_and_links(ops: TreeOperations) -> None:
    assert ops.readdir("/", 0) == [".", "..", "proc", "link"]
    assert ops.readlink("/link") == "proc/meminfo"


def test_a_failing_render_is_eio_and_logged_once(
    ops: TreeOperations, caplog: pytest.LogCaptureFixture
) -> None:
    fh = ops.open("/proc/fail", os.O_RDONLY)
    for _ in range(3):
        with pytest.raises(FuseError) as exc:
            ops.read("/proc/fail", 10, 0, fh)
        assert exc.value.errno == errno.EIO
    assert len([r for r in caplog.records if "rendering /proc/fail" in r.message]) == 1
    # other files keep working
    other = ops.open("/proc/meminfo", os.O_RDONLY)
    assert ops.read("/proc/meminfo", 100, 0, other).startswith(b"/proc/meminfo for 100")


def test_mount_option_parsing_and_defaults() -> None:
    assert parse_mount_options("a,b=c,, d=1") == {"a": True, "b": "c", "d": "1"}
    assert parse_mount_options(None) == {}
    merged = mount_options({"attr_timeout": "2", "nonempty": True, "max_read": "4096"})
    assert merged["attr_timeout"] == "2"
    assert merged["entry_timeout"] == "0.5"
    assert merged["allow_other"] is True and merged["direct_io"] is True and merged["ro"] is True
    assert merged["max_read"] == "4096"
    assert "nonempty" not in merged
    # fresh attributes at every open: the kernel fetches the size before each reader's splice
    defaults = mount_options({})
    assert defaults["attr_timeout"] == "0" and defaults["default_permissions"] is True


def test_parse_mountinfo_unescapes_and_keeps_order() -> None:
    text = (
        "68 27 0:45 / /tmp/a\\040b rw,relatime - fuse.lxcfs lxcfs rw,allow_other\n"
        "69 68 0:46 / /tmp/a\\040b ro - fuse.lxcfs kube-lxcfs ro\n"
    )
    assert [(e.mount_point, e.fstype, e.source, e.mount_id) for e in parse_mountinfo(text)] == [
        ("/tmp/a b", "fuse.lxcfs", "lxcfs", 68),
        ("/tmp/a b", "fuse.lxcfs", "kube-lxcfs", 69),
    ]


def test_kept_snapshots_stay_within_their_budget(
    ops: TreeOperations, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files held open after one read each (a pod opening a million) keep at most the budget;
    the oldest snapshot is forgotten and its next read renders afresh (docs/security.md)."""
    monkeypatch.setattr(operations, "SNAPSHOT_BUDGET", 10 * (operations.ENTRY_COST + 30))
    handles = [ops.open("/proc/meminfo", os.O_RDONLY) for _ in range(100)]
    for fh in handles:
        ops.read("/proc/meminfo", 5, 0, fh)
    assert ops.open_count == 100
    assert len(ops.files) <= 10
    assert handles[0] not in ops.files and handles[-1] in ops.files
    assert ops.read("/proc/meminfo", 100, 5, handles[0]).endswith(b"#101\n")  # fresh render
    assert ops.read("/proc/meminfo", 100, 5, handles[-1]).endswith(b"#100\n")  # its own
    for fh in handles:
        ops.release("/proc/meminfo", fh)
    assert ops.files == {} and ops.open_count == 0


def test_a_per_reader_size_is_the_length_of_the_callers_text(ops: TreeOperations) -> None:
    """GETATTR (the kernel sends one at every open) reports the next render's length."""
    size = ops.getattr("/proc/sized")["st_size"]
    fh = ops.open("/proc/sized", os.O_RDONLY)
    text = ops.read("/proc/sized", 4096, 0, fh)
    assert text == b"/proc/sized for 100 #1\n" and size == len(text)
    assert ops.read("/proc/sized", 100, size - 5, fh) == text[-5:]  # tail -c 5


def test_sizes_are_per_process_and_reused_only_briefly(ops: TreeOperations) -> None:
    clock = {"ns": 0}
    ops.clock_ns = lambda: clock["ns"]
    ops.getattr("/proc/sized")
    ops.getattr("/proc/sized")  # LOOKUP then GETATTR of one path walk: one length
    assert ops.tree.lengths == 1
    ops.caller["pid"] = 200  # type: ignore[attr-defined]
    ops.getattr("/proc/sized")
    assert ops.tree.lengths == 2
    clock["ns"] = operations.SIZE_REUSE_NS
    ops.getattr("/proc/sized")
    assert ops.tree.lengths == 3


def test_fstat_of_an_open_file_is_its_snapshots_length(ops: TreeOperations) -> None:
    """fstat comes as a GETATTR without a handle: the opener's latest handle answers it."""
    fh = ops.open("/proc/sized", os.O_RDONLY)
    text = ops.read("/proc/sized", 100, 0, fh)
    ops.caller["pid"] = 12345  # type: ignore[attr-defined]
    ops.getattr("/proc/sized")  # another process: its own length
    assert ops.tree.lengths == 1
    ops.caller["pid"] = 100  # type: ignore[attr-defined]
    assert ops.getattr("/proc/sized")["st_size"] == len(text)
    assert ops.getattr("/proc/sized", fh)["st_size"] == len(text)
    assert ops.tree.lengths == 1
    ops.caller["pid"] = 0  # RELEASE carries no pid
    ops.release("/proc/sized", fh)
    ops.caller["pid"] = 100  # type: ignore[attr-defined]
    ops.clock_ns = lambda: operations.SIZE_REUSE_NS
    ops.getattr("/proc/sized")  # the handle is gone: asked anew
    assert ops.tree.lengths == 2


def test_sizes_and_open_handles_leave_bounded_state(ops: TreeOperations) -> None:
    for pid in range(1000, 1000 + 2 * operations.KEPT_SIZES):
        ops.caller["pid"] = pid  # type: ignore[attr-defined]
        ops.getattr("/proc/sized")
    assert len(ops._sizes) == operations.KEPT_SIZES
    for pid in range(1000, 1000 + 2 * operations.LATEST_HANDLES):
        ops.caller["pid"] = pid  # type: ignore[attr-defined]
        ops.open("/proc/sized", os.O_RDONLY)
    assert len(ops._latest_handle) == len(ops._latest_key) == operations.LATEST_HANDLES


def test_a_failing_render_reports_size_zero_and_the_read_fails(ops: TreeOperations) -> None:
    assert ops.getattr("/proc/sized-fail")["st_size"] == 0
    fh = ops.open("/proc/sized-fail", os.O_RDONLY)
    with pytest.raises(FuseError) as exc:
        ops.read("/proc/sized-fail", 100, 0, fh)
    assert exc.value.errno == errno.EIO

"""New containers while the daemon is down never corrupt the node.

The webhook injects hostPath volumes of type File (and Directory for the cpu
directory): kubelet then refuses to start the pod while the source is missing
or not a file, and retries. Below kubelet, the runtime must not "help" by
creating the missing source: Docker used to create a directory at a file's
path, which then broke every later pod and the daemon itself. runc does not;
these tests hold it to that, for a missing source and for a dead FUSE mount.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kube_lxcfs.defaults import MOUNT_DIR
from kube_lxcfs.webhook.config import DEFAULT_FILES, build_paths

from .conftest import harness, needs_root, rootfs_builder
from .helpers import LxcfsSource

containers_harness = harness()
rootfs_module = rootfs_builder()


def test_webhook_declares_file_and_directory_host_path_types() -> None:
    paths = build_paths(MOUNT_DIR, DEFAULT_FILES)
    assert paths
    for path in paths:
        expected = "Directory" if path.host_path.endswith("/sys/devices/system/cpu") else "File"
        assert path.host_path_type == expected, path


@needs_root
@pytest.mark.root
@pytest.mark.containers
def test_runc_never_creates_a_missing_bind_source(tmp_path: Path) -> None:
    tiny = rootfs_module.ensure_rootfs(rootfs_module.TINY)
    empty_mount_dir = tmp_path / "lxcfs"  # the daemon is down and unmounted: nothing there
    empty_mount_dir.mkdir()
    with containers_harness.runc_session() as runc, pytest.raises(containers_harness.RuncError):
        runc.start(tiny, mount_dir=empty_mount_dir)
    assert list(empty_mount_dir.iterdir()) == []


@needs_root
@pytest.mark.root
@pytest.mark.fuse
@pytest.mark.containers
def test_runc_refuses_a_dead_fuse_source_and_starts_after_restart(lxcfs: LxcfsSource) -> None:
    tiny = rootfs_module.ensure_rootfs(rootfs_module.TINY)
    lxcfs.kill9()
    with containers_harness.runc_session() as runc:
        with pytest.raises(containers_harness.RuncError, match="not connected"):
            runc.start(tiny, mount_dir=lxcfs.mount_dir)
        lxcfs.start()
        container = runc.start(tiny, mount_dir=lxcfs.mount_dir)
        assert container.output("head", "-n1", "/proc/meminfo").startswith("MemTotal:")
    meminfo = lxcfs.mount_dir / "proc" / "meminfo"
    assert meminfo.is_file()

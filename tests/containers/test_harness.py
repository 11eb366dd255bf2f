"""The runc harness itself: limits land in the container's cgroup, mounts are the webhook's."""

from __future__ import annotations

from pathlib import Path

from runc_harness import (
    CGROUP_ROOT,
    INJECTED_DIRS,
    INJECTED_FILES,
    Resources,
    Runc,
    cgroup_dirs,
    lxcfs_mounts,
    oci_config,
)

from kube_lxcfs.webhook.config import DEFAULT_FILES

MiB = 1024 * 1024


def test_injected_list_is_the_webhooks_default() -> None:
    assert [*INJECTED_FILES, *(f"{d}/" for d in INJECTED_DIRS)] == list(DEFAULT_FILES)


def test_virtual_files_are_mounted_like_read_only_host_paths() -> None:
    mounts = lxcfs_mounts("/var/lib/lxcfs")
    assert [m["destination"] for m in mounts] == [
        "/proc/cpuinfo",
        "/proc/diskstats",
        "/proc/meminfo",
        "/proc/stat",
        "/proc/swaps",
        "/proc/uptime",
        "/proc/loadavg",
        "/sys/devices/system/cpu",
    ]
    for mount in mounts:
        assert mount["source"] == "/var/lib/lxcfs" + mount["destination"]
        assert mount["type"] == "bind"
        assert mount["options"] == ["rbind", "rprivate", "ro"]


def test_config_orders_proc_before_the_files_bound_over_it() -> None:
    config = oci_config("/rootfs", ["true"], Resources(), "/x", mount_dir="/m")
    destinations = [m["destination"] for m in config["mounts"]]
    assert destinations.index("/proc") < destinations.index("/proc/meminfo")
    assert destinations.index("/sys") < destinations.index("/sys/devices/system/cpu")
    assert config["root"] == {"path": "/rootfs", "readonly": True}


def test_resources_become_oci_linux_resources() -> None:
    resources = Resources.of(cpus=0.5, memory=256 * MiB, memory_swap=512 * MiB, cpuset="0")
    assert resources.to_oci()["memory"] == {"limit": 256 * MiB, "swap": 512 * MiB}
    assert resources.to_oci()["cpu"] == {"quota": 50_000, "period": 100_000, "cpus": "0"}


def _cgroup_file(pid: int, controller: str, name: str) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return (CGROUP_ROOT / controller / path.lstrip("/") / name).read_text().strip()
    raise AssertionError(f"pid {pid} has no {controller} cgroup")


def test_limits_reach_the_container_cgroup(runc: Runc, tiny_rootfs: Path) -> None:
    resources = Resources.of(cpus=0.5, memory=256 * MiB, memory_swap=512 * MiB, cpuset="0")
    container = runc.start(tiny_rootfs, resources=resources)
    pid = container.pid
    assert _cgroup_file(pid, "memory", "memory.limit_in_bytes") == str(256 * MiB)
    assert _cgroup_file(pid, "memory", "memory.memsw.limit_in_bytes") == str(512 * MiB)
    assert _cgroup_file(pid, "cpu", "cpu.cfs_quota_us") == "50000"
    assert _cgroup_file(pid, "cpu", "cpu.cfs_period_us") == "100000"
    assert _cgroup_file(pid, "cpuset", "cpuset.cpus") == "0"
    name = container.cgroups_path.lstrip("/")
    assert cgroup_dirs(name)
    container.delete()
    assert not cgroup_dirs(name)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper, pid 1 here, counts as dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_tiny_rootfs_is_busybox_only_and_read_only(runc: Runc, tiny_rootfs: Path) -> None:
    proc = runc.run(
        tiny_rootfs,
        ["sh", "-c", "readlink /bin/sh; ls /lib/x86_64-linux-gnu 2>&1; touch /x 2>&1; echo done"],
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "/bin/busybox"
    assert "No such file" in lines[1]  # no libc at all: busybox is static
    assert "Read-only file system" in lines[2]
    assert lines[-1] == "done"


def test_exit_code_and_output_of_a_one_shot_container(runc: Runc, tiny_rootfs: Path) -> None:
    proc = runc.run(tiny_rootfs, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")


def test_virtual_files_are_fuse_read_only_binds_inside(
    runc: Runc, tiny_rootfs: Path, fs_mount_dir: Path
) -> None:
    container = runc.start(tiny_rootfs, mount_dir=fs_mount_dir)
    mountinfo = container.output("cat", "/proc/self/mountinfo").splitlines()
    seen = {}
    for line in mountinfo:
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        seen[fields[4]] = (fields[5].split(","), fstype)
    for relative in (*INJECTED_FILES, *INJECTED_DIRS):
        options, fstype = seen[f"/{relative}"]
        assert "ro" in options, relative
        assert fstype.startswith("fuse"), relative

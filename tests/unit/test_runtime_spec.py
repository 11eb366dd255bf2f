"""Pure parts of the runtime wrapper: spec edits, runc argv parsing, settings, sysinfo struct."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kube_lxcfs.files import INJECTED_FILES
from kube_lxcfs.runtime.spec import WrapSettings, wrap_spec
from kube_lxcfs.runtime.wrapper import load_settings, parse_invocation
from kube_lxcfs.views.sysinfo import SYSINFO_SIZE, SysinfoValues, pack_sysinfo, unpack_sysinfo

SETTINGS = WrapSettings(mount_dir="/var/lib/lxcfs", seccomp_socket="/run/kube-lxcfs/seccomp.sock")


def base_spec(**extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {"args": ["sh"]},
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
        ],
        "linux": {"namespaces": [{"type": "pid"}]},
    }
    spec.update(extra)
    return spec


def destinations(spec: dict[str, Any]) -> list[str]:
    return [m["destination"] for m in spec["mounts"]]


def test_adds_every_default_file_read_only_from_the_mount_dir() -> None:
    out, report = wrap_spec(base_spec(), SETTINGS)
    added = {m["destination"]: m for m in out["mounts"][2:]}
    assert sorted(added) == sorted("/" + f.rstrip("/") for f in INJECTED_FILES)
    meminfo = added["/proc/meminfo"]
    assert meminfo["source"] == "/var/lib/lxcfs/proc/meminfo"
    assert meminfo["type"] == "bind"
    assert "ro" in meminfo["options"] and "rbind" in meminfo["options"]
    assert added["/sys/devices/system/cpu"]["source"] == "/var/lib/lxcfs/sys/devices/system/cpu"
    assert report.mounted and not report.skipped


def test_input_spec_is_not_modified() -> None:
    spec = base_spec()
    before = json.dumps(spec, sort_keys=True)
    wrap_spec(spec, SETTINGS)
    assert json.dumps(spec, sort_keys=True) == before


def test_existing_mount_targets_are_skipped() -> None:
    spec = base_spec()
    spec["mounts"].append({"destination": "/proc/meminfo", "type": "bind", "source": "/x"})
    spec["mounts"].append({"destination": "/sys/devices/system", "type": "bind", "source": "/y"})
    out, report = wrap_spec(spec, SETTINGS)
    assert destinations(out).count("/proc/meminfo") == 1
    assert "/sys/devices/system/cpu" not in destinations(out)
    assert set(report.skipped) == {"/proc/meminfo", "/sys/devices/system/cpu"}


def test_sandbox_and_opted_out_containers_are_untouched() -> None:
    for marks in (
        {"io.kubernetes.cri.container-type": "sandbox"},
        {"kube-lxcfs.io/inject": "false"},
        {"kube-lxcfs.io/inject": "No"},
    ):
        spec = base_spec(annotations=marks)
        out, _ = wrap_spec(spec, SETTINGS)
        assert out == spec


def test_files_annotation_selects_a_subset() -> None:
    spec = base_spec(annotations={"kube-lxcfs.io/files": "proc/meminfo, /proc/cpuinfo"})
    out, _ = wrap_spec(spec, SETTINGS)
    assert destinations(out)[2:] == ["/proc/cpuinfo", "/proc/meminfo"]


def test_the_files_annotation_only_narrows_the_configured_list() -> None:
    """A pod's annotation chooses among the node's files; it names no other path (a pod
    cannot get /etc/shadow or the whole mount dir bound into itself; docs/security.md)."""
    hostile = "../../etc/shadow,proc/../../../etc/passwd,/,.,proc,sys/devices,proc/meminfo"
    out, report = wrap_spec(base_spec(annotations={"kube-lxcfs.io/files": hostile}), SETTINGS)
    assert report.mounted == ["/proc/meminfo"]
    assert all(m["source"].startswith("/var/lib/lxcfs/proc/") for m in out["mounts"][2:])


BAD_SPECS = {
    "annotations a list": {"annotations": ["kube-lxcfs.io/files"]},
    "mounts an object": {"mounts": {"destination": "/proc"}},
    "a mount that is text": {"mounts": ["/proc"]},
    "files not text": {"annotations": {"kube-lxcfs.io/files": 7}},
    "a mount without fields": {"mounts": [None]},
}


@pytest.mark.parametrize("fields", list(BAD_SPECS.values()), ids=list(BAD_SPECS))
def test_a_malformed_spec_is_handed_over_unchanged(tmp_path: Path, fields: dict) -> None:
    """The wrapper never blocks a container because of us: whatever the bundle holds, the real
    runtime (here /bin/true, as containerd would call runc) gets it unchanged, and the
    wrapper says why in one line instead of a traceback."""
    (tmp_path / "config.json").write_text(json.dumps(base_spec(**fields)))
    before = (tmp_path / "config.json").read_text()
    env = {
        **os.environ,
        "KUBE_LXCFS_RUNTIME": "/bin/true",
        "KUBE_LXCFS_SECCOMP_SOCKET": "",
        "KUBE_LXCFS_RUNTIME_CONFIG": str(tmp_path / "absent.json"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "kube_lxcfs", "runtime", "create", "--bundle", str(tmp_path), "c1"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("kube-lxcfs-runc: leaving the bundle unchanged: ")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert (tmp_path / "config.json").read_text() == before


def test_new_allow_by_default_profile_notifies_sysinfo() -> None:
    out, report = wrap_spec(base_spec(), SETTINGS)
    profile = out["linux"]["seccomp"]
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert profile["listenerPath"] == "/run/kube-lxcfs/seccomp.sock"
    assert profile["syscalls"] == [{"names": ["sysinfo"], "action": "SCMP_ACT_NOTIFY"}]
    assert report.seccomp == "new allow-by-default profile"


def test_existing_allow_list_is_merged_not_replaced() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["read", "sysinfo", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        ],
    }
    out, report = wrap_spec(base_spec(linux={"seccomp": profile}), SETTINGS)
    merged = out["linux"]["seccomp"]
    assert merged["defaultAction"] == "SCMP_ACT_ERRNO"
    assert merged["syscalls"][0] == {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}
    assert merged["syscalls"][1]["names"] == ["mkdir"]
    assert merged["syscalls"][-1] == {"names": ["sysinfo"], "action": "SCMP_ACT_NOTIFY"}
    assert merged["listenerPath"] == SETTINGS.seccomp_socket
    assert report.seccomp == "merged into the existing profile"


def test_explicit_denial_of_sysinfo_and_foreign_listener_are_respected() -> None:
    deny = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["sysinfo"], "action": "SCMP_ACT_ERRNO"}],
    }
    out, report = wrap_spec(base_spec(linux={"seccomp": deny}), SETTINGS)
    assert out["linux"]["seccomp"] == deny
    assert report.seccomp.startswith("left alone")
    foreign = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/other.sock"}
    out, report = wrap_spec(base_spec(linux={"seccomp": foreign}), SETTINGS)
    assert out["linux"]["seccomp"] == foreign
    assert "/run/other.sock" in report.seccomp


def test_sysinfo_interception_can_be_disabled() -> None:
    out, _ = wrap_spec(base_spec(), WrapSettings(seccomp_socket=None))
    assert "seccomp" not in out["linux"]
    spec = base_spec(annotations={"kube-lxcfs.io/sysinfo": "false"})
    out, _ = wrap_spec(spec, SETTINGS)
    assert "seccomp" not in out["linux"]


@pytest.mark.parametrize(
    ("argv", "command", "bundle"),
    [
        (["create", "--bundle", "/b", "id"], "create", "/b"),
        (["--root", "/run/x", "--log", "/l", "create", "-b", "/b", "id"], "create", "/b"),
        (["--systemd-cgroup", "run", "--bundle=/b2", "-d", "id"], "run", "/b2"),
        (["run", "id"], "run", "/cwd"),
        (["create", "-b", "rel", "id"], "create", "/cwd/rel"),
        (["--root", "/r", "start", "id"], "start", None),
        (["delete", "--force", "id"], "delete", None),
        (["--version"], None, None),
        ([], None, None),
    ],
)
def test_parse_invocation(argv: list[str], command: str | None, bundle: str | None) -> None:
    inv = parse_invocation(argv, "/cwd")
    assert inv.command == command
    assert inv.bundle == bundle


def test_settings_from_config_file_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "runtime.json"
    config.write_text(json.dumps({"runtime": "crun", "mount_dir": "/srv/lxcfs"}))
    settings = load_settings({"KUBE_LXCFS_RUNTIME_CONFIG": str(config)})
    assert settings.runtime == "crun"
    assert settings.wrap.mount_dir == "/srv/lxcfs"
    assert settings.wrap.seccomp_socket == "/run/kube-lxcfs/seccomp.sock"
    settings = load_settings(
        {
            "KUBE_LXCFS_RUNTIME_CONFIG": str(config),
            "KUBE_LXCFS_RUNTIME": "/usr/sbin/runc",
            "KUBE_LXCFS_SECCOMP_SOCKET": "",
            "KUBE_LXCFS_FILES": "proc/meminfo,proc/stat",
        }
    )
    assert settings.runtime == "/usr/sbin/runc"
    assert settings.wrap.seccomp_socket is None
    assert settings.wrap.files == ("proc/meminfo", "proc/stat")
    assert load_settings({"KUBE_LXCFS_RUNTIME_CONFIG": str(tmp_path / "none")}).runtime == "runc"


def test_sysinfo_struct_layout_matches_the_kernel() -> None:
    values = SysinfoValues(
        uptime=42,
        loads=(2048, 1024, 0),
        totalram=256 << 20,
        freeram=100 << 20,
        sharedram=1 << 20,
        bufferram=0,
        totalswap=0,
        freeswap=0,
        procs=3,
    )
    data = pack_sysinfo(values)
    assert len(data) == SYSINFO_SIZE == 112
    # Hand-computed offsets of struct sysinfo on x86_64.
    assert int.from_bytes(data[0:8], "little") == 42
    assert int.from_bytes(data[8:16], "little") == 1 << 16  # load 1.00 in SI_LOAD_SHIFT
    assert int.from_bytes(data[32:40], "little") == 256 << 20  # totalram
    assert int.from_bytes(data[80:82], "little") == 3  # procs
    assert int.from_bytes(data[104:108], "little") == 1  # mem_unit
    assert unpack_sysinfo(data) == values


@given(
    st.integers(0, 1 << 40),
    st.integers(0, 1 << 50),
    st.integers(0, 1 << 20),
    st.integers(0, 70000),
)
def test_sysinfo_pack_round_trips(uptime: int, ram: int, load: int, procs: int) -> None:
    values = SysinfoValues(uptime, (load, load, load), ram, ram // 2, 0, 0, ram, 0, procs)
    back = unpack_sysinfo(pack_sysinfo(values))
    assert back.totalram == ram and back.uptime == uptime
    assert back.procs == min(procs, 0xFFFF)

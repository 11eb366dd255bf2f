"""Every command, every class of bad argument: one line naming the option, exit 2, no traceback.

Classes: missing (a required argument, an option without its value), empty, negative, huge,
a wrong unit, bytes that are not UTF-8, and paths that are a file where a directory is
needed, a directory where a file is, missing, or not writable. Each case runs the real
``kube-lxcfs`` entry point in a subprocess. Commands that would change the machine when an
argument slips through get ``--dry-run`` or temporary paths, and a deadline: a command that
accepts a bad argument and starts working fails the case instead of hanging the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kube_lxcfs.commands import SUBCOMMANDS

NOT_UTF8 = os.fsdecode(b"bad-\xff\xfe")
"""An argument as Python sees bytes that are not UTF-8 (surrogate escapes)."""

T = "{tmp}"
FILE = f"{T}/a-file"
DIR = f"{T}/a-dir"
MISSING = f"{T}/missing/deeper"
READ_ONLY = "/proc/kube-lxcfs-nowhere"
"""A path no one can create: procfs refuses new entries, even to root."""

# (command and arguments, what the message must name)
CASES: dict[str, tuple[list[str], str]] = {
    # --- fs -------------------------------------------------------------------------------------
    "fs missing mountpoint": (["fs"], "MOUNTPOINT"),
    "fs empty mountpoint": (["fs", ""], "MOUNTPOINT"),
    "fs mountpoint not creatable": (["fs", READ_ONLY], READ_ONLY),
    "fs bad cpu view": (["fs", "--cpu-view", "ram", f"{T}/mnt"], "--cpu-view"),
    "fs empty cgroup-of": (["fs", "--cgroup-of", "", f"{T}/mnt"], "--cgroup-of"),
    "fs non-UTF-8 on-stop": (["fs", "--on-stop", NOT_UTF8, f"{T}/mnt"], "--on-stop"),
    "fs option without value": (["fs", f"{T}/mnt", "--on-stop"], "--on-stop"),
    "fs pidfile is a directory": (["fs", "-p", DIR, f"{T}/mnt"], DIR),
    "fs mountpoint is a file": (["fs", FILE], FILE),
    "fs mountpoint below a file": (["fs", f"{FILE}/mnt"], FILE),
    "fs state dir is a file": (["fs", "--state-dir", FILE, f"{T}/mnt"], "--state-dir"),
    "fs option without a name": (["fs", "-o", "=x", f"{T}/mnt"], "-o"),
    # --- run ------------------------------------------------------------------------------------
    "run missing command": (["run", "--memory", "64Mi"], "COMMAND"),
    "run empty memory": (["run", "--memory", "", "--", "true"], "--memory"),
    "run negative memory": (["run", "--memory", "-1Mi", "--", "true"], "--memory"),
    "run memory wrong unit": (["run", "--memory", "512MB", "--", "true"], "--memory"),
    "run non-UTF-8 memory": (["run", "--memory", NOT_UTF8, "--", "true"], "--memory"),
    "run negative cpus": (["run", "--cpus", "-1", "--", "true"], "--cpus"),
    "run cpus wrong unit": (["run", "--cpus", "2cores", "--", "true"], "--cpus"),
    "run bad cpuset": (["run", "--cpuset", "9999", "--", "true"], "--cpuset"),
    "run huge memory": (["run", "--memory", "99999999999999999999Ti", "--", "true"], "--memory"),
    "run huge cpus": (["run", "--cpus", "1e30", "--", "true"], "--cpus"),
    "run huge cpuset": (["run", "--cpuset", "0-99999999999", "--", "true"], "--cpuset"),
    "run huge exponent": (["run", "--memory", "1e999999999", "--", "true"], "--memory"),
    "run mount dir is a file": (["run", "--mount-dir", FILE, "--", "true"], "--mount-dir"),
    # --- repair ---------------------------------------------------------------------------------
    "repair empty strategy": (["repair", "--strategy", ""], "--strategy"),
    "repair mount dir is a file": (["repair", "--mount-dir", FILE], "--mount-dir"),
    # --- webhook --------------------------------------------------------------------------------
    "webhook missing cert": (["webhook"], "--tls-cert"),
    "webhook cert is a directory": (["webhook", "--tls-cert", DIR, "--tls-key", FILE], DIR),
    "webhook cert missing": (["webhook", "--tls-cert", MISSING, "--tls-key", FILE], MISSING),
    "webhook negative port": (["webhook", "--port", "-1"], "--port"),
    "webhook huge port": (["webhook", "--port", "99999"], "--port"),
    "webhook empty port": (["webhook", "--port", ""], "--port"),
    "webhook port wrong unit": (["webhook", "--port", "8443/tcp"], "--port"),
    "webhook negative idle timeout": (["webhook", "--idle-timeout", "-1"], "--idle-timeout"),
    "webhook idle timeout unit": (["webhook", "--idle-timeout", "10s"], "--idle-timeout"),
    "webhook huge idle timeout": (["webhook", "--idle-timeout", "1e400"], "--idle-timeout"),
    "webhook huge grace": (["webhook", "--shutdown-grace", "1e400"], "--shutdown-grace"),
    "webhook zero connections": (["webhook", "--max-connections", "0"], "--max-connections"),
    "webhook huge body limit": (["webhook", "--max-body-bytes", "9" * 40], "--max-body-bytes"),
    "webhook body limit unit": (["webhook", "--max-body-bytes", "8Mi"], "--max-body-bytes"),
    "webhook non-UTF-8 mode": (["webhook", "--inject-mode", NOT_UTF8], "--inject-mode"),
    # --- certs ----------------------------------------------------------------------------------
    "certs missing output": (["certs"], "--out-dir"),
    "certs negative days": (["certs", "--secret-yaml", "--days", "-5"], "--days"),
    "certs huge days": (["certs", "--secret-yaml", "--days", "9" * 30], "--days"),
    "certs days unit": (["certs", "--secret-yaml", "--days", "1y"], "--days"),
    "certs out dir not writable": (["certs", "--out-dir", READ_ONLY], READ_ONLY),
    "certs out dir is a file": (["certs", "--out-dir", FILE], "--out-dir"),
    "certs non-UTF-8 namespace": (
        ["certs", "--secret-yaml", "--namespace", NOT_UTF8],
        "--namespace",
    ),
    "certs empty service": (["certs", "--secret-yaml", "--service", ""], "--service"),
    # --- manifests / install / uninstall ---------------------------------------------------------
    "manifests empty namespace": (["manifests", "-n", ""], "--namespace"),
    "manifests non-UTF-8 namespace": (["manifests", "-n", NOT_UTF8], "--namespace"),
    "manifests non-UTF-8 image": (["manifests", "--image", NOT_UTF8], "--image"),
    "manifests empty image": (["manifests", "--image", ""], "--image"),
    "manifests empty set": (["manifests", "--set", ""], "--set"),
    "manifests non-UTF-8 set": (["manifests", "--set", f"nodeAgent.image.tag={NOT_UTF8}"], "--set"),
    "manifests values missing": (["manifests", "-f", MISSING], MISSING),
    "manifests values is a directory": (["manifests", "-f", DIR], DIR),
    "install negative timeout": (["install", "--dry-run", "--timeout", "-1"], "--timeout"),
    "install huge timeout": (["install", "--dry-run", "--timeout", "1e400"], "--timeout"),
    "install timeout unit": (["install", "--dry-run", "--timeout", "5m"], "--timeout"),
    "install bad dry run": (["install", "--dry-run=later"], "--dry-run"),
    "install kubeconfig missing": (["install", "--kubeconfig", MISSING], "--kubeconfig"),
    "uninstall negative timeout": (["uninstall", "--dry-run", "--timeout", "-1"], "--timeout"),
    "uninstall empty namespace": (["uninstall", "--dry-run", "-n", ""], "--namespace"),
    # --- doctor ---------------------------------------------------------------------------------
    "doctor empty namespace": (["doctor", "-n", ""], "--namespace"),
    "doctor non-UTF-8 files": (["doctor", "--node", "--files", NOT_UTF8], "--files"),
    "doctor empty context": (["doctor", "--context", ""], "--context"),
    "doctor kubeconfig missing": (["doctor", "--kubeconfig", MISSING], "--kubeconfig"),
    "doctor kubeconfig not one": (["doctor", "--kubeconfig", FILE], "--kubeconfig"),
    # --- runtime --------------------------------------------------------------------------------
    "runtime missing arguments": (["runtime"], "RUNC_ARGS"),
    # --- setup-node / setup-docker / setup-podman ------------------------------------------
    "setup-node host root missing": (["setup-node", "--dry-run", "--host-root", MISSING], MISSING),
    "setup-node host root is a file": (["setup-node", "--dry-run", "--host-root", FILE], FILE),
    "setup-node empty host root": (["setup-node", "--dry-run", "--host-root", ""], "--host-root"),
    "setup-docker config is a directory": (["setup-docker", "--dry-run", "--config", DIR], DIR),
    "setup-docker empty config": (["setup-docker", "--dry-run", "--config", ""], "--config"),
    "setup-podman empty runtime": (
        ["setup-podman", "--dry-run", "--oci-runtime", ""],
        "--oci-runtime",
    ),
    "setup-podman prefix is a file": (["setup-podman", "--dry-run", "--prefix", FILE], "--prefix"),
}


def unmount_under(directory: Path) -> None:
    """Lazily unmount every mount at or below ``directory`` (deepest first)."""
    for _ in range(3):
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            points = [line.split()[4] for line in f]
        ours = [p for p in points if p == str(directory) or p.startswith(f"{directory}/")]
        if not ours:
            return
        for point in sorted(ours, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def test_the_table_covers_every_command() -> None:
    covered = {argv[0] for argv, _ in CASES.values()}
    assert covered == set(SUBCOMMANDS)


@pytest.mark.parametrize(("argv", "named"), list(CASES.values()), ids=list(CASES))
def test_a_bad_argument_is_one_line_naming_it_and_exit_2(
    tmp_path: Path, argv: list[str], named: str
) -> None:
    (tmp_path / "a-file").write_text("x\n")
    (tmp_path / "a-dir").mkdir()
    args = [a.replace(T, str(tmp_path)) for a in argv]
    named = named.replace(T, str(tmp_path))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KUBE_LXCFS")},
        "KUBECONFIG": str(tmp_path / "no-kubeconfig"),  # never a real cluster
        "HOME": str(tmp_path),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "kube_lxcfs", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"{args} was accepted and started working")
    finally:
        unmount_under(tmp_path)  # a filesystem that slipped through (on a bad mount point)
    text = os.fsdecode(err)
    lines = [line for line in text.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, text)
    assert "Traceback" not in text, text
    assert len(lines) == 1, text
    assert lines[0].startswith(f"kube-lxcfs {args[0]}"), text
    assert named in lines[0], text


def test_repair_on_a_node_without_the_agent_has_nothing_to_do(tmp_path: Path) -> None:
    """A --mount-dir that does not exist: one line saying so, exit 0 (not a failure)."""
    missing = tmp_path / "no-agent-here"
    proc = subprocess.run(
        [sys.executable, "-m", "kube_lxcfs", "repair", "--mount-dir", str(missing)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"kube-lxcfs repair: nothing to repair: {missing} does not exist"
        " (no kube-lxcfs agent on this node)"
    ]
    assert not missing.exists()

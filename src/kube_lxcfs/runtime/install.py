"""Put the runtime wrapper on a node and register it with the container runtime.

The node agent (privileged, host filesystem at ``--host-root``) runs this at start:

1. the wrapper goes to the host as a zipapp of the few stdlib-only modules it
   needs (``/usr/local/lib/kube-lxcfs/kube-lxcfs-runc.pyz``) plus a launcher
   ``/usr/local/bin/kube-lxcfs-runc`` that runs it with the host's python3 (>= 3.10);
2. containerd gets a runtime handler ``kube-lxcfs`` whose ``BinaryName`` is the
   launcher (config version 2 or 3), CRI-O a drop-in runtime of the same name.

Everything is idempotent (our text sits between marker lines and is replaced in
place) and the report says what was done and what the user must still do (restart
the container runtime).  A node where it cannot work (no python3 >= 3.10 on the
host, no known container runtime config) is reported, not half-configured: the
webhook's hostPath path keeps working there.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import subprocess
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

HANDLER = "kube-lxcfs"
"""RuntimeClass handler name = containerd runtime name = CRI-O runtime name."""
LAUNCHER = "/usr/local/bin/kube-lxcfs-runc"
ZIPAPP = "/usr/local/lib/kube-lxcfs/kube-lxcfs-runc.pyz"
CONTAINERD_CONFIG = "/etc/containerd/config.toml"
CRIO_DROPIN = "/etc/crio/crio.conf.d/99-kube-lxcfs.conf"
BEGIN = "# BEGIN kube-lxcfs runtime (managed by kube-lxcfs setup-node; edits here are replaced)"
END = "# END kube-lxcfs runtime"
MIN_HOST_PYTHON = (3, 10)

PACKAGE_FILES = (
    "kube_lxcfs/__init__.py",
    "kube_lxcfs/defaults.py",
    "kube_lxcfs/files.py",
    "kube_lxcfs/runtime/__init__.py",
    "kube_lxcfs/runtime/spec.py",
    "kube_lxcfs/runtime/wrapper.py",
)
"""What the wrapper needs on the host: stdlib only, no daemon code."""


@dataclass
class SetupReport:
    """One line per step; ``ok`` is False when the node cannot use the RuntimeClass."""

    lines: list[str] = field(default_factory=list)
    ok: bool = True
    restart_needed: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)

    def fail(self, line: str) -> None:
        self.ok = False
        self.lines.append("FAILED: " + line)


# --- pure: the text we add --------------------------------------------------------------


def containerd_block(version: int, launcher: str = LAUNCHER) -> str:
    """The runtime handler section for a containerd config of ``version`` (2 or 3)."""
    plugin = "io.containerd.cri.v1.runtime" if version >= 3 else "io.containerd.grpc.v1.cri"
    table = f'plugins."{plugin}".containerd.runtimes.{HANDLER}'
    return "\n".join(
        [
            BEGIN,
            f"[{table}]",
            '  runtime_type = "io.containerd.runc.v2"',
            f"[{table}.options]",
            f'  BinaryName = "{launcher}"',
            END,
        ]
    )


def crio_dropin(launcher: str = LAUNCHER) -> str:
    """CRI-O's drop-in file declaring the runtime."""
    return "\n".join(
        [
            BEGIN,
            f"[crio.runtime.runtimes.{HANDLER}]",
            f'runtime_path = "{launcher}"',
            'runtime_type = "oci"',
            f'runtime_root = "/run/{HANDLER}-runc"',
            END,
            "",
        ]
    )


def containerd_version(text: str) -> int:
    """The config's ``version`` (a config without one is version 1, treated as 2)."""
    match = re.search(r"^\s*version\s*=\s*(\d+)", text, re.MULTILINE)
    return max(int(match.group(1)), 2) if match else 2


def with_block(text: str, block: str) -> str:
    """``text`` with our marked block replaced, or appended when absent."""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: block + "\n", text, count=1)
    prefix = text if not text or text.endswith("\n") else text + "\n"
    return prefix + ("\n" if prefix else "") + block + "\n"


def foreign_handler(text: str) -> bool:
    """Whether the config already defines a runtime named like ours outside our block."""
    outside = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), "", text, flags=re.DOTALL)
    return re.search(rf"\.runtimes\.{re.escape(HANDLER)}\]", outside) is not None


def launcher_script(
    zipapp: str = ZIPAPP,
    env: Mapping[str, str] | None = None,
    installer: str = "setup-node",
    python: str = "python3",
) -> str:
    """The host's ``kube-lxcfs-runc``: the zipapp on the host's python3.

    ``-I -S``: the zipapp is stdlib-only, so neither the environment's PYTHON* variables nor
    the site module (site-packages, .pth files) have a say, and a container runtime calls the
    wrapper several times per container. ``python`` may name the interpreter's real path
    (setup-docker does: a version manager's shim on the daemon's PATH costs a start of its own).

    ``env`` are wrapper settings (``KUBE_LXCFS_MOUNT_DIR`` ...) exported first: Docker and
    Podman name only a path for a runtime, so the launcher is where non-default settings go."""
    exports = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in (env or {}).items())
    return (
        "#!/bin/sh\n"
        f"# kube-lxcfs runtime wrapper (installed by kube-lxcfs {installer}).\n"
        "# Edits create/run bundles, then execs the real runtime (see its docs).\n"
        f"{exports}"
        f'exec {shlex.quote(python)} -I -S "{zipapp}" "$@"\n'
    )


def zipapp_bytes(src_root: Path) -> bytes:
    """A zipapp of the wrapper's modules taken from the installed package."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for relative in PACKAGE_FILES:
            archive.write(src_root / relative, relative)
        archive.writestr(
            "__main__.py",
            "import sys\nfrom kube_lxcfs.runtime.wrapper import main\nsys.exit(main())\n",
        )
    return buf.getvalue()


# --- the shell: files on the host --------------------------------------------------------


def _host(host_root: Path, path: str) -> Path:
    return host_root / path.lstrip("/")


def _write_if_changed(path: Path, data: bytes, mode: int) -> bool:
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".kube-lxcfs-tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    os.replace(tmp, path)
    return True


def host_python_version(host_root: Path) -> tuple[int, int] | None:
    """The host's ``python3`` version, run inside ``host_root`` (chroot), or None."""
    argv = ["python3", "-c", "import sys; print(*sys.version_info[:2])"]
    if host_root.resolve() != Path("/"):
        argv = ["chroot", str(host_root), *argv]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    major, minor = out.stdout.split()
    return int(major), int(minor)


def setup_node(
    host_root: Path,
    *,
    dry_run: bool = False,
    src_root: Path | None = None,
    python_version: tuple[int, int] | None = None,
) -> SetupReport:
    """Install the wrapper under ``host_root`` and register it; see the module docstring."""
    report = SetupReport()
    version = python_version or host_python_version(host_root)
    if version is None or version < MIN_HOST_PYTHON:
        found = "no python3" if version is None else f"python3 {version[0]}.{version[1]}"
        report.fail(
            f"the host has {found}; the wrapper needs python3 >= 3.10 on the node. "
            "Pods keep working through the webhook's hostPath injection."
        )
        return report
    src_root = src_root or Path(__file__).resolve().parents[2]
    runtime_configs = [
        p
        for p in (_host(host_root, CONTAINERD_CONFIG), _host(host_root, CRIO_DROPIN).parent)
        if p.exists()
    ]
    if not runtime_configs:
        report.fail(
            f"neither {CONTAINERD_CONFIG} nor {Path(CRIO_DROPIN).parent} exists on the host: "
            "register the handler by hand (docs/runtime.md)"
        )
        return report
    files = [
        (_host(host_root, ZIPAPP), zipapp_bytes(src_root), 0o644),
        (_host(host_root, LAUNCHER), launcher_script().encode(), 0o755),
    ]
    for path, data, mode in files:
        changed = dry_run or _write_if_changed(path, data, mode)
        verb = "would write" if dry_run else ("wrote" if changed else "unchanged")
        report.add(f"{verb} {'/' + str(path.relative_to(host_root))}")
    containerd = _host(host_root, CONTAINERD_CONFIG)
    if containerd.exists():
        _register(containerd, CONTAINERD_CONFIG, "containerd", report, dry_run)
    crio_dir = _host(host_root, CRIO_DROPIN).parent
    if crio_dir.exists():
        changed = dry_run or _write_if_changed(
            _host(host_root, CRIO_DROPIN), crio_dropin().encode(), 0o644
        )
        report.add(
            f"{'would write' if dry_run else 'wrote' if changed else 'unchanged'} {CRIO_DROPIN}"
        )
        if changed and not dry_run:
            report.restart_needed.append("crio")
    for runtime in report.restart_needed:
        report.add(f"restart {runtime} on this node to load the '{HANDLER}' runtime handler")
    return report


def _register(path: Path, shown: str, runtime: str, report: SetupReport, dry_run: bool) -> None:
    text = path.read_text()
    if foreign_handler(text):
        report.fail(f"{shown} already defines a runtime named '{HANDLER}'; left it alone")
        return
    new = with_block(text, containerd_block(containerd_version(text)))
    if new == text:
        report.add(f"unchanged {shown} (handler '{HANDLER}' registered)")
        return
    if dry_run:
        report.add(f"would register handler '{HANDLER}' in {shown}")
        return
    _write_if_changed(path, new.encode(), path.stat().st_mode & 0o777)
    report.add(f"registered handler '{HANDLER}' in {shown}")
    report.restart_needed.append(runtime)

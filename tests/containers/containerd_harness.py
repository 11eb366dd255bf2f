"""A private containerd (Debian's) for tests, and OCI image archives built from a directory.

No registry: the image is an OCI image-layout tarball made here from a root
filesystem directory and imported with ``ctr images import``.  containerd runs with
its own root, state and sockets under a short temp dir, without the CRI plugin, and
is stopped (SIGTERM, then SIGKILL) by pid.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

NAMESPACE = "kube-lxcfs-test-ctrd"
"""containerd namespace; containers' cgroups are ``/<NAMESPACE>/<id>``."""
READY_TIMEOUT = 30.0


def _blob(layout: tarfile.TarFile, data: bytes) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest[7:]}")
    info.size = len(data)
    layout.addfile(info, io.BytesIO(data))
    return {"digest": digest, "size": len(data)}


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, sort_keys=True).encode()


def build_oci_archive(
    rootfs: Path,
    archive: Path,
    name: str,
    cmd: Sequence[str],
    *,
    entrypoint: Sequence[str] = (),
    env: Sequence[str] = ("PATH=/usr/sbin:/usr/bin:/sbin:/bin",),
    user: str = "",
    stop_signal: str = "",
    docker_manifest: bool = False,
) -> None:
    """Write an OCI image-layout tarball of ``rootfs`` (one uncompressed layer) named ``name``.

    ``entrypoint``, ``env``, ``user`` and ``stop_signal`` are the image config's fields of
    the same names (what a Dockerfile's ENTRYPOINT, ENV, USER and STOPSIGNAL set).
    ``docker_manifest`` adds the ``manifest.json`` of the docker-archive format, naming the
    same blobs, so that ``docker load`` before Docker 25 (which reads only that file) and
    ``podman load`` take the archive too."""
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w", format=tarfile.PAX_FORMAT) as layer:
        for entry in sorted(os.listdir(rootfs)):
            layer.add(rootfs / entry, arcname=entry)
    layer_bytes = layer_buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    with tarfile.open(archive, "w") as layout:
        layer_desc = _blob(layout, layer_bytes)
        config = {
            "architecture": "amd64" if os.uname().machine == "x86_64" else "arm64",
            "os": "linux",
            "config": {
                "Cmd": list(cmd),
                "Env": list(env),
                **({"Entrypoint": list(entrypoint)} if entrypoint else {}),
                **({"User": user} if user else {}),
                **({"StopSignal": stop_signal} if stop_signal else {}),
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
        config_desc = _blob(layout, _json_bytes(config))
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
        }
        manifest_desc = _blob(layout, _json_bytes(manifest))
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    **manifest_desc,
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
                    },
                }
            ],
        }
        docker = [
            {
                "Config": f"blobs/sha256/{str(config_desc['digest'])[7:]}",
                "RepoTags": [name.removeprefix("docker.io/library/")],
                "Layers": [f"blobs/sha256/{str(layer_desc['digest'])[7:]}"],
            }
        ]
        for filename, value in (
            ("index.json", index),
            ("oci-layout", {"imageLayoutVersion": "1.0.0"}),
            *((("manifest.json", docker),) if docker_manifest else ()),
        ):
            data = _json_bytes(value)
            info = tarfile.TarInfo(filename)
            info.size = len(data)
            layout.addfile(info, io.BytesIO(data))


@dataclass
class Containerd:
    """A running private containerd; :meth:`ctr` runs ``ctr`` against it."""

    workdir: Path
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return str(self.workdir / "c.sock")

    def ctr(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["ctr", "--address", self.address, "--namespace", NAMESPACE, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def log(self) -> str:
        return (self.workdir / "containerd.log").read_text(errors="replace")


def _config(workdir: Path) -> str:
    return "\n".join(
        [
            "version = 2",
            f'root = "{workdir}/root"',
            f'state = "{workdir}/state"',
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
            "[grpc]",
            f'  address = "{workdir}/c.sock"',
            "[ttrpc]",
            f'  address = "{workdir}/c.sock.ttrpc"',
            "[debug]",
            f'  address = "{workdir}/d.sock"',
            "",
        ]
    )


@contextlib.contextmanager
def running_containerd() -> Iterator[Containerd]:
    """Start containerd on a private temp dir; stop it and remove its cgroups afterwards."""
    # Unix socket paths are limited to 108 bytes: keep the directory short.
    workdir = Path(tempfile.mkdtemp(prefix="klx-ctrd-", dir="/tmp"))
    (workdir / "config.toml").write_text(_config(workdir))
    with open(workdir / "containerd.log", "wb") as log:
        process = subprocess.Popen(
            ["containerd", "--config", str(workdir / "config.toml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    daemon = Containerd(workdir, process)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while daemon.ctr("version", check=False).returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not start:\n{daemon.log()[-3000:]}")
            time.sleep(0.05)  # polling readiness with a deadline
        yield daemon
    finally:
        with contextlib.suppress(Exception):
            for task in daemon.ctr("tasks", "ls", "-q", check=False).stdout.split():
                daemon.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
                daemon.ctr("tasks", "delete", "-f", task, check=False)
            for container in daemon.ctr("containers", "ls", "-q", check=False).stdout.split():
                daemon.ctr("containers", "delete", container, check=False)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        subprocess.run(
            ["umount", "-R", "-l", str(workdir / "root")], capture_output=True, check=False
        )
        subprocess.run(
            ["umount", "-R", "-l", str(workdir / "state")], capture_output=True, check=False
        )
        for directory in sorted(Path("/sys/fs/cgroup").glob(f"*/{NAMESPACE}"), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
        shutil.rmtree(workdir, ignore_errors=True)

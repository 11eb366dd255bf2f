"""The node tier's container images, built without a registry and cached as OCI archives.

- ``pause``: the pod sandbox, a static C program that sleeps and reaps (PAUSE_C below);
- ``busybox``: Debian's static busybox (tests/containers/rootfs.py ``TINY``);
- ``app``: Debian minbase with procps (``free``, ``top`` read /proc like real apps do);
- ``node-agent`` and ``webhook``: the product, built from the SAME inputs as
  deploy/docker/<name>.Dockerfile. The recipe is read from the Dockerfile itself (its final
  stage's packages, the build stage's ``pip install`` target, ENV, USER, ENTRYPOINT, CMD,
  STOPSIGNAL), and an instruction the reader does not know fails the build, so the two cannot
  drift apart silently. The Debian part is a cached mmdebstrap root filesystem; the package is
  installed into a venv at /opt/kube-lxcfs in a chroot, as the Dockerfile's build stage does.
  (One difference: python3-venv stays in the image, the Dockerfile's multi-stage build drops it.)

Archives live in ``/var/cache/kube-lxcfs/node-images/<name>-<hash>.tar``, the hash covering
every input (for the product: the Dockerfile, pyproject.toml, README.md and src/), and are
written to a temporary name and renamed when complete. Tags are ``:v1``, never numeric.

Run ``python tests/node/images.py`` to build (or find) all of them and print the times.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "containers"))

from containerd_harness import build_oci_archive  # noqa: E402
from rootfs import TINY, RootfsSpec, ensure_rootfs  # noqa: E402

CACHE_ROOT = Path(
    os.environ.get("KUBE_LXCFS_NODE_IMAGE_CACHE", "/var/cache/kube-lxcfs/node-images")
)
STALE_AFTER = 6 * 3600.0  # seconds after which an archive of other inputs is removed
BUILDER_VERSION = 1
"""Bump when the build steps below change, so cached archives are rebuilt."""

PAUSE = "localhost/kube-lxcfs-test/pause:v1"
BUSYBOX = "localhost/kube-lxcfs-test/busybox:v1"
APP = "localhost/kube-lxcfs-test/app:v1"
NODE_AGENT = "localhost/kube-lxcfs/node-agent:v1"
WEBHOOK = "localhost/kube-lxcfs/webhook:v1"

APP_ROOTFS = RootfsSpec(name="node-app", packages=("procps",))

PAUSE_C = r"""
/* The pod sandbox's only process: wait for signals, reap orphans, stop on TERM/INT. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signo) { (void)signo; _exit(0); }

static void reap(int signo) {
    (void)signo;
    while (waitpid(-1, 0, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction on_stop = {.sa_handler = stop};
    struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
    sigaction(SIGTERM, &on_stop, 0);
    sigaction(SIGINT, &on_stop, 0);
    sigaction(SIGCHLD, &on_child, 0);
    for (;;)
        pause();
}
"""

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class RecipeError(ValueError):
    """The Dockerfile holds something the image recipe does not reproduce."""


@dataclass(frozen=True)
class ProductRecipe:
    """What deploy/docker/<name>.Dockerfile puts into its image, read from that file."""

    name: str
    packages: tuple[str, ...]
    """apt packages of the final stage."""
    build_packages: tuple[str, ...]
    """apt packages of the build stage (python3-venv to create the venv)."""
    venv: str
    pip_target: str
    """What ``pip install`` installs, relative to the build stage's WORKDIR (``.[extras]``)."""
    env: tuple[str, ...]
    user: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    stop_signal: str
    base: str
    checks: tuple[str, ...] = field(default=())
    """Commands the final stage runs to check the image (``kube-lxcfs --version``)."""


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    result = []
    for line in joined:
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def _apt_packages(run: str) -> tuple[str, ...]:
    match = re.search(r"apt-get install -y --no-install-recommends ([^&]+)", run)
    if not match:
        raise RecipeError(f"RUN without the expected apt-get install: {run}")
    return tuple(match.group(1).split())


def read_recipe(dockerfile: Path) -> ProductRecipe:
    """The recipe of one product Dockerfile; RecipeError for anything not reproduced."""
    args: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for word, rest in _instructions(dockerfile.read_text()):
        if word == "ARG":
            key, _, value = rest.partition("=")
            args[key] = value
        elif word == "FROM":
            stages.append([(word, rest)])
        elif not stages:
            raise RecipeError(f"{dockerfile.name}: {word} before FROM")
        else:
            stages[-1].append((word, rest))
    if len(stages) != 2:
        raise RecipeError(f"{dockerfile.name}: expected a build stage and a final stage")
    build, final = stages
    base = args.get("BASE", "")
    if base != "debian:bookworm-slim":
        raise RecipeError(f"{dockerfile.name}: base {base!r} is not debian:bookworm-slim")
    build_packages: tuple[str, ...] = ()
    venv = pip_target = ""
    for word, rest in build[1:]:
        if word == "RUN" and "apt-get install" in rest:
            build_packages = _apt_packages(rest)
        elif word == "RUN" and "pip install" in rest:
            match = re.search(r"python3 -m venv (\S+) .*pip install --no-cache-dir (\S+)", rest)
            if not match:
                raise RecipeError(f"{dockerfile.name}: unexpected pip step: {rest}")
            venv, pip_target = match.group(1), match.group(2).strip("\"'")
        elif word in ("WORKDIR", "COPY"):
            if word == "COPY" and rest not in ("pyproject.toml README.md ./", "src ./src"):
                raise RecipeError(f"{dockerfile.name}: unexpected build input: COPY {rest}")
        else:
            raise RecipeError(f"{dockerfile.name}: build stage step not reproduced: {word} {rest}")
    packages: tuple[str, ...] = ()
    env: list[str] = []
    user = stop_signal = ""
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    checks: list[str] = []
    for word, rest in final[1:]:
        if word == "RUN" and "apt-get install" in rest:
            packages = _apt_packages(rest)
        elif word == "RUN":
            checks.append(rest)
        elif word == "COPY":
            if not rest.startswith(f"--from={build[0][1].split()[-1]} {venv} {venv}"):
                raise RecipeError(f"{dockerfile.name}: unexpected COPY: {rest}")
        elif word == "ENV":
            env += shlex.split(rest)
        elif word == "USER":
            user = rest
        elif word == "ENTRYPOINT":
            entrypoint = tuple(json.loads(rest))
        elif word == "CMD":
            cmd = tuple(json.loads(rest))
        elif word == "STOPSIGNAL":
            stop_signal = rest
        elif word != "EXPOSE":  # EXPOSE is documentation only
            raise RecipeError(f"{dockerfile.name}: final stage step not reproduced: {word} {rest}")
    if not (packages and build_packages and venv and pip_target and entrypoint):
        raise RecipeError(f"{dockerfile.name}: packages, venv, pip target or ENTRYPOINT missing")
    return ProductRecipe(
        name=dockerfile.name.removesuffix(".Dockerfile"),
        packages=packages,
        build_packages=build_packages,
        venv=venv,
        pip_target=pip_target,
        env=tuple(env),
        user=user,
        entrypoint=entrypoint,
        cmd=cmd,
        stop_signal=stop_signal,
        base=base,
        checks=tuple(checks),
    )


def product_recipes() -> dict[str, ProductRecipe]:
    """The recipes of deploy/docker/*.Dockerfile by image name."""
    recipes = [read_recipe(p) for p in sorted((REPO / "deploy" / "docker").glob("*.Dockerfile"))]
    return {r.name: r for r in recipes}


# -- the cache -----------------------------------------------------------------------------


def _source_digest() -> str:
    """A hash of everything ``pip install .`` reads: pyproject.toml, README.md and src/."""
    digest = hashlib.sha256()
    files = [REPO / "pyproject.toml", REPO / "README.md"]
    files += sorted(
        p for p in (REPO / "src").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _key(*parts: object) -> str:
    blob = json.dumps([BUILDER_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _cached(name: str, key: str, build: Callable[[Path], None], log: Log) -> Path:
    """The archive ``<name>-<key>.tar``, built by ``build(tmp_path)`` under a lock if missing."""
    final = CACHE_ROOT / f"{name}-{key}.tar"
    if final.exists():
        os.utime(final)  # "recently used": keeps it from being pruned
        return final
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(CACHE_ROOT / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.exists():
            return final
        started = time.monotonic()
        log(f"node images: building {name} ({final.name})")
        staging = final.with_suffix(".tar.building")
        try:
            build(staging)
            staging.rename(final)
        finally:
            staging.unlink(missing_ok=True)
        for old in CACHE_ROOT.glob(f"{name}-*.tar"):
            # Other sources' archives may be in use by another checkout's run right now:
            # only those unused for STALE_AFTER go.
            if old != final and time.time() - old.stat().st_mtime > STALE_AFTER:
                old.unlink(missing_ok=True)
        log(f"node images: built {name} in {time.monotonic() - started:.0f}s")
    return final


def pause_archive(log: Log = _stderr) -> Path:
    def build(archive: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="klx-pause-") as tmp:
            root = Path(tmp) / "rootfs"
            root.mkdir()
            source = Path(tmp) / "pause.c"
            source.write_text(PAUSE_C)
            subprocess.run(
                ["gcc", "-static", "-Os", "-s", "-o", str(root / "pause"), str(source)],
                check=True,
                capture_output=True,
            )
            build_oci_archive(root, archive, PAUSE, ["/pause"])

    return _cached("pause", _key(PAUSE, PAUSE_C), build, log)


def busybox_archive(log: Log = _stderr) -> Path:
    def build(archive: Path) -> None:
        build_oci_archive(ensure_rootfs(TINY, log=log), archive, BUSYBOX, ["sh"])

    return _cached("busybox", _key(BUSYBOX, TINY.key()), build, log)


def app_archive(log: Log = _stderr) -> Path:
    def build(archive: Path) -> None:
        build_oci_archive(ensure_rootfs(APP_ROOTFS, log=log), archive, APP, ["bash"])

    return _cached("app", _key(APP, APP_ROOTFS.key()), build, log)


def product_archive(recipe: ProductRecipe, image: str, log: Log = _stderr) -> Path:
    """The product image ``image`` built by ``recipe`` from this checkout."""
    base = RootfsSpec(
        name=f"node-{recipe.name}-base",
        packages=tuple(dict.fromkeys((*recipe.packages, *recipe.build_packages))),
    )

    def build(archive: Path) -> None:
        with tempfile.TemporaryDirectory(prefix=f"klx-{recipe.name}-") as tmp:
            root = Path(tmp) / "rootfs"
            subprocess.run(["cp", "-a", str(ensure_rootfs(base, log=log)), str(root)], check=True)
            _install_product(root, recipe, log)
            build_oci_archive(
                root,
                archive,
                image,
                recipe.cmd,
                entrypoint=recipe.entrypoint,
                env=recipe.env,
                user=recipe.user,
                stop_signal=recipe.stop_signal,
            )

    key = _key(image, asdict(recipe), base.key(), _source_digest())
    return _cached(recipe.name, key, build, log)


def _install_product(root: Path, recipe: ProductRecipe, log: Log) -> None:
    """The Dockerfile's pip step and checks, in a chroot.

    The wheels (this checkout's and its dependencies') are made by the host's pip (Debian's
    pip in the chroot does not trust a TLS-intercepting proxy's CA even with --cert); the
    chroot's pip installs them offline, with the extras the Dockerfile names, into its venv."""
    with tempfile.TemporaryDirectory(prefix="klx-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(REPO / name, src / name)
        shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__"))
        wheels = root / "tmp" / "wheels"
        extras = recipe.pip_target.removeprefix(".")
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "-w", str(wheels), f"{src}{extras}"],
            check=False,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pip wheel for the {recipe.name} image failed:\n{proc.stderr}")
    target = "kube-lxcfs" + recipe.pip_target.removeprefix(".")
    venv = recipe.venv
    env = " ".join(map(shlex.quote, recipe.env))
    checks = "\n".join(f'chroot "$R" env {env} {c}' for c in recipe.checks)
    script = f"""
set -e
R={shlex.quote(str(root))}
mount --rbind /dev "$R/dev"
mount -t proc proc "$R/proc"
export PIP_DISABLE_PIP_VERSION_CHECK=1
unset PIP_FIND_LINKS
chroot "$R" python3 -m venv {venv}
chroot "$R" {venv}/bin/pip install --quiet --no-cache-dir --no-index --find-links /tmp/wheels \\
    {shlex.quote(target)}
chroot "$R" {venv}/bin/pip uninstall --quiet -y pip
{checks}
"""
    log(f"node images: pip install {recipe.pip_target} into {recipe.name}")
    # A private mount namespace: /dev and /proc in the chroot vanish with the shell.
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        check=False,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building the {recipe.name} image failed:\n{proc.stderr[-3000:]}")
    shutil.rmtree(wheels)


@dataclass(frozen=True)
class NodeImages:
    """Every image the node tier imports, by reference, with its archive."""

    archives: dict[str, Path]
    seconds: float


def ensure_images(log: Log = _stderr) -> NodeImages:
    started = time.monotonic()
    recipes = product_recipes()
    archives = {
        PAUSE: pause_archive(log),
        BUSYBOX: busybox_archive(log),
        APP: app_archive(log),
        NODE_AGENT: product_archive(recipes["node-agent"], NODE_AGENT, log),
        WEBHOOK: product_archive(recipes["webhook"], WEBHOOK, log),
    }
    return NodeImages(archives, time.monotonic() - started)


def main() -> int:
    images = ensure_images()
    for name, path in images.archives.items():
        print(f"{name} {path} ({path.stat().st_size // 2**20} MiB)")
    print(f"node images ready in {images.seconds:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

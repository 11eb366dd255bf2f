"""Build (once) and locate the Go binaries of the cluster and node tiers: etcd,
kube-apiserver, kube-controller-manager and helm (tests/cluster), plus kubelet,
kube-scheduler and kubectl (tests/node).

Each binary comes from a pinned Go module under ``tests/cluster/go/<module>/`` (go.mod +
go.sum are the pins). Outputs are cached in
``/var/cache/kube-lxcfs/cluster/<module>-<hash>/bin/`` where the hash covers that module's
go.mod, go.sum and tools.go, this script and the Go version, so a rerun on the same machine
only checks files; Go's own module and build caches (GOMODCACHE, GOCACHE) stay at their
defaults and make a rebuild after a pin change incremental.

Usable three ways:
- ``python tests/cluster/binaries.py [NAME ...]`` builds (all by default), prints one
  ``NAME PATH`` line per binary and the time it took;
- ``find_or_build("helm")`` from a test or fixture returns the path;
- the session fixtures in ``tests/cluster/conftest.py`` and ``tests/conftest.py``.
Concurrent callers (several engineers, several pytest runs) serialise on a lock file.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
GO_MODULES = HERE / "go"
PROGRESS_EVERY = 60.0  # seconds between progress lines of a long build
STALE_AFTER = 7 * 24 * 3600.0  # seconds after which another input's build is removed
CACHE_ROOT = Path(os.environ.get("KUBE_LXCFS_CLUSTER_CACHE", "/var/cache/kube-lxcfs/cluster"))


@dataclass(frozen=True)
class Binary:
    """One command to build: the module directory that pins it and its Go package path."""

    name: str
    module: str
    package: str


BINARIES: dict[str, Binary] = {
    b.name: b
    for b in (
        Binary("etcd", "etcd", "go.etcd.io/etcd/server/v3"),
        Binary("kube-apiserver", "kubernetes", "k8s.io/kubernetes/cmd/kube-apiserver"),
        Binary(
            "kube-controller-manager",
            "kubernetes",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
        ),
        Binary("kube-scheduler", "kubernetes", "k8s.io/kubernetes/cmd/kube-scheduler"),
        Binary("kubelet", "kubernetes", "k8s.io/kubernetes/cmd/kubelet"),
        Binary("kubectl", "kubernetes", "k8s.io/kubernetes/cmd/kubectl"),
        Binary("helm", "helm", "helm.sh/helm/v3/cmd/helm"),
    )
}


class GoMissingError(RuntimeError):
    """No Go toolchain on PATH: the cluster tier cannot build its binaries."""


class BuildError(RuntimeError):
    """``go build`` failed; the message carries the command and the end of its output."""


def go_tool() -> str:
    """The ``go`` command, or GoMissingError with what to install."""
    found = shutil.which("go") or next(
        (p for p in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go") if os.access(p, os.X_OK)),
        None,
    )
    if not found:
        raise GoMissingError(
            "no Go toolchain found (go not on PATH): install Go >= 1.24 to build "
            "etcd, helm and the Kubernetes binaries for the cluster and node tests"
        )
    return found


def go_version(go: str) -> str:
    """``go version`` output, part of the cache key (another compiler, another binary)."""
    return subprocess.run([go, "version"], capture_output=True, text=True, check=True).stdout


def cache_dir(module: str, go: str) -> Path:
    """Where the binaries of ``module`` live, keyed by a hash of everything that shapes them."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "tools.go"):
        path = GO_MODULES / module / name
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(Path(__file__).read_bytes())
    digest.update(go_version(go).encode())
    return CACHE_ROOT / f"{module}-{digest.hexdigest()[:16]}" / "bin"


@contextmanager
def _build_lock() -> Iterator[None]:
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(CACHE_ROOT / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _go_env() -> dict[str, str]:
    """Be gentle with a shared 2-core machine; resolve modules through the proxy only."""
    env = dict(os.environ)
    env.setdefault("GOMAXPROCS", "2")
    env["GOFLAGS"] = "-mod=mod -buildvcs=false"  # go.mod pins; no git needed
    env.setdefault("GOTOOLCHAIN", "local")
    return env


def required_version(module: str, path: str) -> str:
    """The version of ``path`` required in ``tests/cluster/go/<module>/go.mod``."""
    for line in (GO_MODULES / module / "go.mod").read_text().splitlines():
        words = line.replace("require ", "").split()
        if len(words) >= 2 and words[0] == path:
            return words[1]
    raise BuildError(f"{path} is not required in tests/cluster/go/{module}/go.mod")


def version_ldflags(module: str) -> list[str]:
    """``-X`` flags that stamp the release version, as the projects' own Makefiles do.

    A plain ``go build`` leaves kube-apiserver reporting ``v0.0.0-master`` (clients and
    helm's ``kubeVersion`` checks read /version) and helm assuming Kubernetes 1.20.
    """
    if module == "kubernetes":
        version = required_version(module, "k8s.io/kubernetes")
        major, minor = version.lstrip("v").split(".")[:2]
        flags = []
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            flags += [
                f"-X {pkg}.gitVersion={version}",
                f"-X {pkg}.gitMajor={major}",
                f"-X {pkg}.gitMinor={minor}",
                f"-X {pkg}.gitTreeState=clean",
            ]
        return flags
    if module == "helm":
        version = required_version(module, "helm.sh/helm/v3")
        k8s_minor = required_version(module, "k8s.io/client-go").split(".")[1]
        flags = [f"-X helm.sh/helm/v3/internal/version.version={version}"]
        for pkg in ("helm.sh/helm/v3/pkg/chartutil", "helm.sh/helm/v3/pkg/lint/rules"):
            flags += [f"-X {pkg}.k8sVersionMajor=1", f"-X {pkg}.k8sVersionMinor={k8s_minor}"]
        return flags
    return []


def _output_name(package: str) -> str:
    """The file ``go build -o DIR/`` writes: the last path element, skipping a ``/vN``
    major-version suffix (``go.etcd.io/etcd/server/v3`` → ``server``)."""
    parts = package.split("/")
    last = parts[-1]
    if len(parts) > 1 and last[:1] == "v" and last[1:].isdigit():
        return parts[-2]
    return last


def _build_module(module: str, names: list[str], out: Path, go: str, log: Callable) -> None:
    """Build ``names`` (all from ``module``) into ``out`` atomically (temp dir, then rename)."""
    packages = [BINARIES[n].package for n in names]
    ldflags = " ".join(["-s", "-w", *version_ldflags(module)])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=out.parent))
    cmd = [
        "nice", "-n", "10", go, "build", "-v", "-p", "2", "-trimpath", f"-ldflags={ldflags}",
        "-o", f"{tmp}/", *packages,
    ]  # fmt: skip
    log(f"cluster: building {', '.join(names)} from tests/cluster/go/{module} (go build)")
    start = time.monotonic()
    build_log = out.parent / "build.log"  # kept next to bin/ for the curious
    with open(build_log, "w") as output:
        proc = subprocess.Popen(
            cmd, cwd=GO_MODULES / module, env=_go_env(), stdout=output, stderr=subprocess.STDOUT
        )
        try:
            while True:
                try:
                    proc.wait(timeout=PROGRESS_EVERY)
                    break
                except subprocess.TimeoutExpired:
                    # `go build -v` prints one line per package it compiles (or downloads).
                    lines = len(build_log.read_text(errors="replace").splitlines())
                    log(f"cluster: still building {module}: {lines} packages so far, "
                        f"{time.monotonic() - start:.0f}s")  # fmt: skip
        except BaseException:  # interrupted: don't leave a compiler running
            proc.kill()
            proc.wait()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "\n".join(build_log.read_text(errors="replace").splitlines()[-40:])
        raise BuildError(f"{' '.join(cmd)} (in {GO_MODULES / module}) failed:\n{tail}")
    for name, package in zip(names, packages, strict=True):
        built = tmp / _output_name(package)
        if built.name != name:
            built.rename(tmp / name)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log(f"cluster: built {', '.join(names)} in {time.monotonic() - start:.1f}s")
    _prune_stale(module, keep=out.parent)


def _prune_stale(module: str, keep: Path) -> None:
    """Remove builds of ``module`` for other inputs not touched for STALE_AFTER seconds
    (each pin or script change leaves ~250 MB behind; recent ones may still be in use by
    another checkout on this machine)."""
    for other in CACHE_ROOT.glob(f"{module}-*"):
        if other != keep and time.time() - other.stat().st_mtime > STALE_AFTER:
            shutil.rmtree(other, ignore_errors=True)


def find_or_build(*names: str, log: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Paths of the named binaries (all when none named), building what the cache lacks."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    wanted = list(names) or list(BINARIES)
    unknown = [n for n in wanted if n not in BINARIES]
    if unknown:
        raise KeyError(f"unknown binaries {unknown}; known: {sorted(BINARIES)}")
    go = go_tool()
    by_module: dict[str, list[str]] = {}
    for name in wanted:
        by_module.setdefault(BINARIES[name].module, []).append(name)
    paths: dict[str, Path] = {}
    with _build_lock():
        for module, module_names in by_module.items():
            out = cache_dir(module, go)
            # Build every binary of the module together: they share most packages.
            every = [b.name for b in BINARIES.values() if b.module == module]
            if not all(os.access(out / n, os.X_OK) for n in every):
                _build_module(module, every, out, go, log)
            os.utime(out.parent)  # "recently used": keeps it from being pruned as stale
            paths.update({n: out / n for n in module_names})
    return paths


def find_or_build_one(name: str, log: Callable[[str], None] | None = None) -> Path:
    """Path of one binary, e.g. ``find_or_build_one("helm")``."""
    return find_or_build(name, log=log)[name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"binaries to build (default: {sorted(BINARIES)})")
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        paths = find_or_build(*args.names)
    except (GoMissingError, BuildError, KeyError) as exc:
        print(f"binaries.py: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, KeyError) else 1
    for name, path in paths.items():
        print(f"{name} {path}")
    print(f"cluster: binaries ready in {time.monotonic() - start:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

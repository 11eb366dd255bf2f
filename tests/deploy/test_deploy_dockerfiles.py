"""The Dockerfiles, checked without a Docker engine (none here): what they copy exists and
is not excluded from the build context, what they run is a real subcommand, the webhook
runs as the user the Deployment expects, the node agent has FUSE."""

from __future__ import annotations

import fnmatch
import json
import shlex
import tomllib
from pathlib import Path

import pytest

from kube_lxcfs.cli import build_parser
from kube_lxcfs.deploy.render import render
from kube_lxcfs.deploy.values import resolve

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "deploy/docker"
IMAGES = {"node-agent": "DaemonSet", "webhook": "Deployment"}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _exec_form(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def _dockerignore_excludes(rel: str) -> bool:
    """Whether .dockerignore (last matching rule wins) keeps ``rel`` out of the context."""
    excluded = False
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(rel, pattern) or rel.startswith(pattern + "/"):
            excluded = not negate
    return excluded


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_copied_sources_exist_and_are_in_the_build_context(image: str) -> None:
    copies = [args for word, args in instructions(DOCKER / f"{image}.Dockerfile") if word == "COPY"]
    local = [c for c in copies if not c.startswith("--from")]
    assert local
    for args in local:
        *sources, _dest = shlex.split(args)
        for source in sources:
            assert (REPO / source).exists(), source
            assert not _dockerignore_excludes(source.rstrip("/")), source
    for module in (REPO / "src/kube_lxcfs").rglob("*.py"):
        rel = module.relative_to(REPO).as_posix()
        assert not _dockerignore_excludes(rel), rel


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_entrypoint_and_command_are_real_subcommands(image: str) -> None:
    steps = instructions(DOCKER / f"{image}.Dockerfile")
    entrypoint = _exec_form(next(a for w, a in reversed(steps) if w == "ENTRYPOINT"))
    cmd = _exec_form(next(a for w, a in reversed(steps) if w == "CMD"))
    assert entrypoint == ["kube-lxcfs"]
    args = build_parser().parse_args(cmd)
    assert args.command == ("fs" if image == "node-agent" else "webhook")
    # The workload overrides them with command/args: those must be the same program.
    (obj,) = [o for o in render(resolve()) if o["kind"] == IMAGES[image]]
    container = obj["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][0] == entrypoint[0]
    assert container["command"][1] == cmd[0]


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_pip_extras_exist(image: str) -> None:
    extras = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    for word, args in instructions(DOCKER / f"{image}.Dockerfile"):
        if word == "RUN" and "pip install" in args and "[" in args:
            wanted = args.split("[", 1)[1].split("]", 1)[0].split(",")
            assert set(wanted) <= extras


def test_webhook_image_runs_as_the_deployments_user() -> None:
    steps = instructions(DOCKER / "webhook.Dockerfile")
    user = [a for w, a in steps if w == "USER"][-1]
    uid, gid = (int(x) for x in user.split(":"))
    (dep,) = [o for o in render(resolve()) if o["kind"] == "Deployment"]
    pod_sc = dep["spec"]["template"]["spec"]["securityContext"]
    assert (uid, gid) == (pod_sc["runAsUser"], pod_sc["runAsGroup"])
    assert uid != 0
    ports = {int(p) for w, a in steps if w == "EXPOSE" for p in a.split()}
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert ports == {p["containerPort"] for p in container["ports"]}


def test_node_agent_image_has_fuse() -> None:
    runs = " ".join(a for w, a in instructions(DOCKER / "node-agent.Dockerfile") if w == "RUN")
    assert "fuse3" in runs and "libfuse3-3" in runs


def test_both_images_build_from_a_multi_arch_debian_base() -> None:
    for image in IMAGES:
        steps = instructions(DOCKER / f"{image}.Dockerfile")
        base = [a for w, a in steps if w == "ARG" and a.startswith("BASE=")]
        assert base == ["BASE=debian:bookworm-slim"]
        assert all(a.split()[0] == "${BASE}" for w, a in steps if w == "FROM")

"""The node tier's product images follow deploy/docker/*.Dockerfile: the recipe is read from
the Dockerfiles, and anything in them that the recipe does not reproduce is an error."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from . import images
from .images import RecipeError, read_recipe

DOCKER = images.REPO / "deploy" / "docker"


def test_the_recipes_are_read_from_the_dockerfiles() -> None:
    agent = read_recipe(DOCKER / "node-agent.Dockerfile")
    assert agent.packages == ("python3", "fuse3", "libfuse3-3")
    assert agent.pip_target == "."
    assert (agent.entrypoint, agent.cmd, agent.user) == (
        ("kube-lxcfs",),
        ("fs", "/var/lib/lxcfs"),
        "",
    )
    webhook = read_recipe(DOCKER / "webhook.Dockerfile")
    assert webhook.packages == ("python3", "ca-certificates")
    assert webhook.pip_target == ".[webhook,kubernetes]"
    assert (webhook.entrypoint, webhook.cmd) == (("kube-lxcfs",), ("webhook",))
    assert webhook.user == "65532:65532"
    for recipe in (agent, webhook):
        assert recipe.venv == "/opt/kube-lxcfs" and recipe.stop_signal == "SIGTERM"
        assert recipe.env[0].startswith("PATH=/opt/kube-lxcfs/bin:")
        assert recipe.checks == ("kube-lxcfs --version",)
    assert set(images.product_recipes()) == {"node-agent", "webhook"}


@pytest.mark.parametrize(
    ("change", "added"),
    [
        pytest.param("final", "VOLUME /data", id="unknown-instruction"),
        pytest.param("final", "COPY extra.conf /etc/", id="extra-input"),
        pytest.param("build", "RUN /opt/kube-lxcfs/bin/pip install extra", id="extra-build-step"),
    ],
)
def test_a_dockerfile_step_the_recipe_does_not_reproduce_is_an_error(
    tmp_path: Path, change: str, added: str
) -> None:
    text = (DOCKER / "webhook.Dockerfile").read_text()
    anchor = "WORKDIR /src" if change == "build" else "EXPOSE 8443 8080"
    changed = tmp_path / "webhook.Dockerfile"
    changed.write_text(text.replace(anchor, f"{anchor}\n{added}"))
    with pytest.raises(RecipeError):
        read_recipe(changed)


def test_the_archive_carries_the_image_config(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "true").write_bytes(b"")
    archive = tmp_path / "image.tar"
    recipe = read_recipe(DOCKER / "webhook.Dockerfile")
    images.build_oci_archive(
        root,
        archive,
        images.WEBHOOK,
        recipe.cmd,
        entrypoint=recipe.entrypoint,
        env=recipe.env,
        user=recipe.user,
        stop_signal=recipe.stop_signal,
    )
    with tarfile.open(archive) as layout:
        blobs = {m.name: layout.extractfile(m).read() for m in layout.getmembers() if m.isfile()}
    index = json.loads(blobs["index.json"])
    manifest = json.loads(blobs["blobs/sha256/" + index["manifests"][0]["digest"][7:]])
    config = json.loads(blobs["blobs/sha256/" + manifest["config"]["digest"][7:]])["config"]
    assert config["Entrypoint"] == ["kube-lxcfs"] and config["Cmd"] == ["webhook"]
    assert config["User"] == "65532:65532" and config["StopSignal"] == "SIGTERM"
    assert config["Env"] == list(recipe.env)
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == images.WEBHOOK

"""setup-node: the text it adds to container runtime configs, idempotence, and refusals."""

from __future__ import annotations

from pathlib import Path

from kube_lxcfs.runtime.install import (
    BEGIN,
    END,
    containerd_block,
    containerd_version,
    crio_dropin,
    foreign_handler,
    setup_node,
    with_block,
)

CONTAINERD_V2 = 'version = 2\n\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "x"\n'


def test_containerd_block_uses_the_plugin_of_the_config_version() -> None:
    v2 = containerd_block(2)
    assert '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kube-lxcfs]' in v2
    assert 'BinaryName = "/usr/local/bin/kube-lxcfs-runc"' in v2
    v3 = containerd_block(3)
    assert '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kube-lxcfs]' in v3
    assert containerd_version(CONTAINERD_V2) == 2
    assert containerd_version("version = 3\n") == 3
    assert containerd_version("# no version\n") == 2


def test_block_is_appended_once_and_replaced_in_place() -> None:
    once = with_block(CONTAINERD_V2, containerd_block(2))
    assert once.startswith(CONTAINERD_V2)
    assert once.count(BEGIN) == 1 and once.count(END) == 1
    assert with_block(once, containerd_block(2)) == once
    changed = with_block(once, containerd_block(2, launcher="/opt/k"))
    assert changed.count(BEGIN) == 1 and 'BinaryName = "/opt/k"' in changed
    assert "/usr/local/bin/kube-lxcfs-runc" not in changed


def test_a_foreign_handler_of_the_same_name_is_detected() -> None:
    foreign = (
        CONTAINERD_V2 + '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kube-lxcfs]\n'
    )
    assert foreign_handler(foreign)
    assert not foreign_handler(with_block(CONTAINERD_V2, containerd_block(2)))


def test_crio_dropin_names_the_launcher() -> None:
    text = crio_dropin()
    assert "[crio.runtime.runtimes.kube-lxcfs]" in text
    assert 'runtime_path = "/usr/local/bin/kube-lxcfs-runc"' in text


def test_setup_refuses_without_a_suitable_host_python(tmp_path: Path) -> None:
    (tmp_path / "etc/containerd").mkdir(parents=True)
    (tmp_path / "etc/containerd/config.toml").write_text(CONTAINERD_V2)
    report = setup_node(tmp_path, python_version=(3, 8))
    assert not report.ok
    assert "python3 3.8" in report.lines[0]
    assert (tmp_path / "etc/containerd/config.toml").read_text() == CONTAINERD_V2
    assert not (tmp_path / "usr").exists()


def test_setup_refuses_without_a_known_container_runtime(tmp_path: Path) -> None:
    report = setup_node(tmp_path, python_version=(3, 11))
    assert not report.ok
    assert "register the handler by hand" in report.lines[0]


def test_setup_is_idempotent_and_dry_run_changes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "etc/containerd/config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(CONTAINERD_V2)
    (tmp_path / "etc/crio/crio.conf.d").mkdir(parents=True)
    dry = setup_node(tmp_path, python_version=(3, 11), dry_run=True)
    assert dry.ok and any(line.startswith("would register") for line in dry.lines)
    assert config.read_text() == CONTAINERD_V2
    first = setup_node(tmp_path, python_version=(3, 11))
    assert first.ok
    assert "registered handler 'kube-lxcfs' in /etc/containerd/config.toml" in first.lines
    assert set(first.restart_needed) == {"containerd", "crio"}
    assert (tmp_path / "usr/local/bin/kube-lxcfs-runc").stat().st_mode & 0o111
    second = setup_node(tmp_path, python_version=(3, 11))
    assert second.ok and not second.restart_needed
    assert all(line.startswith("unchanged") for line in second.lines)

"""``kube-lxcfs webhook``: every flag documented with its env var, one-line exit 2 on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kube_lxcfs.cli import main

FLAGS = {
    "--tls-cert": "KUBE_LXCFS_WEBHOOK_TLS_CERT",
    "--tls-key": "KUBE_LXCFS_WEBHOOK_TLS_KEY",
    "--tls-min-version": "KUBE_LXCFS_WEBHOOK_TLS_MIN_VERSION",
    "--tls-reload-interval": "KUBE_LXCFS_WEBHOOK_TLS_RELOAD_INTERVAL",
    "--address": "KUBE_LXCFS_WEBHOOK_ADDRESS",
    "--port": "KUBE_LXCFS_WEBHOOK_PORT",
    "--health-port": "KUBE_LXCFS_WEBHOOK_HEALTH_PORT",
    "--mount-dir": "KUBE_LXCFS_WEBHOOK_MOUNT_DIR",
    "--files": "KUBE_LXCFS_WEBHOOK_FILES",
    "--inject-init-containers": "KUBE_LXCFS_WEBHOOK_INJECT_INIT_CONTAINERS",
    "--inject-mode": "KUBE_LXCFS_WEBHOOK_INJECT_MODE",
    "--runtime-class-name": "KUBE_LXCFS_WEBHOOK_RUNTIME_CLASS_NAME",
    "--exclude-namespaces": "KUBE_LXCFS_WEBHOOK_EXCLUDE_NAMESPACES",
    "--namespace": "KUBE_LXCFS_WEBHOOK_NAMESPACE",
    "--skip-pod-labels": "KUBE_LXCFS_WEBHOOK_SKIP_POD_LABELS",
    "--self-provision-secret": "KUBE_LXCFS_WEBHOOK_SELF_PROVISION_SECRET",
    "--webhook-config": "KUBE_LXCFS_WEBHOOK_WEBHOOK_CONFIG",
    "--webhook-service": "KUBE_LXCFS_WEBHOOK_WEBHOOK_SERVICE",
    "--log-level": "KUBE_LXCFS_WEBHOOK_LOG_LEVEL",
    "--log-format": "KUBE_LXCFS_WEBHOOK_LOG_FORMAT",
    "--max-body-bytes": "KUBE_LXCFS_WEBHOOK_MAX_BODY_BYTES",
    "--max-connections": "KUBE_LXCFS_WEBHOOK_MAX_CONNECTIONS",
    "--idle-timeout": "KUBE_LXCFS_WEBHOOK_IDLE_TIMEOUT",
    "--shutdown-grace": "KUBE_LXCFS_WEBHOOK_SHUTDOWN_GRACE",
    "--shutdown-delay": "KUBE_LXCFS_WEBHOOK_SHUTDOWN_DELAY",
}


def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE_LXCFS_WEBHOOK_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "kube_lxcfs", "webhook", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


def test_help_documents_every_flag_with_its_env_var(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["webhook", "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # undo line wrapping
    for flag, env in FLAGS.items():
        assert flag in out
        assert env.replace("_", "") in out.replace("_", "").replace(" ", ""), env
    assert "--no-inject-init-containers" in out
    assert "default: 8443" in out and "/var/lib/lxcfs" in out


def test_missing_certificate_flag_is_a_one_line_usage_error() -> None:
    proc = run_cli([])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "kube-lxcfs webhook: --tls-cert is required (or set KUBE_LXCFS_WEBHOOK_TLS_CERT)"
    ]


def test_missing_certificate_file_is_a_one_line_usage_error(tmp_path: Path) -> None:
    key = tmp_path / "tls.key"
    key.write_text("x")
    proc = run_cli(["--tls-cert", str(tmp_path / "nope.crt"), "--tls-key", str(key)])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.crt: no such file" in lines[0]


def test_unreadable_key_pair_is_a_one_line_usage_error(tmp_path: Path) -> None:
    for name in ("tls.crt", "tls.key"):
        (tmp_path / name).write_text("not a pem\n")
    cert, key = str(tmp_path / "tls.crt"), str(tmp_path / "tls.key")
    proc = run_cli(["--tls-cert", cert, "--tls-key", key])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot load" in lines[0]


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    proc = run_cli([], env={"KUBE_LXCFS_WEBHOOK_PORT": "https"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "KUBE_LXCFS_WEBHOOK_PORT" in lines[0] and "https" in lines[0]


def test_bad_env_choice_names_the_variable() -> None:
    proc = run_cli([], env={"KUBE_LXCFS_WEBHOOK_TLS_MIN_VERSION": "1.0"})
    assert proc.returncode == 2
    assert "KUBE_LXCFS_WEBHOOK_TLS_MIN_VERSION" in proc.stderr


def test_bad_flag_value_is_argparse_usage_error() -> None:
    proc = run_cli(["--port", "70000"])
    assert proc.returncode == 2
    assert "out of range" in proc.stderr


def test_a_zero_reload_interval_is_refused_not_replaced() -> None:
    """0 would poll the files in a busy loop; it is an error, not silently the default."""
    proc = run_cli(["--tls-reload-interval", "0"])
    assert proc.returncode == 2
    assert "--tls-reload-interval" in proc.stderr and "must be positive" in proc.stderr
    proc = run_cli([], env={"KUBE_LXCFS_WEBHOOK_TLS_RELOAD_INTERVAL": "0"})
    assert proc.returncode == 2
    assert "KUBE_LXCFS_WEBHOOK_TLS_RELOAD_INTERVAL" in proc.stderr


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ("../etc/passwd", "relative path"),
        ("/proc/meminfo", "relative path"),
        ("etc/hosts", "only paths under proc/ and sys/"),
        (",", "empty"),
    ],
)
def test_bad_file_list_is_a_one_line_usage_error(tmp_path: Path, files: str, message: str) -> None:
    from webhook.pki import new_ca

    new_ca().issue(tmp_path / "tls.crt", tmp_path / "tls.key", ["x.y.svc"])
    proc = run_cli(
        ["--tls-cert", str(tmp_path / "tls.crt"), "--tls-key", str(tmp_path / "tls.key")],
        env={"KUBE_LXCFS_WEBHOOK_FILES": files},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


SERVICE_LINKS = {
    # what the kubelet injects into every pod of a namespace with a Service kube-lxcfs-webhook
    "KUBE_LXCFS_WEBHOOK_SERVICE_HOST": "10.0.0.82",
    "KUBE_LXCFS_WEBHOOK_SERVICE_PORT": "443",
    "KUBE_LXCFS_WEBHOOK_PORT": "tcp://10.0.0.82:443",
    "KUBE_LXCFS_WEBHOOK_PORT_443_TCP": "tcp://10.0.0.82:443",
    "KUBE_LXCFS_WEBHOOK_PORT_443_TCP_PROTO": "tcp",
    "KUBE_LXCFS_WEBHOOK_PORT_443_TCP_PORT": "443",
    "KUBE_LXCFS_WEBHOOK_PORT_443_TCP_ADDR": "10.0.0.82",
}


def test_kubernetes_service_links_are_not_taken_for_options() -> None:
    proc = run_cli([], env=SERVICE_LINKS)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    # the first thing missing is the certificate, not a complaint about the service link
    assert len(lines) == 1 and "--tls-cert is required" in lines[0], lines


def test_a_flag_hides_a_bad_value_in_its_variable() -> None:
    proc = run_cli(["--port", "8443"], env={"KUBE_LXCFS_WEBHOOK_PORT": "https"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--tls-cert is required" in lines[0], lines

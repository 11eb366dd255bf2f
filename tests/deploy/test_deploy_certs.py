"""Certificates: the pure generator, a real TLS handshake, and ``kube-lxcfs certs``."""

from __future__ import annotations

import base64
import datetime as dt
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kube_lxcfs.deploy import certs
from kube_lxcfs.deploy.secrets import bundle_from_secret_data, secret_data, write_cert_files
from support.tls_probe import handshake

SVC, NS = "kube-lxcfs-webhook", "lxcfs"


@pytest.fixture(scope="module")
def bundle() -> certs.CertBundle:
    return certs.generate_bundle(SVC, NS)


def test_serving_cert_names_every_service_dns_form(bundle: certs.CertBundle) -> None:
    assert certs.dns_names_of(bundle.tls_cert) == [
        "kube-lxcfs-webhook",
        "kube-lxcfs-webhook.lxcfs",
        "kube-lxcfs-webhook.lxcfs.svc",
        "kube-lxcfs-webhook.lxcfs.svc.cluster.local",
    ]


def test_serving_cert_is_signed_by_the_ca_and_matches_its_key(bundle: certs.CertBundle) -> None:
    assert certs.is_signed_by(bundle.tls_cert, bundle.ca_cert)
    assert certs.keys_match(bundle.tls_cert, bundle.tls_key)
    assert certs.keys_match(bundle.ca_cert, bundle.ca_key)
    assert not certs.keys_match(bundle.tls_cert, bundle.ca_key)
    other = certs.generate_bundle(SVC, NS)
    assert not certs.is_signed_by(bundle.tls_cert, other.ca_cert)


def test_extensions_make_a_ca_and_a_server_certificate(bundle: certs.CertBundle) -> None:
    ca = x509.load_pem_x509_certificate(bundle.ca_cert)
    leaf = x509.load_pem_x509_certificate(bundle.tls_cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku


@pytest.mark.parametrize(
    ("key_type", "key_class"),
    [("ecdsa-p256", ec.EllipticCurvePublicKey), ("rsa2048", rsa.RSAPublicKey)],
)
def test_key_types(key_type: str, key_class: type) -> None:
    made = certs.generate_bundle(SVC, NS, key_type=key_type)
    key = x509.load_pem_x509_certificate(made.tls_cert).public_key()
    assert isinstance(key, key_class)
    if isinstance(key, rsa.RSAPublicKey):
        assert key.key_size == 2048
    else:
        assert key.curve.name == "secp256r1"


def test_unknown_key_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown key type"):
        certs.new_private_key("dsa")


def test_validity_and_renewal_window() -> None:
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    made = certs.generate_bundle(SVC, NS, days=90, now=now)
    expiry = certs.not_after(made.tls_cert)
    assert expiry - now == dt.timedelta(days=90) - dt.timedelta(minutes=5)
    assert not certs.needs_renewal(made.tls_cert, now=now + dt.timedelta(days=50))
    assert certs.needs_renewal(made.tls_cert, now=now + dt.timedelta(days=65))
    # The serving certificate never outlives its CA.
    short_ca = certs.generate_bundle(SVC, NS, days=400, ca_days=10, now=now)
    assert certs.not_after(short_ca.tls_cert) <= certs.not_after(short_ca.ca_cert)


def test_secret_data_round_trip(bundle: certs.CertBundle) -> None:
    data = secret_data(bundle, include_ca_key=True)
    assert set(data) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}
    assert bundle_from_secret_data(data) == bundle
    assert bundle_from_secret_data({"tls.crt": data["tls.crt"]}) is None
    assert bundle_from_secret_data(None) is None


def _handshake(bundle: certs.CertBundle, tmp_path: Path, server_name: str) -> bytes:
    write_cert_files(tmp_path, bundle, overwrite=True)
    return handshake(tmp_path / "tls.crt", tmp_path / "tls.key", bundle.ca_cert, server_name)


@pytest.mark.parametrize("key_type", certs.KEY_TYPES)
def test_real_tls_handshake_verifies_the_service_name(tmp_path: Path, key_type: str) -> None:
    made = certs.generate_bundle(SVC, NS, key_type=key_type)
    assert _handshake(made, tmp_path, f"{SVC}.{NS}.svc") == b"ok"


def test_real_tls_handshake_rejects_another_name(tmp_path: Path, bundle: certs.CertBundle) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(bundle, tmp_path, "other.lxcfs.svc")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kube_lxcfs", "certs", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_writes_tls_secret_files_and_prints_the_ca_bundle(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    proc = _cli("--namespace", "demo", "--service", "hook", "--out-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
    assert stat.S_IMODE((out / "tls.key").stat().st_mode) == 0o600
    assert base64.b64decode(proc.stdout.strip()) == (out / "ca.crt").read_bytes()
    tls_crt = (out / "tls.crt").read_bytes()
    assert "hook.demo.svc" in certs.dns_names_of(tls_crt)
    assert certs.is_signed_by(tls_crt, (out / "ca.crt").read_bytes())


def test_cli_never_overwrites_without_force(tmp_path: Path) -> None:
    assert _cli("--out-dir", str(tmp_path)).returncode == 0
    before = (tmp_path / "tls.key").read_bytes()
    refused = _cli("--out-dir", str(tmp_path))
    assert refused.returncode == 1
    assert "--force" in refused.stderr
    assert (tmp_path / "tls.key").read_bytes() == before
    assert _cli("--out-dir", str(tmp_path), "--force").returncode == 0
    assert (tmp_path / "tls.key").read_bytes() != before


def test_cli_secret_yaml_is_a_valid_tls_secret() -> None:
    from support.k8s_schemas import validation_errors, versions

    proc = _cli("--secret-yaml", "--key-type", "rsa2048", "--days", "30")
    assert proc.returncode == 0, proc.stderr
    secret = yaml.safe_load(proc.stdout)
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"] == {"name": "kube-lxcfs-webhook-tls", "namespace": "lxcfs"}
    assert set(secret["data"]) == {"ca.crt", "tls.crt", "tls.key"}
    ca_b64 = proc.stderr.strip().removeprefix("caBundle: ")
    assert ca_b64 == secret["data"]["ca.crt"]
    assert validation_errors(secret, versions()[-1]) == []


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--out-dir", "x", "--secret-yaml"],
        ["--secret-yaml", "--days", "0"],
        ["--secret-yaml", "--key-type", "dsa"],
    ],
)
def test_cli_usage_errors_exit_2(args: list[str]) -> None:
    proc = _cli(*args)
    assert proc.returncode == 2
    assert proc.stderr.startswith("kube-lxcfs certs: ") and len(proc.stderr.splitlines()) == 1
    assert proc.stderr.rstrip().endswith("(see kube-lxcfs certs --help)")

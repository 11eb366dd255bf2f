"""A private CA and the webhook's serving certificate, as PEM bytes.

The API server calls the webhook over TLS and verifies it against the
``caBundle`` of the MutatingWebhookConfiguration, so we need our own CA: the
cluster CA cannot sign serving certificates since certificates.k8s.io/v1beta1
went away (Kubernetes 1.22). Everything here is a pure function of its inputs
(plus the clock and the random source of key generation), so the CLI, the
in-cluster self-provisioning and the tests share it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kube_lxcfs.deploy.certdefaults import (
    DEFAULT_CA_DAYS,
    DEFAULT_DAYS,
    DEFAULT_KEY_TYPE,
    KEY_TYPES,
)

__all__ = ["DEFAULT_CA_DAYS", "DEFAULT_DAYS", "DEFAULT_KEY_TYPE", "KEY_TYPES", "CertBundle"]
# Issue certificates as valid from a little in the past: nodes' clocks drift.
_BACKDATE = dt.timedelta(minutes=5)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class CertBundle:
    """What a ``kubernetes.io/tls`` Secret of the webhook holds (plus the CA key for renewal)."""

    ca_cert: bytes
    ca_key: bytes
    tls_cert: bytes
    tls_key: bytes


def service_dns_names(
    service: str, namespace: str, cluster_domain: str = "cluster.local"
) -> list[str]:
    """The names the API server (or a pod) may use to reach ``service`` in ``namespace``."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{cluster_domain}",
    ]


def new_private_key(key_type: str = DEFAULT_KEY_TYPE) -> PrivateKey:
    """A fresh key of one of ``KEY_TYPES``."""
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key type {key_type!r} (choose from {', '.join(KEY_TYPES)})")


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


def generate_ca(
    common_name: str = "kube-lxcfs-webhook-ca",
    *,
    key_type: str = DEFAULT_KEY_TYPE,
    days: int = DEFAULT_CA_DAYS,
    now: dt.datetime | None = None,
) -> tuple[bytes, bytes]:
    """A self-signed CA certificate and its key, both PEM."""
    key = new_private_key(key_type)
    start = _now(now) - _BACKDATE
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def generate_serving_cert(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    dns_names: list[str],
    *,
    key_type: str = DEFAULT_KEY_TYPE,
    days: int = DEFAULT_DAYS,
    now: dt.datetime | None = None,
) -> tuple[bytes, bytes]:
    """A serverAuth certificate for ``dns_names`` signed by the CA, and its key, both PEM."""
    if not dns_names:
        raise ValueError("a serving certificate needs at least one DNS name")
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    key = new_private_key(key_type)
    start = _now(now) - _BACKDATE
    end = min(start + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[-1])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=key_type == "rsa2048",
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def generate_bundle(
    service: str,
    namespace: str,
    *,
    key_type: str = DEFAULT_KEY_TYPE,
    days: int = DEFAULT_DAYS,
    ca_days: int = DEFAULT_CA_DAYS,
    cluster_domain: str = "cluster.local",
    now: dt.datetime | None = None,
) -> CertBundle:
    """A new CA and a serving certificate for the webhook Service ``service.namespace``."""
    ca_cert, ca_key = generate_ca(
        f"{service}.{namespace} webhook CA", key_type=key_type, days=max(ca_days, days), now=now
    )
    tls_cert, tls_key = generate_serving_cert(
        ca_cert,
        ca_key,
        service_dns_names(service, namespace, cluster_domain),
        key_type=key_type,
        days=days,
        now=now,
    )
    return CertBundle(ca_cert=ca_cert, ca_key=ca_key, tls_cert=tls_cert, tls_key=tls_key)


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM blob (a caBundle may hold several CAs during a rotation)."""
    return x509.load_pem_x509_certificates(pem)


def not_after(cert_pem: bytes) -> dt.datetime:
    """The expiry of the first certificate in ``cert_pem`` (UTC)."""
    return load_certificates(cert_pem)[0].not_valid_after_utc


def dns_names_of(cert_pem: bytes) -> list[str]:
    """The DNS subject alternative names of the first certificate in ``cert_pem``."""
    cert = load_certificates(cert_pem)[0]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(san.value.get_values_for_type(x509.DNSName))


def needs_renewal(
    cert_pem: bytes,
    *,
    now: dt.datetime | None = None,
    fraction: float = 1 / 3,
) -> bool:
    """True when less than ``fraction`` of the certificate's lifetime is left."""
    cert = load_certificates(cert_pem)[0]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    return cert.not_valid_after_utc - _now(now) < lifetime * fraction


def is_signed_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    """True when the first certificate of ``cert_pem`` was issued by a CA in ``ca_pem``."""
    cert = load_certificates(cert_pem)[0]
    for ca in load_certificates(ca_pem):
        try:
            cert.verify_directly_issued_by(ca)
        except (InvalidSignature, ValueError, TypeError):
            continue
        return True
    return False


def keys_match(cert_pem: bytes, key_pem: bytes) -> bool:
    """True when ``key_pem`` is the private key of the first certificate in ``cert_pem``."""
    cert = load_certificates(cert_pem)[0]
    key = serialization.load_pem_private_key(key_pem, password=None)
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)

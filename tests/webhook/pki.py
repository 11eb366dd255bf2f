"""A throw-away CA and serving certificates for the webhook tests (``kube_lxcfs.deploy.certs``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kube_lxcfs.deploy import certs

SERVICE_NAME = "kube-lxcfs-webhook.kube-lxcfs.svc"


@dataclass
class Pki:
    """A CA (PEM) that signs serving certificates into files."""

    cert_pem: bytes
    key_pem: bytes

    def issue(self, cert_file: Path, key_file: Path, dns_names: list[str]) -> None:
        """Write a serving certificate for ``dns_names`` and its key."""
        cert, key = certs.generate_serving_cert(self.cert_pem, self.key_pem, dns_names, days=1)
        key_file.write_bytes(key)
        cert_file.write_bytes(cert)


def new_ca(name: str = "kube-lxcfs test CA") -> Pki:
    cert, key = certs.generate_ca(name, days=1)
    return Pki(cert, key)

"""The webhook's certificate material as files and as a Secret object.

A ``kubernetes.io/tls`` Secret holds ``tls.crt``/``tls.key`` plus ``ca.crt``; the
self-provisioned one also keeps ``ca.key`` so that a replica can renew the serving
certificate without changing the caBundle the API server trusts.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from kube_lxcfs.deploy.certs import CertBundle

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"


def ca_bundle_b64(bundle: CertBundle) -> str:
    """The CA certificate as the base64 string a webhook configuration's caBundle wants."""
    return base64.b64encode(bundle.ca_cert).decode()


def secret_data(bundle: CertBundle, *, include_ca_key: bool) -> dict[str, str]:
    """The Secret ``data`` map (base64 values) for ``bundle``."""
    files = {CA_CERT: bundle.ca_cert, TLS_CERT: bundle.tls_cert, TLS_KEY: bundle.tls_key}
    if include_ca_key:
        files[CA_KEY] = bundle.ca_key
    return {name: base64.b64encode(content).decode() for name, content in files.items()}


def bundle_from_secret_data(data: dict[str, str] | None) -> CertBundle | None:
    """Decode a Secret's ``data``; None when a required key is missing or empty."""
    data = data or {}
    try:
        files = {k: base64.b64decode(data[k]) for k in (CA_CERT, TLS_CERT, TLS_KEY)}
    except (KeyError, ValueError, TypeError):
        return None
    if not all(files.values()):
        return None
    ca_key = base64.b64decode(data.get(CA_KEY) or "")
    return CertBundle(
        ca_cert=files[CA_CERT], ca_key=ca_key, tls_cert=files[TLS_CERT], tls_key=files[TLS_KEY]
    )


def tls_secret(
    name: str,
    namespace: str,
    bundle: CertBundle,
    *,
    include_ca_key: bool = False,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A ``kubernetes.io/tls`` Secret object for ``bundle``."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "kubernetes.io/tls",
        "data": secret_data(bundle, include_ca_key=include_ca_key),
    }


def write_cert_files(out_dir: Path, bundle: CertBundle, *, overwrite: bool = False) -> list[Path]:
    """Write ca.crt, tls.crt and tls.key (key files mode 0600) into ``out_dir``.

    Each file is written to a temporary name and renamed, so a webhook watching the
    directory never reads half a key. Refuses to replace existing files unless told.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {CA_CERT: bundle.ca_cert, TLS_CERT: bundle.tls_cert, TLS_KEY: bundle.tls_key}
    if not overwrite:
        for name in files:
            if (out_dir / name).exists():
                raise FileExistsError(str(out_dir / name))
    written = []
    for name, content in files.items():
        path = out_dir / name
        tmp = out_dir / f".{name}.tmp"
        mode = 0o600 if name.endswith(".key") else 0o644
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        written.append(path)
    return written

"""In-cluster certificate self-provisioning for the webhook.

On start each webhook replica makes sure a CA/serving Secret exists, loads it,
writes ``tls.crt``/``tls.key`` for the server (which reloads changed files), and
keeps the MutatingWebhookConfiguration's ``caBundle`` equal to the Secret's CA.
Replicas that start together race safely: creation is create-if-absent, and the
loser of a 409 reads the winner's Secret; updates carry the resourceVersion, so a
renewal by two replicas at once ends with one of them and both use it.

Renewal: the serving certificate is reissued by the same CA when a third of its
lifetime is left (the caBundle does not change). The CA itself is replaced when
it nears expiry; the old CA stays in ``ca.crt`` next to the new one until it
expires, so the API server trusts replicas that still serve the old certificate.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kube_lxcfs.deploy import certs
from kube_lxcfs.deploy.kubeapi import ApiError, KubeApi
from kube_lxcfs.deploy.secrets import (
    TLS_CERT,
    TLS_KEY,
    bundle_from_secret_data,
    secret_data,
    write_cert_files,
)

log = logging.getLogger(__name__)
WEBHOOK_CONFIG_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
LABELS = {"app.kubernetes.io/name": "kube-lxcfs", "app.kubernetes.io/component": "webhook"}


@dataclass
class SelfProvisioner:
    """One replica's view of the shared certificate Secret and the webhook configuration."""

    api: KubeApi
    namespace: str
    secret_name: str
    webhook_config: str
    service: str
    cert_dir: Path
    key_type: str = certs.DEFAULT_KEY_TYPE
    days: int = certs.DEFAULT_DAYS
    ca_days: int = certs.DEFAULT_CA_DAYS
    now: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))

    @property
    def secret_path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/secrets/{self.secret_name}"

    @property
    def dns_names(self) -> list[str]:
        return certs.service_dns_names(self.service, self.namespace)

    # ------------------------------------------------------------ the Secret

    def ensure_secret(self) -> certs.CertBundle:
        """The valid bundle of the shared Secret, creating or renewing it when needed."""
        for _ in range(5):
            secret = self.api.get(self.secret_path)
            if secret is None:
                bundle = self._new_bundle()
                try:
                    self.api.create(self._secret_object(bundle))
                except ApiError as exc:
                    if exc.status == 409:  # another replica created it first: use theirs
                        log.info("secret %s created by another replica", self.secret_name)
                        continue
                    raise
                log.info("created secret %s/%s", self.namespace, self.secret_name)
                return bundle
            bundle = bundle_from_secret_data(secret.get("data"))
            reason = self._renewal_reason(bundle)
            if not reason:
                assert bundle is not None
                return bundle
            renewed = self._renew(bundle)
            updated = dict(secret)
            updated["data"] = secret_data(renewed, include_ca_key=True)
            updated["type"] = "kubernetes.io/tls"
            try:
                self.api.replace(updated)
            except ApiError as exc:
                if exc.status == 409:  # another replica renewed first: read theirs
                    continue
                raise
            log.info("renewed secret %s/%s: %s", self.namespace, self.secret_name, reason)
            return renewed
        raise ApiError(409, "Conflict", f"secret {self.secret_name} keeps changing; giving up")

    def _renewal_reason(self, bundle: certs.CertBundle | None) -> str:
        """Why the stored bundle cannot be used as it is ("" when it can)."""
        if bundle is None:
            return "missing or incomplete data"
        now = self.now()
        try:
            if not bundle.ca_key or not _valid_ca_pair(bundle):
                return "no usable CA key to renew with"
            if certs.needs_renewal(bundle.ca_cert, now=now):
                return "CA near expiry"
            if not certs.is_signed_by(bundle.tls_cert, bundle.ca_cert):
                return "serving certificate not signed by the CA"
            if not certs.keys_match(bundle.tls_cert, bundle.tls_key):
                return "serving key does not match"
            if set(certs.dns_names_of(bundle.tls_cert)) != set(self.dns_names):
                return "serving certificate names another service"
            if certs.needs_renewal(bundle.tls_cert, now=now):
                return "serving certificate near expiry"
        except ValueError as exc:
            return f"unreadable: {exc}"
        return ""

    def _new_bundle(self) -> certs.CertBundle:
        return certs.generate_bundle(
            self.service,
            self.namespace,
            key_type=self.key_type,
            days=self.days,
            ca_days=self.ca_days,
            now=self.now(),
        )

    def _renew(self, old: certs.CertBundle | None) -> certs.CertBundle:
        """Reissue from the same CA when it is healthy; else a new CA that trusts-forward."""
        now = self.now()
        reusable = (
            old is not None
            and old.ca_key
            and _valid_ca_pair(old)
            and not certs.needs_renewal(old.ca_cert, now=now)
        )
        if reusable:
            assert old is not None
            tls_cert, tls_key = certs.generate_serving_cert(
                _first_pem(old.ca_cert),
                old.ca_key,
                self.dns_names,
                key_type=self.key_type,
                days=self.days,
                now=now,
            )
            return certs.CertBundle(old.ca_cert, old.ca_key, tls_cert, tls_key)
        fresh = self._new_bundle()
        still_valid = _unexpired(old.ca_cert, now) if old is not None else b""
        return certs.CertBundle(
            fresh.ca_cert + still_valid, fresh.ca_key, fresh.tls_cert, fresh.tls_key
        )

    def _secret_object(self, bundle: certs.CertBundle) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self.secret_name,
                "namespace": self.namespace,
                "labels": dict(LABELS),
            },
            "type": "kubernetes.io/tls",
            "data": secret_data(bundle, include_ca_key=True),
        }

    # ------------------------------------------------------------ caBundle

    def sync_ca_bundle(self, bundle: certs.CertBundle) -> str:
        """Make every webhook of the configuration trust ``bundle``'s CA(s).

        Returns "updated", "in sync" or "absent" (the configuration is not there yet:
        install applies it after the Deployment; the next sync catches up).
        """
        want = base64.b64encode(bundle.ca_cert).decode()
        for _ in range(5):
            config = self.api.get(WEBHOOK_CONFIG_PATH + self.webhook_config)
            if config is None:
                return "absent"
            hooks = config.get("webhooks") or []
            if all(h.get("clientConfig", {}).get("caBundle") == want for h in hooks):
                return "in sync"
            for hook in hooks:
                hook.setdefault("clientConfig", {})["caBundle"] = want
            try:
                self.api.replace(config)
            except ApiError as exc:
                if exc.status == 409:
                    continue
                raise
            log.info("caBundle of %s updated", self.webhook_config)
            return "updated"
        raise ApiError(409, "Conflict", f"{self.webhook_config} keeps changing; giving up")

    # ------------------------------------------------------------ files

    def write_files(self, bundle: certs.CertBundle) -> bool:
        """Write the serving files when they differ from ``bundle``; True when written."""
        crt, key = self.cert_dir / TLS_CERT, self.cert_dir / TLS_KEY
        unchanged = (
            crt.exists()
            and key.exists()
            and crt.read_bytes() == bundle.tls_cert
            and key.read_bytes() == bundle.tls_key
        )
        if unchanged:
            return False
        write_cert_files(self.cert_dir, bundle, overwrite=True)
        return True

    def run_once(self) -> tuple[certs.CertBundle, str]:
        """Ensure the Secret, trust its CA in the configuration, then serve its certificate.

        The caBundle is updated before the new certificate is served, so the API
        server never sees a certificate it cannot verify.
        """
        bundle = self.ensure_secret()
        sync = self.sync_ca_bundle(bundle)
        if self.write_files(bundle):
            log.info("serving certificate written to %s", self.cert_dir)
        return bundle, sync


def _first_pem(pem: bytes) -> bytes:
    return certs.load_certificates(pem)[0].public_bytes(serialization.Encoding.PEM)


def _valid_ca_pair(bundle: certs.CertBundle) -> bool:
    try:
        return certs.keys_match(_first_pem(bundle.ca_cert), bundle.ca_key)
    except ValueError:
        return False


def _unexpired(pem: bytes, now: dt.datetime) -> bytes:
    """The certificates of ``pem`` that are still valid at ``now``, as PEM."""
    try:
        found = certs.load_certificates(pem)
    except ValueError:
        return b""
    keep: list[x509.Certificate] = [c for c in found if c.not_valid_after_utc > now]
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in keep)


class Watcher:
    """Re-runs ``run_once`` periodically in a daemon thread (renewal, caBundle drift)."""

    def __init__(
        self,
        provisioner: SelfProvisioner,
        *,
        interval: float = 300.0,
        retry_interval: float = 10.0,
    ) -> None:
        self.provisioner = provisioner
        self.interval = interval
        self.retry_interval = retry_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="self-provision", daemon=True)
        self.synced = threading.Event()

    def start(self, first_sync: str) -> None:
        """Start the loop; ``first_sync`` is the result of the initial ``run_once``."""
        if first_sync != "absent":
            self.synced.set()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            wait = self.interval if self.synced.is_set() else self.retry_interval
            if self._stop.wait(wait):
                return
            try:
                _, sync = self.provisioner.run_once()
            except (ApiError, OSError, ValueError) as exc:
                log.error("self-provisioning failed (will retry): %s", exc)
                continue
            if sync != "absent":
                self.synced.set()


def start(
    *,
    namespace: str,
    secret_name: str,
    webhook_config: str,
    service: str,
    cert_dir: Path,
    api: KubeApi | None = None,
    interval: float = 300.0,
) -> Watcher:
    """Provision synchronously (so the server starts with a certificate), then keep watching.

    Called by ``kube-lxcfs webhook --self-provision-secret``; ``api`` defaults to the
    pod's in-cluster service account.
    """
    from kube_lxcfs.deploy.kubeapi import in_cluster

    provisioner = SelfProvisioner(
        api=api or in_cluster(),
        namespace=namespace,
        secret_name=secret_name,
        webhook_config=webhook_config,
        service=service,
        cert_dir=cert_dir,
    )
    _, sync = provisioner.run_once()
    watcher = Watcher(provisioner, interval=interval)
    watcher.start(sync)
    return watcher

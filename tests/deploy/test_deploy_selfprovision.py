"""Webhook certificate self-provisioning through the real kubernetes client.

Against the recording API server: create-if-absent with two replicas racing,
renewal (same CA; new CA trusted next to the old one), caBundle sync, and a real
TLS handshake of a server using the written files, verified with the caBundle the
webhook configuration ends up with.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube_lxcfs.deploy import certs
from kube_lxcfs.deploy.kubeapi import connect
from kube_lxcfs.deploy.lifecycle import ca_bundle_of
from kube_lxcfs.deploy.render import render
from kube_lxcfs.deploy.secrets import bundle_from_secret_data
from kube_lxcfs.deploy.selfprovision import SelfProvisioner, Watcher
from support.fake_apiserver import FakeApiServer, fake_apiserver
from support.tls_probe import handshake

SECRET = "/api/v1/namespaces/lxcfs/secrets/kube-lxcfs-webhook-tls"
MWC = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/kube-lxcfs-webhook"
# Real time: the handshakes check validity against the real clock.
T0 = dt.datetime.now(dt.UTC)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeApiServer]:
    with fake_apiserver(tmp_path) as running:
        yield running


def _install_config(server: FakeApiServer) -> None:
    from kube_lxcfs.deploy.values import resolve

    (mwc,) = [o for o in render(resolve()) if o["kind"] == "MutatingWebhookConfiguration"]
    server.put(MWC, mwc)


def _replica(
    server: FakeApiServer, cert_dir: Path, now: dt.datetime = T0, **kwargs: int
) -> SelfProvisioner:
    return SelfProvisioner(
        api=connect(str(server.kubeconfig)),
        namespace="lxcfs",
        secret_name="kube-lxcfs-webhook-tls",
        webhook_config="kube-lxcfs-webhook",
        service="kube-lxcfs-webhook",
        cert_dir=cert_dir,
        now=lambda: now,
        **kwargs,
    )


def _stored_bundle(server: FakeApiServer) -> certs.CertBundle:
    secret = server.get(SECRET)
    assert secret is not None and secret["type"] == "kubernetes.io/tls"
    bundle = bundle_from_secret_data(secret["data"])
    assert bundle is not None
    return bundle


def _handshake(cert_dir: Path, ca_bundle: bytes, server_name: str) -> bytes:
    """A TLS server on the written files; a client trusting only ``ca_bundle``."""
    return handshake(cert_dir / "tls.crt", cert_dir / "tls.key", ca_bundle, server_name)


def test_first_start_creates_secret_syncs_ca_bundle_and_serves(
    server: FakeApiServer, tmp_path: Path
) -> None:
    _install_config(server)
    bundle, sync = _replica(server, tmp_path / "tls").run_once()
    assert sync == "updated"
    assert _stored_bundle(server) == bundle
    assert bundle.ca_key  # kept so that any replica can renew
    mwc = server.get(MWC)
    assert mwc is not None
    assert {h["clientConfig"]["caBundle"] for h in mwc["webhooks"]} == {
        base64.b64encode(bundle.ca_cert).decode()
    }
    assert (tmp_path / "tls/tls.crt").read_bytes() == bundle.tls_cert
    # What the API server would do: verify the serving cert with the configuration's caBundle.
    assert _handshake(tmp_path / "tls", ca_bundle_of(mwc), "kube-lxcfs-webhook.lxcfs.svc") == b"ok"


def test_two_replicas_starting_together_share_one_secret(
    server: FakeApiServer, tmp_path: Path
) -> None:
    _install_config(server)
    replicas = [_replica(server, tmp_path / f"r{i}") for i in range(2)]
    barrier = threading.Barrier(2)
    results: list[certs.CertBundle] = []

    def start(replica: SelfProvisioner) -> None:
        barrier.wait(timeout=10)
        results.append(replica.run_once()[0])

    threads = [threading.Thread(target=start, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 2
    assert results[0] == results[1] == _stored_bundle(server)
    assert (tmp_path / "r0/tls.key").read_bytes() == (tmp_path / "r1/tls.key").read_bytes()
    creates = [r for r in server.requests() if r.method == "POST"]
    assert 1 <= len(creates) <= 2  # a loser's POST got 409 and it read the winner's Secret


def test_an_existing_valid_secret_is_used_as_is(server: FakeApiServer, tmp_path: Path) -> None:
    _install_config(server)
    first, _ = _replica(server, tmp_path / "a").run_once()
    version = server.get(SECRET)["metadata"]["resourceVersion"]
    second, sync = _replica(server, tmp_path / "b", T0 + dt.timedelta(days=30)).run_once()
    assert second == first
    assert sync == "in sync"
    assert server.get(SECRET)["metadata"]["resourceVersion"] == version


def test_serving_certificate_renewal_keeps_the_ca(server: FakeApiServer, tmp_path: Path) -> None:
    _install_config(server)
    first, _ = _replica(server, tmp_path / "tls").run_once()
    later = certs.not_after(first.tls_cert) - dt.timedelta(days=10)
    renewed, sync = _replica(server, tmp_path / "tls", later).run_once()
    assert renewed.ca_cert == first.ca_cert
    assert renewed.tls_cert != first.tls_cert
    assert certs.not_after(renewed.tls_cert) > certs.not_after(first.tls_cert)
    assert sync == "in sync"  # the caBundle did not have to change
    assert (tmp_path / "tls/tls.crt").read_bytes() == renewed.tls_cert
    assert _stored_bundle(server) == renewed


def test_ca_rotation_trusts_old_and_new_until_the_old_expires(
    server: FakeApiServer, tmp_path: Path
) -> None:
    _install_config(server)
    # A 30-day CA made 21 days ago has less than a third of its life left now.
    past = T0 - dt.timedelta(days=21)
    first, _ = _replica(server, tmp_path / "old", past, ca_days=30, days=30).run_once()
    rotated, sync = _replica(server, tmp_path / "new", ca_days=30, days=30).run_once()
    assert sync == "updated"
    cas = certs.load_certificates(rotated.ca_cert)
    assert len(cas) == 2
    assert certs.load_certificates(first.ca_cert)[0] in cas
    bundle = ca_bundle_of(server.get(MWC))
    assert bundle == rotated.ca_cert
    # A replica still serving the old certificate and one serving the new both verify.
    name = "kube-lxcfs-webhook.lxcfs.svc"
    assert _handshake(tmp_path / "old", bundle, name) == b"ok"
    assert _handshake(tmp_path / "new", bundle, name) == b"ok"


def test_broken_secret_is_replaced(server: FakeApiServer, tmp_path: Path) -> None:
    _install_config(server)
    server.put(
        SECRET,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "kube-lxcfs-webhook-tls", "namespace": "lxcfs"},
            "data": {"tls.crt": base64.b64encode(b"garbage").decode()},
        },
    )
    bundle, _ = _replica(server, tmp_path / "tls").run_once()
    assert _stored_bundle(server) == bundle
    assert certs.is_signed_by(bundle.tls_cert, bundle.ca_cert)


def test_concurrent_renewal_ends_with_one_winner(server: FakeApiServer, tmp_path: Path) -> None:
    _install_config(server)
    first, _ = _replica(server, tmp_path / "x").run_once()
    later = certs.not_after(first.tls_cert) - dt.timedelta(days=10)
    replicas = [_replica(server, tmp_path / f"r{i}", later) for i in range(2)]
    barrier = threading.Barrier(2)
    results: list[certs.CertBundle] = []

    def renew(replica: SelfProvisioner) -> None:
        barrier.wait(timeout=10)
        results.append(replica.run_once()[0])

    threads = [threading.Thread(target=renew, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results[0] == results[1] == _stored_bundle(server)


def test_watcher_syncs_once_the_configuration_appears(
    server: FakeApiServer, tmp_path: Path
) -> None:
    replica = _replica(server, tmp_path / "tls")
    bundle, sync = replica.run_once()
    assert sync == "absent"  # the webhook starts before install applies the configuration
    watcher = Watcher(replica, interval=3600, retry_interval=0.05)
    watcher.start(sync)
    try:
        assert not watcher.synced.is_set()
        _install_config(server)
        assert watcher.synced.wait(timeout=30)
    finally:
        watcher.stop()
    assert ca_bundle_of(server.get(MWC)) == bundle.ca_cert

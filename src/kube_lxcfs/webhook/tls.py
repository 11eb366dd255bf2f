"""TLS for the webhook: a server context from cert/key files, swapped when the files change.

Secrets mounted into a pod are updated in place (kubelet swaps a symlink), and cert-manager
renews certificates well before they expire, so the server watches the files and builds a new
context for new connections. The listening socket is never closed; connections already open
keep the context they were accepted with.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

from kube_lxcfs.errors import KubeLxcfsError

log = logging.getLogger("kube_lxcfs.webhook.tls")

TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}

FileSignature = tuple[tuple[int, int, int, int], ...]


class TlsLoadError(KubeLxcfsError):
    """The cert/key files cannot be read or do not form a usable key pair."""


def build_server_context(
    cert_file: Path, key_file: Path, min_version: str = "1.2"
) -> ssl.SSLContext:
    """A server-side context: TLS >= ``min_version``, HTTP/1.1 by ALPN, the given key pair."""
    if min_version not in TLS_VERSIONS:
        raise ValueError(f"TLS version {min_version!r} not supported; use 1.2 or 1.3")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[min_version]
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    except (OSError, ssl.SSLError) as exc:
        raise TlsLoadError(f"cannot load {cert_file} / {key_file}: {exc}") from exc
    return context


def file_signature(*paths: Path) -> FileSignature:
    """What identifies the current content of the files cheaply (follows symlinks)."""
    result = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            result.append((0, 0, 0, -1))
            continue
        result.append((st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(result)


def certificate_not_after(cert_file: Path) -> float | None:
    """The expiry (Unix time) of the first certificate in a PEM file, None if unreadable.

    CPython's own certificate decoder (``_ssl._test_decode_cert``, what ``ssl``'s tests use)
    when present: importing ``cryptography`` for this one date costs a serving process 12 MiB
    of RSS (measured). ``cryptography`` otherwise.
    """
    decode = getattr(ssl._ssl, "_test_decode_cert", None)  # type: ignore[attr-defined]
    if decode is not None:
        try:
            return float(ssl.cert_time_to_seconds(decode(str(cert_file))["notAfter"]))
        except (OSError, ssl.SSLError, KeyError, ValueError):
            return None
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        return cert.not_valid_after_utc.timestamp()
    except (OSError, ValueError):
        return None


class ReloadingContext:
    """Holds the current server context and rebuilds it when the cert or key file changes."""

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        min_version: str = "1.2",
        on_reload: Callable[[bool, float | None], None] | None = None,
        *,
        track_expiry: bool = True,
    ) -> None:
        """``track_expiry`` False: no ``cryptography`` import (12 MiB of RSS), for workers
        whose supervisor reports the expiry."""
        self.cert_file = cert_file
        self.track_expiry = track_expiry
        self.key_file = key_file
        self.min_version = min_version
        self._on_reload = on_reload
        self._lock = threading.Lock()
        self._signature = file_signature(cert_file, key_file)
        self._context = self._load()  # raises TlsLoadError: the server must not start without
        self.not_after: float | None = self._expiry()
        self._report(True)

    @property
    def context(self) -> ssl.SSLContext:
        return self._context

    def _load(self) -> ssl.SSLContext:
        return build_server_context(self.cert_file, self.key_file, self.min_version)

    def _expiry(self) -> float | None:
        if not self.track_expiry:
            return None
        return certificate_not_after(self.cert_file)

    def _report(self, ok: bool) -> None:
        if self._on_reload is not None:
            self._on_reload(ok, self.not_after)

    def check(self) -> bool:
        """Reload if the files changed; True when a new context was installed.

        A failed load (e.g. the cert was replaced but the key not yet) keeps the old context
        and is retried at the next check, because the remembered signature is not updated.
        """
        signature = file_signature(self.cert_file, self.key_file)
        if signature == self._signature:
            return False
        with self._lock:
            try:
                context = self._load()
            except TlsLoadError as exc:
                log.error("tls reload failed, keeping the old one", extra={"error": str(exc)})
                self._report(False)
                return False
            self._context = context
            self._signature = signature
            self.not_after = self._expiry()
        log.info("tls certificate reloaded", extra={"cert_file": str(self.cert_file)})
        self._report(True)
        return True

    def watch(self, interval: float, stop: threading.Event) -> threading.Thread:
        """Poll the files every ``interval`` seconds in a daemon thread until ``stop`` is set."""

        def loop() -> None:
            while not stop.wait(interval):
                try:
                    self.check()
                except Exception:  # keep watching whatever happens
                    log.exception("tls watcher error")

        thread = threading.Thread(target=loop, name="tls-reload", daemon=True)
        thread.start()
        return thread

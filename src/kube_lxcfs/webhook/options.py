"""The webhook server's options, apart from server.py so that the CLI parser can show their
defaults without importing the TLS stack."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kube_lxcfs.defaults import HEALTH_PORT, WEBHOOK_PORT
from kube_lxcfs.webhook.config import DEFAULT_MAX_BODY, InjectOptions


@dataclass(frozen=True)
class ServerOptions:
    """How the server listens; the CLI fills these from flags and env vars (and shows these
    defaults)."""

    cert_file: Path
    key_file: Path
    address: str = "0.0.0.0"
    port: int = WEBHOOK_PORT
    health_port: int = HEALTH_PORT
    tls_min_version: str = "1.2"
    tls_reload_interval: float = 10.0
    max_body_bytes: int = DEFAULT_MAX_BODY
    idle_timeout: float = 120.0  # keep-alive connections idle longer than this are closed
    handshake_timeout: float = 10.0
    max_connections: int = 1024  # per worker; more are closed at once
    shutdown_grace: float = 25.0  # how long SIGTERM waits for in-flight requests
    shutdown_delay: float = 0.0  # readyz fails this long before the listener closes
    inject: InjectOptions = field(default_factory=InjectOptions)

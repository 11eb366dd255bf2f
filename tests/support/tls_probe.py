"""One real TLS handshake on loopback: does a client trusting these CAs accept this server?"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path


def handshake(cert_file: Path, key_file: Path, ca_pem: bytes, server_name: str) -> bytes:
    """Serve ``cert_file``/``key_file`` once; connect verifying ``server_name`` against
    ``ca_pem``. Returns what the server sent (b"ok"); raises ssl errors on rejection."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cadata=ca_pem.decode())
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass  # the client's verdict is what the test looks at

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with (
                socket.create_connection(listener.getsockname(), timeout=10) as raw,
                client_ctx.wrap_socket(raw, server_hostname=server_name) as tls,
            ):
                return tls.recv(2)
        finally:
            thread.join(timeout=10)

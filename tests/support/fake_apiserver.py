"""A small in-memory Kubernetes API server on loopback HTTPS, recording every request.

It speaks enough of the API for ``install``/``uninstall``/``doctor`` and the
webhook's self-provisioning through the real ``kubernetes`` client: GET (object,
collection with an equality ``labelSelector``), POST (201, 409 AlreadyExists),
PUT (409 Conflict on a stale resourceVersion), PATCH as server-side apply or JSON
merge patch, DELETE, and ``dryRun=All``. Objects are stored by URL path, so every
kind works, including custom resources, unless its API group is marked absent.
It has no controllers and no admission: the real API server tier (tests/cluster)
covers those.
"""

from __future__ import annotations

import copy
import itertools
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from kube_lxcfs.deploy.certs import generate_bundle
from kube_lxcfs.deploy.secrets import write_cert_files


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    content_type: str


@dataclass
class FakeState:
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    absent_groups: set[str] = field(default_factory=set)
    # Fixed answers for paths that are no objects (e.g. service proxy requests).
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    versions: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def put(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {})
        md["resourceVersion"] = str(next(self.versions))
        md.setdefault("uid", f"uid-{md['resourceVersion']}")
        self.objects[path] = obj
        return obj


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


def _matches(obj: dict[str, Any], selector: str | None) -> bool:
    if not selector:
        return True
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge_patch(out.get(key), value)
    return out


def _split(path: str) -> tuple[str, str | None]:
    """(collection path, name or None) of a URL path like /api/v1/namespaces/x/secrets/y."""
    parts = path.rstrip("/").split("/")
    head = 3 if parts[1] == "api" else 4  # ['', 'api', 'v1'] / ['', 'apis', g, v]
    rest = parts[head:]
    if rest and rest[0] == "namespaces" and len(rest) >= 3:
        return ("/".join(parts[: head + 3]), rest[3] if len(rest) > 3 else None)
    collection = "/".join(parts[: head + 1])
    return collection, (rest[1] if len(rest) > 1 else None)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return yaml.safe_load(raw) if raw else None

    def _handle(self) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        state = self.server.state
        content_type = self.headers.get("Content-Type", "")
        body = self._body()
        with state.lock:
            state.requests.append(Recorded(self.command, path, query, content_type))
            code, answer = self._dispatch(path, query, content_type, body)
        self._reply(code, answer)

    def _dispatch(
        self, path: str, query: dict[str, str], content_type: str, body: Any
    ) -> tuple[int, dict[str, Any]]:
        state = self.server.state
        if path == "/version":
            return 200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake"}
        if path in state.answers:
            return state.answers[path]
        parts = path.split("/")
        if parts[1] == "apis" and parts[2] in state.absent_groups:
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        collection, name = _split(path)
        dry = query.get("dryRun") == "All"
        item = f"{collection}/{name}" if name else None
        if self.command == "GET":
            if item is None:
                prefix = collection.rsplit("/", 1)
                items = [
                    o
                    for p, o in state.objects.items()
                    if p.rsplit("/", 2)[0] == collection or _same_kind(p, prefix)
                    if _matches(o, query.get("labelSelector"))
                ]
                return 200, {"kind": "List", "apiVersion": "v1", "items": items}
            if item in state.objects:
                return 200, state.objects[item]
            return 404, _status(404, "NotFound", f"{name} not found")
        if self.command == "POST":
            item = f"{collection}/{body['metadata']['name']}"
            if item in state.objects:
                return 409, _status(409, "AlreadyExists", f"{body['metadata']['name']} exists")
            return 201, body if dry else state.put(item, body)
        if self.command == "PUT":
            if item not in state.objects:
                return 404, _status(404, "NotFound", f"{name} not found")
            stored = state.objects[item]
            sent_rv = (body.get("metadata") or {}).get("resourceVersion")
            if sent_rv and sent_rv != stored["metadata"]["resourceVersion"]:
                return 409, _status(409, "Conflict", "the object has been modified")
            return 200, body if dry else state.put(item, body)
        if self.command == "PATCH":
            stored = state.objects.get(item)
            if "apply-patch" in content_type:
                new = copy.deepcopy(body)
                if stored is not None:
                    new["metadata"] = {**stored["metadata"], **new["metadata"]}
                    if "status" in stored:
                        new["status"] = stored["status"]
                    if _same_content(new, stored):
                        return 200, stored
                    new["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
                return (200 if stored else 201), new if dry else state.put(item, new)
            if stored is None:
                return 404, _status(404, "NotFound", f"{name} not found")
            new = _merge_patch(stored, body)
            return 200, new if dry else state.put(item, new)
        if self.command == "DELETE":
            if item not in state.objects:
                return 404, _status(404, "NotFound", f"{name} not found")
            if not dry:
                removed = state.objects.pop(item)
                if collection == "/api/v1/namespaces":  # the namespace's objects go with it
                    inside = f"/namespaces/{name}/"
                    for p in [p for p in state.objects if inside in p]:
                        del state.objects[p]
                return 200, removed
            return 200, state.objects[item]
        return 405, _status(405, "MethodNotAllowed", self.command)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


def _same_kind(stored_path: str, prefix: list[str]) -> bool:
    """A cluster-wide list (/api/v1/pods) also matches namespaced objects of that kind."""
    base, plural = prefix
    if "/namespaces/" in base:
        return False
    return stored_path.startswith(base + "/namespaces/") and stored_path.rsplit("/", 2)[1] == plural


def _same_content(new: dict[str, Any], stored: dict[str, Any]) -> bool:
    strip = {"resourceVersion", "uid"}
    a = dict(new)
    b = dict(stored)
    a["metadata"] = {k: v for k, v in new["metadata"].items() if k not in strip}
    b["metadata"] = {k: v for k, v in stored["metadata"].items() if k not in strip}
    return a == b


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: FakeState


@dataclass
class FakeApiServer:
    """A running fake API server: its URL, CA, a kubeconfig for it, and its state."""

    url: str
    kubeconfig: Path
    state: FakeState

    def get(self, path: str) -> dict[str, Any] | None:
        with self.state.lock:
            return copy.deepcopy(self.state.objects.get(path))

    def put(self, path: str, obj: dict[str, Any]) -> None:
        with self.state.lock:
            self.state.put(path, obj)

    def paths(self) -> list[str]:
        with self.state.lock:
            return sorted(self.state.objects)

    def requests(self) -> list[Recorded]:
        with self.state.lock:
            return list(self.state.requests)


@contextmanager
def fake_apiserver(tmp_path: Path) -> Iterator[FakeApiServer]:
    """Start the server on 127.0.0.1 with a fresh CA; stop it on exit."""
    bundle = generate_bundle("kubernetes", "default")
    cert_dir = tmp_path / "fake-apiserver"
    write_cert_files(cert_dir, bundle)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_dir / "tls.crt", cert_dir / "tls.key")
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = FakeState()
    server.socket = context.wrap_socket(server.socket, server_side=True)
    host, port = server.server_address[:2]
    # The serving certificate names "kubernetes"; clients verify it through tls-server-name.
    url = f"https://{host}:{port}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "fake",
                        "cluster": {
                            "server": url,
                            "certificate-authority": str(cert_dir / "ca.crt"),
                            "tls-server-name": "kubernetes",
                        },
                    }
                ],
                "users": [{"name": "admin", "user": {"token": "fake-token"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "admin"}}],
                "current-context": "fake",
            }
        )
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeApiServer(url=url, kubeconfig=kubeconfig, state=server.state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

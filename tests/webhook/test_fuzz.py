"""10,000 random, malformed and oversized bodies against the real server: every answer is a 4xx
or an allowed review, no internal error is counted, the server stays up and its memory flat."""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import copy
import gzip
import json
import random
import re
import socket
import ssl
import time
from pathlib import Path
from typing import Any

from webhook.podcheck import load
from webhook.serverproc import raw_tls, running_webhook

BODIES = 10_000
MAX_BODY = 64 * 1024
SEED = 20261126
# Memory may grow a little while caches and arenas settle; a per-request leak of even 500 bytes
# over the 8,000 measured requests would exceed this.
RSS_SLACK_KIB = 4096

SEEDS = [
    load(name)
    for name in (
        "bare-pod.json",
        "deployment-pod.json",
        "existing-volumes.json",
        "conflicting-mountpath.json",
        "init-and-sidecar.json",
        "seed-injected-v1beta1.json",
        "non-pod-configmap.json",
    )
]
SCALARS: list[Any] = [None, True, False, 0, -1, 2**70, 1.5, "", "x", "/proc/meminfo", "Always"]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(4 if depth < 4 else 1)
    if kind == 0:
        return rng.choice(SCALARS)
    if kind == 1:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 2:
        keys = ["name", "mountPath", "volumes", "containers", "spec", "metadata", "uid", "kind"]
        return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    return "".join(rng.choice('ab/~"\\\u00e9\u2028') for _ in range(rng.randrange(8)))


def mutate_somewhere(rng: random.Random, node: Any) -> None:
    """Replace one random member of the tree with a random value (type confusion)."""
    for _ in range(rng.randrange(1, 8)):
        if isinstance(node, dict) and node:
            key = rng.choice(list(node))
            if rng.random() < 0.3 or not isinstance(node[key], dict | list):
                node[key] = random_value(rng)
                return
            node = node[key]
        elif isinstance(node, list) and node:
            index = rng.randrange(len(node))
            if rng.random() < 0.3 or not isinstance(node[index], dict | list):
                node[index] = random_value(rng)
                return
            node = node[index]
        else:
            return


def make_body(rng: random.Random, i: int) -> bytes:
    kind = i % 6
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 2048))
    if kind == 1:
        text = json.dumps(rng.choice(SEEDS))
        return text[: rng.randrange(len(text))].encode()
    if kind == 2:
        return json.dumps(random_value(rng)).encode()
    if kind == 5 and i % 300 == 5:
        return b"{" + b" " * (MAX_BODY + rng.randrange(1, 4096)) + b"}"  # oversized
    doc = copy.deepcopy(rng.choice(SEEDS))
    mutate_somewhere(rng, doc if kind == 3 else doc["request"]["object"])
    return json.dumps(doc).encode()


def check_answer(status: int, body: bytes) -> None:
    assert 400 <= status < 500 or status == 200, status
    if status != 200:
        assert "message" in json.loads(body)
        return
    answer = json.loads(body)
    assert answer["response"]["allowed"] is True
    patch = answer["response"].get("patch")
    if patch:
        ops = json.loads(base64.b64decode(patch))
        assert ops and all(op["op"] == "add" for op in ops)


def metric(text: str, prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_fuzz_bodies(tmp_path: Path) -> None:
    """Well-formed HTTP around random bodies (the raw protocol is fuzzed below)."""
    rng = random.Random(SEED)
    env = {"KUBE_LXCFS_WEBHOOK_MAX_BODY_BYTES": str(MAX_BODY)}
    with running_webhook(tmp_path, env) as server:
        conn = server.connect()
        statuses: dict[int, int] = {}
        baseline = 0
        for i in range(BODIES):
            body = make_body(rng, i)
            status, answer = conn.post(body)
            check_answer(status, answer)
            statuses[status] = statuses.get(status, 0) + 1
            if i == 2000:
                baseline = server.rss_kib()
        grown = server.rss_kib() - baseline
        assert server.health("/healthz")[0] == 200
        assert server.health("/readyz")[0] == 200
        _, text = server.health("/metrics")
        assert metric(text, 'kube_lxcfs_webhook_admissions_total{outcome="error"}') == 0
        assert statuses.get(200, 0) > 2000 and statuses.get(400, 0) > 2000, statuses
        assert statuses.get(413, 0) >= 10, statuses
        assert grown < RSS_SLACK_KIB, f"RSS grew {grown} KiB over {BODIES - 2000} requests"
        assert server.proc.poll() is None


# --- the raw protocol: request lines, headers, lengths and encodings over real TLS sockets ---

RAW_CASES = 10_000
RAW_HEALTH_CASES = 1_000
RAW_SEED = 20261204
RAW_BUDGET = 300.0  # seconds for the whole run; it takes a fraction of that
RAW_WORKERS = 4
ANSWERS = {200, 400, 404, 405, 411, 413, 414, 415, 431}
"""Every status the admission port may give; 505 also, for a request line whose version is not
HTTP/1.x (the standard answer, checked per request)."""

METHODS = [b"POST"] * 6 + [b"GET", b"PUT", b"HEAD", b"post", b"PRI", b"P\xc3\xb6ST", b"\x00", b""]
TARGETS = [b"/mutate"] * 6 + [
    b"/mutate?timeout=10s",
    b"/mutate?" + b"a" * 3000,
    b"*",
    b"https://kube-lxcfs-webhook.kube-lxcfs.svc/mutate",
    b"/",
    b"/%00",
    b"//mutate",
    b"/mutate/../mutate",
    b"/\xff\xfe",
    "/мутировать".encode(),
]
VERSIONS = [b"HTTP/1.1"] * 6 + [
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"HTTP/0.9",
    b"http/1.1",
    b"HTTP/1.10",
    b"HTTP/1",
    b"HTTP/1.1 extra",
    b"",
]
EOLS = [b"\r\n"] * 6 + [b"\n", b"\r", b"\r\r\n", b"\n\r"]
LENGTH_FORMS = [
    "{n}",
    "{n}",
    "{n}",
    "{less}",
    "{more}",
    "-{n}",
    "+{n}",
    " {n} ",
    "0{n}",
    "{n}, {n}",
    "0x{n:x}",
    "{n}\u00b2",
    "\u0663",
    "99999999999999999999999999",
    "",
    "1e3",
]
CONTENT_TYPES = [
    b"application/json",
    b"application/json; charset=utf-8",
    b"application/json; charset=utf-16",
    b"APPLICATION/JSON",
    b"text/plain",
    b"",
    b"application/json\xff",
]
EXTRA_HEADERS = [
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip, chunked",
    b"Expect: 100-continue",
    b"Expect: 100-Continue",
    b"Expect: something",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Connection: Upgrade",
    b"Upgrade: h2c",
    b"Content-Encoding: gzip",
    b"Host: kube-lxcfs-webhook.kube-lxcfs.svc:443",
    b"Host:",
    b"X-Nul: a\x00b",
    b"X-Utf8: \xc3\xa9t\xc3\xa9",
    b"X-Latin1: \xe9t\xe9",
    b" folded continuation",
    b"\tfolded: tab",
    b"no colon here",
    b": empty name",
    b"Bad Name: space",
    b"X-Long: " + b"v" * 65_600,
]


def encoded_body(rng: random.Random) -> bytes:
    """A body: a real review in several encodings, or something that is not one."""
    review = json.dumps(rng.choice(SEEDS))
    kind = rng.randrange(10)
    if kind < 3:
        return review.encode()
    if kind == 3:
        return review.encode(rng.choice(["utf-16", "utf-16-le", "utf-32", "utf-8-sig"]))
    if kind == 4:
        return gzip.compress(review.encode())
    if kind == 5:
        return review.encode().replace(b'"', b'"\\ud800', 1)
    if kind == 6:
        return rng.randbytes(rng.randrange(0, 600))
    if kind == 7:
        return b"[" * rng.randrange(1, 5000)
    if kind == 8:
        return review.encode("latin-1", "replace").replace(b"name", b"n\xe9me")
    return b""


def raw_request(rng: random.Random) -> bytes:
    """One request, usually almost right, with one or more parts wrong."""
    body = encoded_body(rng)
    eol = rng.choice(EOLS)
    sep = rng.choice([b" "] * 8 + [b"  ", b"\t", b"\x0b"])
    line = sep.join(
        part
        for part in (rng.choice(METHODS), rng.choice(TARGETS), rng.choice(VERSIONS))
        if part or rng.random() < 0.5
    )
    headers = []
    if rng.random() < 0.9:
        n = len(body)
        form = rng.choice(LENGTH_FORMS)
        value = form.format(
            n=n, less=max(0, n - rng.randrange(1, 50)), more=n + rng.randrange(1, 50)
        )
        headers.append(b"Content-Length: " + value.encode())
        if rng.random() < 0.05:
            headers.append(b"Content-Length: " + str(n + 7).encode())  # a conflicting second one
    if rng.random() < 0.8:
        headers.append(b"Content-Type: " + rng.choice(CONTENT_TYPES))
    for _ in range(rng.choice([0, 0, 0, 1, 1, 2, 3])):
        headers.append(rng.choice(EXTRA_HEADERS))
    if rng.random() < 0.02:
        headers += [b"X-Many: %d" % i for i in range(rng.randrange(95, 110))]
    if rng.random() < 0.1:
        headers.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))))
    rng.shuffle(headers)
    return line + eol + b"".join(h + eol for h in headers) + eol + body


def names_another_version(requests: list[bytes]) -> bool:
    """Whether a request line names a well-formed HTTP version other than 1.x (the only case
    for a 505; which request an answer belongs to is unknown once a length was a lie)."""
    return any(
        re.search(rb"HTTP/[02-9]\.[0-9](?![^\r\n])", request.split(b"\n", 1)[0])
        for request in requests
    )


def read_all(sock: ssl.SSLSocket, deadline: float) -> bytes:
    """Everything the server sends until it closes (it must, once we stopped sending)."""
    data = b""
    while True:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            # OpenSSL answers our end-of-stream without close_notify with a decode_error
            # alert once it has sent its answers: the end, as for a reset
            return data
        if not chunk:
            return data
        data += chunk


def split_answers(data: bytes) -> list[tuple[int, bytes]]:
    """The HTTP/1.1 responses in ``data`` (each must be complete and well-formed)."""
    answers = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"an incomplete answer: {data[:200]!r}"
        lines = head.split(b"\r\n")
        if lines[0] == b"HTTP/1.1 100 Continue":
            data = rest
            continue
        assert lines[0].startswith(b"HTTP/1.1 "), lines[0]
        fields = dict(line.split(b": ", 1) for line in lines[1:])
        length = int(fields[b"Content-Length"])
        answers.append((int(lines[0].split(b" ")[1]), rest[:length]))
        data = rest[length:]
    return answers


def check_exchange(requests: list[bytes], answers: list[tuple[int, bytes]]) -> None:
    # no count check: a body without (or longer than) its Content-Length is the next request
    for status, body in answers:
        assert status in ANSWERS or (status == 505 and names_another_version(requests)), (
            status,
            [request[:300] for request in requests],
        )
        check_answer(400 if status == 505 else status, body)


def raw_case(server, context: ssl.SSLContext, rng: random.Random) -> int:
    """One connection: 1-3 pipelined requests, maybe cut short; then end our side and read."""
    requests = [raw_request(rng) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
    wire = b"".join(requests)
    if rng.random() < 0.15:
        wire = wire[: rng.randrange(len(wire) + 1)]
    deadline = time.monotonic() + 30
    with raw_tls(server.port, context) as sock:
        # the server may answer an early error and close: its answer is still read
        with contextlib.suppress(OSError):
            sock.sendall(wire)
        # end our direction below TLS: the server sees end-of-stream, answers what it got, closes
        with contextlib.suppress(OSError):  # ENOTCONN: the server has closed already
            socket.socket.shutdown(sock, socket.SHUT_WR)
        answers = split_answers(read_all(sock, deadline))
    check_exchange(requests, answers)
    return len(answers)


def health_case(server, rng: random.Random) -> None:
    """The plain-HTTP health port (reachable by any pod): never a 5xx, never a hang."""
    method = rng.choice([b"GET"] * 4 + [b"POST", b"HEAD", b"PUT", b"\xff", b""])
    target = rng.choice([b"/healthz", b"/readyz", b"/metrics", b"/", b"/\xff", b"*"])
    version = rng.choice([b"HTTP/1.1"] * 4 + [b"HTTP/1.0", b"HTTP/2.0", b"", b"junk"])
    line = b" ".join(p for p in (method, target, version) if p)
    extra = rng.choice([b"", b"Content-Length: 5\r\n", b"Content-Length: \xb2\r\n", b"X: \xff\r\n"])
    wire = line + b"\r\n" + extra + b"Connection: close\r\n\r\n" + rng.randbytes(rng.randrange(8))
    with socket.create_connection(("127.0.0.1", server.health_port), timeout=30) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(wire)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
    if data.startswith(b"HTTP/"):
        status = int(data.split(b" ", 2)[1])
        assert status < 500 or (status == 505 and version not in (b"HTTP/1.1", b"HTTP/1.0")), (
            status,
            wire[:200],
        )


def test_fuzz_raw_http(tmp_path: Path) -> None:
    """10,000 connections of random request lines, headers, lengths and encodings (seeded):
    every answer is a well-formed 4xx or an allowed review (505 only for a non-1.x version),
    nothing is logged at error level or with a traceback, and /readyz is green afterwards."""
    env = {"KUBE_LXCFS_WEBHOOK_MAX_BODY_BYTES": str(MAX_BODY)}
    started = time.monotonic()
    with running_webhook(tmp_path, env) as server:
        context = server.client_context()
        seeds = random.Random(RAW_SEED)
        case_seeds = [seeds.randrange(2**63) for _ in range(RAW_CASES)]

        def run(seed: int) -> int:
            try:
                return raw_case(server, context, random.Random(seed))
            except (AssertionError, OSError) as exc:
                raise AssertionError(f"case seed {seed}: {exc!r}") from None

        with concurrent.futures.ThreadPoolExecutor(RAW_WORKERS) as pool:
            answered = sum(pool.map(run, case_seeds, timeout=RAW_BUDGET))
        health_rng = random.Random(RAW_SEED + 1)
        for _ in range(RAW_HEALTH_CASES):
            health_case(server, health_rng)
        elapsed = time.monotonic() - started
        assert server.health("/readyz")[0] == 200
        assert server.health("/healthz")[0] == 200
        _, text = server.health("/metrics")
        assert metric(text, 'kube_lxcfs_webhook_admissions_total{outcome="error"}') == 0
        assert not [line for line in text.splitlines() if 'code="5' in line and line[-2:] != " 0"]
        assert server.proc.poll() is None
        print(
            f"\nraw HTTP fuzz: {RAW_CASES} connections ({answered} answers) + "
            f"{RAW_HEALTH_CASES} on the health port in {elapsed:.1f}s (seed {RAW_SEED})"
        )
    bad = [e for e in server.drain_logs() if e.get("level") == "error" or "traceback" in e]
    assert not bad, bad[:3]
    assert elapsed < RAW_BUDGET

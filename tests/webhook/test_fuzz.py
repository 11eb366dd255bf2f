"""10,000 random, malformed and oversized bodies against the real server: every answer is a 4xx
or an allowed review, no internal error is counted, the server stays up and its memory flat."""

from __future__ import annotations

import base64
import copy
import json
import random
from pathlib import Path
from typing import Any

from webhook.podcheck import load
from webhook.serverproc import running_webhook

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
        assert metric(text, 'kube_lxcfs_injections_total{outcome="error"}') == 0
        assert statuses.get(200, 0) > 2000 and statuses.get(400, 0) > 2000, statuses
        assert statuses.get(413, 0) >= 10, statuses
        assert grown < RSS_SLACK_KIB, f"RSS grew {grown} KiB over {BODIES - 2000} requests"
        assert server.proc.poll() is None

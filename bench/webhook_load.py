"""Admission throughput and latency of ``kube-lxcfs webhook`` over TLS with keep-alive.

The server runs as its own process pinned to one core (taskset); the load comes from a separate
process pinned to another core, holding N keep-alive TLS connections (one thread each) that post
the same ~10 KB AdmissionReview back to back. Each row reports admissions/s and p50/p99 latency
(send of the request to the last byte of the answer, as the client sees it).

The reference row is the pure ``review()`` function called in this process on the same body
(JSON parse + review + JSON dump, no HTTP, no TLS): the "ratio" column is the server's
throughput relative to it, i.e. what the HTTPS shell costs. On a shared machine both sides get
only part of a core, so the run also reports the server's own CPU time per admission (from
/proc) and the throughput that makes on one whole core: the figure that does not depend on
what else runs.

Usage::

    python bench/webhook_load.py            # 1, 8 and 64 connections, 5 s each
    python bench/webhook_load.py --quick    # a few seconds: CI smoke
    python bench/webhook_load.py --json out.json

The machine is shared: the load average before and after the run is printed with the results.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

from kube_lxcfs.deploy.certs import generate_bundle  # noqa: E402
from kube_lxcfs.webhook.admission import review  # noqa: E402
from kube_lxcfs.webhook.config import InjectOptions  # noqa: E402

SERVICE, NAMESPACE = "kube-lxcfs-webhook", "kube-lxcfs"
SERVER_NAME = f"{SERVICE}.{NAMESPACE}.svc"
TARGET_RATE = 2000.0
TARGET_P99_MS = 10.0


def ten_kb_review() -> dict[str, Any]:
    """A Deployment-made pod of about 10 KB: three containers with env, probes and mounts."""
    container = {
        "name": "app",
        "image": "registry.example/team/app:2026.11.26-1a2b3c4d",
        "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
        "env": [{"name": f"SETTING_{i}", "value": f"value-{i}-" + "x" * 24} for i in range(32)],
        "resources": {
            "limits": {"cpu": "2", "memory": "2Gi"},
            "requests": {"cpu": "500m", "memory": "1Gi"},
        },
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/live", "port": 8080}, "periodSeconds": 10},
        "volumeMounts": [
            {
                "name": "kube-api-access-abcde",
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                "readOnly": True,
            },
            {"name": "data", "mountPath": "/data"},
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }
    containers = []
    for name in ("app", "worker", "metrics"):
        c = copy.deepcopy(container)
        c["name"] = name
        containers.append(c)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "shop-frontend-6f7d9c8b5-",
            "labels": {"app": "shop-frontend", "pod-template-hash": "6f7d9c8b5", "tier": "web"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8080"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "shop-frontend-6f7d9c8b5",
                    "uid": "0f0c3d8e-58a4-4a0a-9c3e-9d3f2e1b7a55",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "volumes": [
                {"name": "kube-api-access-abcde", "projected": {"sources": [], "defaultMode": 420}},
                {"name": "data", "emptyDir": {}},
            ],
            "containers": containers,
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "schedulerName": "default-scheduler",
        },
    }
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "2c6a3f86-9d0e-4a37-8a0e-5b8b6a3c1f01",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "dryRun": False,
        },
    }


def reference_rate(body: bytes, seconds: float) -> float:
    """In-process ``review()`` (parse + decide + dump) per second: the no-HTTP, no-TLS baseline."""
    opts = InjectOptions()
    count = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(50):
            json.dumps(review(json.loads(body), opts).response)
        count += 50
    return count / seconds


# ---------------------------------------------------------------- load-generator process


def _client_worker(args: argparse.Namespace) -> int:
    """Run in the load-generator process: N connections, report latencies as JSON on stdout."""
    body = Path(args.body).read_bytes()
    request = (
        "POST /mutate?timeout=10s HTTP/1.1\r\nHost: "
        + SERVER_NAME
        + "\r\nContent-Type: application/json\r\nAccept: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    context = ssl.create_default_context(cafile=args.ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    results: list[list[float]] = [[] for _ in range(args.connections)]
    counts = [0] * args.connections  # every request, warm-up included (for CPU per request)
    errors: list[str] = []
    start_at = time.time() + args.warmup
    stop_at = start_at + args.seconds

    def one(index: int) -> None:
        try:
            raw = socket.create_connection(("127.0.0.1", args.port), timeout=30)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = context.wrap_socket(raw, server_hostname=SERVER_NAME)
            lat = results[index]
            while True:
                now = time.time()
                if now >= stop_at:
                    break
                t0 = time.perf_counter()
                sock.sendall(request)
                status = _read_response(sock)
                elapsed = time.perf_counter() - t0
                if status != 200:
                    errors.append(f"HTTP {status}")
                    return
                counts[index] += 1
                if now >= start_at:
                    lat.append(elapsed)
            sock.close()
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies = sorted(x for per in results for x in per)
    report = {"latencies": latencies, "errors": errors[:5], "total": sum(counts)}
    json.dump(report, sys.stdout)
    return 0 if not errors else 1


def _read_response(sock: ssl.SSLSocket) -> int:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        rest += chunk
    return int(head.split(b" ", 2)[1])


# ---------------------------------------------------------------- driver


def _taskset(cpu: str | None) -> list[str]:
    if cpu is None or not shutil.which("taskset"):
        return []
    return ["taskset", "-c", cpu]


def start_server(tmp: Path, cpu: str | None) -> tuple[subprocess.Popen[str], int]:
    bundle = generate_bundle(SERVICE, NAMESPACE)
    (tmp / "ca.crt").write_bytes(bundle.ca_cert)
    (tmp / "tls.crt").write_bytes(bundle.tls_cert)
    (tmp / "tls.key").write_bytes(bundle.tls_key)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE_LXCFS_WEBHOOK_")}
    env["PYTHONPATH"] = str(REPO / "src")
    proc = subprocess.Popen(
        [
            *_taskset(cpu),
            sys.executable,
            "-m",
            "kube_lxcfs",
            "webhook",
            "--tls-cert",
            str(tmp / "tls.crt"),
            "--tls-key",
            str(tmp / "tls.key"),
            "--address",
            "127.0.0.1",
            "--port",
            "0",
            "--health-port",
            "0",
            "--log-level",
            "info",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    for line in proc.stderr:
        entry = json.loads(line)
        if entry.get("msg") == "serving":
            # Keep draining stderr so the server never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
            return proc, int(entry["port"])
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit("webhook did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(
    port: int,
    tmp: Path,
    *,
    connections: int,
    seconds: float,
    warmup: float,
    cpu: str | None,
    server_pid: int,
) -> dict[str, Any]:
    cmd = [
        *_taskset(cpu),
        sys.executable,
        str(Path(__file__).resolve()),
        "--client",
        "--port",
        str(port),
        "--ca",
        str(tmp / "ca.crt"),
        "--body",
        str(tmp / "body.json"),
        "--connections",
        str(connections),
        "--seconds",
        str(seconds),
        "--warmup",
        str(warmup),
    ]
    cpu_before = cpu_seconds(server_pid)
    limit = seconds + warmup + 120
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, check=False)
    cpu_used = cpu_seconds(server_pid) - cpu_before
    if out.returncode != 0 and not out.stdout:
        raise SystemExit(f"load generator failed: {out.stderr.strip()[-500:]}")
    data = json.loads(out.stdout)
    lat = data["latencies"]
    if data["errors"] or not lat:
        raise SystemExit(f"load generator errors: {data['errors']}")
    total = data["total"]
    return {
        "connections": connections,
        "admissions": len(lat),
        "server_cpu_us": cpu_used / total * 1e6 if total else 0.0,
        "rate": len(lat) / seconds,
        "p50_ms": statistics.quantiles(lat, n=100)[49] * 1000 if len(lat) > 1 else lat[0] * 1000,
        "p99_ms": statistics.quantiles(lat, n=100)[98] * 1000 if len(lat) > 1 else lat[0] * 1000,
    }


def check_answer(body: bytes) -> None:
    """The body really gets a patch (so the bench measures injections, not skips)."""
    answer = review(json.loads(body), InjectOptions()).response
    ops = json.loads(base64.b64decode(answer["response"]["patch"]))
    assert len(ops) > 8, "benchmark pod must be injected"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run for CI smoke tests")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--connections", default=None, help="comma list (default 1,8,64)")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--server-cpu", default="0", help="taskset CPU of the server")
    parser.add_argument("--client-cpu", default="1", help="taskset CPU(s) of the load generator")
    # Internal: the load-generator process.
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    parser.add_argument("--body", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=float, default=0.5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        args.connections = int(args.connections)
        return _client_worker(args)

    seconds = args.seconds or (1.0 if args.quick else 5.0)
    warmup = 0.3 if args.quick else 1.0
    levels = [int(c) for c in (args.connections or ("1,8" if args.quick else "1,8,64")).split(",")]
    cpus = os.cpu_count() or 1
    server_cpu = args.server_cpu if cpus > 1 else None
    client_cpu = args.client_cpu if cpus > 1 else None
    body = json.dumps(ten_kb_review()).encode()
    check_answer(body)

    load_before = os.getloadavg()
    ref = reference_rate(body, 0.5 if args.quick else 2.0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="kube-lxcfs-bench-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "body.json").write_bytes(body)
        server, port = start_server(tmp, server_cpu)
        try:
            for n in levels:
                rows.append(
                    run_load(
                        port,
                        tmp,
                        connections=n,
                        seconds=seconds,
                        warmup=warmup,
                        cpu=client_cpu,
                        server_pid=server.pid,
                    )
                )
        finally:
            server.terminate()
            server.wait(timeout=30)
    load_after = os.getloadavg()

    print(f"kube-lxcfs webhook load: {len(body)} byte AdmissionReview, TLS 1.3, keep-alive")
    print(
        f"server pinned to CPU {server_cpu}, load generator on CPU {client_cpu}; "
        f"{cpus} CPUs; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print(f"reference: in-process review() {ref:,.0f}/s")
    print(
        f"{'connections':>11} {'admissions/s':>13} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>7}"
        f" {'server CPU us/adm':>18} {'1-core capacity/s':>18}"
    )
    for row in rows:
        print(
            f"{row['connections']:>11} {row['rate']:>13,.0f} {row['p50_ms']:>8.2f}"
            f" {row['p99_ms']:>8.2f} {row['rate'] / ref:>7.2f} {row['server_cpu_us']:>18.0f}"
            f" {1e6 / max(row['server_cpu_us'], 1):>18,.0f}"
        )
    at8 = next((r for r in rows if r["connections"] == 8), None)
    if at8 is not None:
        met = at8["rate"] >= TARGET_RATE and at8["p99_ms"] <= TARGET_P99_MS
        print(
            f"target at 8 connections (>= {TARGET_RATE:.0f}/s, p99 <= {TARGET_P99_MS:.0f} ms): "
            + ("met" if met else "NOT met")
        )
    if args.json:
        result = {
            "body_bytes": len(body),
            "reference_rate": ref,
            "load_before": load_before,
            "load_after": load_after,
            "rows": rows,
        }
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

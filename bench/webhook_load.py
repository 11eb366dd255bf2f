"""Admission throughput, latency and CPU cost of ``kube-lxcfs webhook`` over TLS with keep-alive.

The server runs as its own process tree (``--workers N``: a supervisor and N workers); the load
comes from wrk (Debian's ``wrk``, with a Lua script posting the review) or, without wrk, from a
Python process holding N keep-alive TLS connections. Two reviews: the 1.7 KB one (a
Deployment-made pod with one container) and the ~10 KB one (three containers with env, probes
and mounts). Each row reports admissions/s and p50/p99 latency.

Ratios, not absolute rates, are what a shared machine can compare: the "vs w1" column is a
row's rate against the ``--workers 1`` row of the same review and connections, measured in the
same run; "CPU ms/1k" is the server processes' own CPU time (utime + stime of the supervisor
and its workers, all threads, from /proc) per 1,000 admissions, and "x pure" that against
the pure function's CPU per admission (JSON parse, ``review()``, answer encoding) measured in
this process in the same run. "CPU split" is each worker's part of the workers' CPU time (how
evenly the connections were spread). "RSS MiB/worker" is the workers' resident memory after
the row, divided by their number.

Usage::

    python bench/webhook_load.py                     # both reviews, 8 and 64 connections,
                                                     # --workers 1 and the default, 5 s each
    python bench/webhook_load.py --seconds 10 --json out.json
    python bench/webhook_load.py --reuseport         # also: how SO_REUSEPORT would spread
    python bench/webhook_load.py --doc docs/webhook.md   # also: the Markdown table, in place
    python bench/webhook_load.py --quick             # a few seconds: CI smoke

The load average before and after the run is printed with the results.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import json
import os
import re
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
from kube_lxcfs.webhook.admission import encode_review, review  # noqa: E402
from kube_lxcfs.webhook.config import InjectOptions  # noqa: E402

SERVICE, NAMESPACE = "kube-lxcfs-webhook", "kube-lxcfs"
SERVER_NAME = f"{SERVICE}.{NAMESPACE}.svc"


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


def small_review() -> dict[str, Any]:
    """About 1.7 KB: the same Deployment-made pod with one container, no env, one probe."""
    review_ = ten_kb_review()
    container = review_["request"]["object"]["spec"]["containers"][0]
    del container["env"], container["livenessProbe"]
    review_["request"]["object"]["spec"]["containers"] = [container]
    return review_


def reference_cost(body: bytes, seconds: float) -> tuple[float, float]:
    """The pure function in this process, no HTTP, no TLS: parse + ``review()`` + encode.
    (admissions per second of wall time, CPU µs per admission); the server rows' CPU is
    compared with the second."""
    opts = InjectOptions()
    count = 0
    cpu_start = time.process_time()
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        for _ in range(50):
            encode_review(review(json.loads(body), opts).response)
        count += 50
    wall = time.perf_counter() - start
    return count / wall, (time.process_time() - cpu_start) / count * 1e6


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


def start_server(
    tmp: Path, cpu: str | None, workers: int | None
) -> tuple[subprocess.Popen[str], int]:
    """Start the webhook (``workers`` None: its default); its process and HTTPS port."""
    if not (tmp / "tls.crt").exists():
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
            *([] if workers is None else ["--workers", str(workers)]),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
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


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (the supervisor's workers)."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(int(k) for k in kids)]


def cpu_by_process(pid: int) -> dict[int, float]:
    """User + system CPU seconds (utime + stime of /proc/PID/stat, all threads) of ``pid``
    and of each of its children so far."""
    result = {}
    for one in process_tree(pid):
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        result[one] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process tree so far (from /proc/PID/stat)."""
    return sum(cpu_by_process(pid).values())


def worker_shares(pid: int, before: dict[int, float], after: dict[int, float]) -> list[float]:
    """Each worker's part of the workers' CPU time between two readings (how evenly the
    connections were spread); [1.0] for a single process."""
    used = [after[p] - before.get(p, 0.0) for p in after if p != pid] or [1.0]
    total = sum(used) or 1.0
    return sorted((u / total for u in used), reverse=True)


def reuseport_spread(listeners: int, connections: int, rounds: int) -> list[float]:
    """SO_REUSEPORT, measured: ``listeners`` sockets on one port, ``connections`` new loopback
    connections per round; the largest listener's share of each round's connections."""
    shares = []
    for _ in range(rounds):
        socks = []
        try:
            first = socket.socket()
            first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            first.bind(("127.0.0.1", 0))
            first.listen(connections)
            socks.append(first)
            port = first.getsockname()[1]
            for _ in range(listeners - 1):
                other = socket.socket()
                other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                other.bind(("127.0.0.1", port))
                other.listen(connections)
                socks.append(other)
            clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
            counts = []
            for listener in socks:
                listener.setblocking(False)
                count = 0
                with contextlib.suppress(BlockingIOError):
                    while True:
                        accepted, _ = listener.accept()
                        accepted.close()
                        count += 1
                counts.append(count)
            for client in clients:
                client.close()
            shares.append(max(counts) / connections)
        finally:
            for listener in socks:
                listener.close()
    return shares


def workers_rss_mib(pid: int) -> tuple[float, int]:
    """(resident MiB of the serving processes together, how many): the workers, or the
    single process of ``--workers 1``."""
    tree = process_tree(pid)
    serving = tree[1:] or tree
    total = 0
    for one in serving:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024, len(serving)


WRK_SCRIPT = """
wrk.method = "POST"
wrk.path = "/mutate?timeout=10s"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Host"] = "%s"
local f = io.open("%s", "rb")
wrk.body = f:read("*a")
f:close()
"""

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)([a-z]+)", text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * UNITS[match.group(2)]


def run_wrk(port: int, tmp: Path, connections: int, seconds: float) -> dict[str, Any]:
    """One wrk run; admissions, rate, p50/p99 and the error count."""
    script = tmp / "post.lua"
    script.write_text(WRK_SCRIPT % (SERVER_NAME, tmp / "body.json"))
    cmd = [
        "wrk",
        f"-t{min(connections, 2)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"https://127.0.0.1:{port}/mutate",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    text = out.stdout
    if out.returncode != 0:
        raise SystemExit(f"wrk failed: {out.stderr.strip()[-500:]}")
    total = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    duration = re.search(r"requests in ([0-9.]+[a-z]+)", text).group(1)  # type: ignore[union-attr]
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", text, re.MULTILINE))
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        errors += int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    ):
        errors += sum(int(g) for g in match.groups())
    return {
        "admissions": total,
        "total": total,
        "rate": total / (_ms(duration) / 1000),
        "p50_ms": _ms(latency["50"]),
        "p99_ms": _ms(latency["99"]),
        "errors": errors,
    }


def run_python_client(
    port: int, tmp: Path, connections: int, seconds: float, *, warmup: float, cpu: str | None
) -> dict[str, Any]:
    cmd = [
        *_taskset(cpu),
        sys.executable,
        str(Path(__file__).resolve()),
        "--client-process",
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
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, check=False)
    if out.returncode != 0 and not out.stdout:
        raise SystemExit(f"load generator failed: {out.stderr.strip()[-500:]}")
    data = json.loads(out.stdout)
    lat = data["latencies"]
    if data["errors"] or not lat:
        raise SystemExit(f"load generator errors: {data['errors']}")
    quantiles = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0]] * 99
    return {
        "admissions": len(lat),
        "total": data["total"],
        "rate": len(lat) / seconds,
        "p50_ms": quantiles[49] * 1000,
        "p99_ms": quantiles[98] * 1000,
        "errors": 0,
    }


def run_load(
    port: int,
    tmp: Path,
    *,
    connections: int,
    seconds: float,
    warmup: float,
    cpu: str | None,
    server_pid: int,
    use_wrk: bool,
) -> dict[str, Any]:
    if use_wrk:
        run_wrk(port, tmp, connections, warmup)  # warm-up, not counted
        before = cpu_by_process(server_pid)
        row = run_wrk(port, tmp, connections, seconds)
    else:
        before = cpu_by_process(server_pid)
        row = run_python_client(port, tmp, connections, seconds, warmup=warmup, cpu=cpu)
    after = cpu_by_process(server_pid)
    cpu_used = sum(after.values()) - sum(before.values())
    row["worker_cpu_shares"] = worker_shares(server_pid, before, after)
    row["connections"] = connections
    row["server_cpu_ms_per_1k"] = cpu_used / row["total"] * 1e6 if row["total"] else 0.0
    row["server_cpu_us"] = row["server_cpu_ms_per_1k"]  # the same number: µs per admission
    return row


def check_answer(body: bytes) -> None:
    """The body really gets a patch (so the bench measures injections, not skips)."""
    answer = review(json.loads(body), InjectOptions()).response
    ops = json.loads(base64.b64decode(answer["response"]["patch"]))
    assert len(ops) > 8, "benchmark pod must be injected"


BODIES = {"small": small_review, "large": ten_kb_review}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run for CI smoke tests")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--doc",
        metavar="FILE",
        help="also write the table as Markdown into FILE, between the lines"
        f" {DOC_BEGIN!r} and {DOC_END!r} (docs/webhook.md)",
    )
    parser.add_argument(
        "--reuseport",
        action="store_true",
        help="also measure how SO_REUSEPORT would spread the connections over the workers",
    )
    parser.add_argument("--connections", default=None, help="comma list (default 8,64)")
    parser.add_argument("--seconds", type=float, default=None, help="per row (default 5)")
    parser.add_argument(
        "--bodies", default=None, help="comma list of small (1.7 KB), large (10 KB)"
    )
    parser.add_argument(
        "--workers",
        default=None,
        help="comma list of --workers values, 'default' for the server's default"
        " (default: 1,default)",
    )
    parser.add_argument(
        "--client",
        dest="client_kind",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator: wrk when installed (auto), or the Python client",
    )
    parser.add_argument("--server-cpu", default=None, help="taskset CPU(s) of the server")
    parser.add_argument("--client-cpu", default=None, help="taskset CPU(s) of the Python client")
    # Internal: the Python load-generator process.
    parser.add_argument(
        "--client-process", dest="client", action="store_true", help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    parser.add_argument("--body", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        args.connections = int(args.connections)
        return _client_worker(args)

    seconds = args.seconds or (1.0 if args.quick else 5.0)
    warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 1.0)
    levels = [int(c) for c in (args.connections or ("1,8" if args.quick else "8,64")).split(",")]
    bodies = (args.bodies or ("large" if args.quick else "small,large")).split(",")
    worker_counts: list[int | None] = [
        None if w == "default" else int(w)
        for w in (args.workers or ("1" if args.quick else "1,default")).split(",")
    ]
    use_wrk = args.client_kind == "wrk" or (
        args.client_kind == "auto" and shutil.which("wrk") is not None
    )
    cpus = os.cpu_count() or 1

    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    refs: dict[str, float] = {}
    pure_us: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="kube-lxcfs-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for name in bodies:
            body = json.dumps(BODIES[name]()).encode()
            check_answer(body)
            refs[name], pure_us[name] = reference_cost(body, 0.3 if args.quick else 1.0)
            (tmp / "body.json").write_bytes(body)
            for workers in worker_counts:
                server, port = start_server(tmp, args.server_cpu, workers)
                try:
                    for n in levels:
                        row = run_load(
                            port,
                            tmp,
                            connections=n,
                            seconds=seconds,
                            warmup=warmup,
                            cpu=args.client_cpu,
                            server_pid=server.pid,
                            use_wrk=use_wrk,
                        )
                        rss, count = workers_rss_mib(server.pid)
                        row.update(
                            body=name,
                            body_bytes=len(body),
                            workers=count if workers is None else workers,
                            workers_flag="default" if workers is None else str(workers),
                            rss_mib_per_worker=rss / count,
                        )
                        rows.append(row)
                finally:
                    server.terminate()
                    server.wait(timeout=60)
    load_after = os.getloadavg()

    def base(row: dict[str, Any]) -> dict[str, Any] | None:
        return next(
            (
                r
                for r in rows
                if r["body"] == row["body"]
                and r["connections"] == row["connections"]
                and r["workers_flag"] == "1"
            ),
            None,
        )

    spread = {}
    if args.reuseport:
        for n in levels:
            spread[n] = reuseport_spread(2, n, 20 if args.quick else 200)

    generator = "wrk" if use_wrk else "Python client"
    print("kube-lxcfs webhook load: TLS, keep-alive, POST /mutate")
    print(
        f"load generator: {generator}; {cpus} CPUs; load average"
        f" {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    for name in bodies:
        print(
            f"reference: the pure function in-process (parse, review(), encode) for the {name}"
            f" review: {refs[name]:,.0f}/s, {pure_us[name]:.0f} CPU ms/1k"
        )
    table = [[cell for _, cell in row_cells(row, base(row), pure_us)] for row in rows]
    headers = [title for title, _ in row_cells(rows[0], None, pure_us)] if rows else []
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(headers)]
    print(" ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    for cells in table:
        print(" ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)))
    for n, shares in spread.items():
        print(
            f"SO_REUSEPORT, 2 listeners, {n} connections: largest share per round"
            f" {statistics.mean(shares):.2f} on average, {max(shares):.2f} at worst"
            f" ({len(shares)} rounds); balanced: 0.50"
        )
    if args.doc:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        note = (
            f"{when}, code of commit {commit or '?'}, {cpus} CPUs, load average"
            f" {load_before[0]:.2f} before and"
            f" {load_after[0]:.2f} after, load generator {generator} on the same CPUs,"
            f" {seconds:g} s per row; pure function: "
            + ", ".join(f"{pure_us[n]:.0f} CPU ms/1k ({n})" for n in bodies)
            + (
                f". **Not a quiet machine** (load average above {QUIET_LOAD:g} before the run):"
                " other work shared the CPUs, so rates and p99 are low and CPU inflated"
                if load_before[0] > QUIET_LOAD
                else f". A quiet machine (load average at most {QUIET_LOAD:g} before the run)"
            )
        )
        extra = [
            f"SO_REUSEPORT (2 listeners, {n} new connections, {len(shares)} rounds): the busier"
            f" listener got {statistics.mean(shares) * 100:.0f} % on average,"
            f" {max(shares) * 100:.0f} % at worst."
            for n, shares in spread.items()
        ]
        write_doc_table(Path(args.doc), note, headers, table, extra)
    if args.json:
        result = {
            "body_bytes": rows[0]["body_bytes"] if rows else 0,
            "reference_rates": refs,
            "pure_cpu_us": pure_us,
            "load_before": load_before,
            "load_after": load_after,
            "load_generator": "wrk" if use_wrk else "python",
            "reuseport_largest_share": spread,
            "rows": rows,
        }
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def row_cells(
    row: dict[str, Any], ref: dict[str, Any] | None, pure_us: dict[str, float]
) -> list[tuple[str, str]]:
    """(column title, text) of one result row, for the terminal and the Markdown table."""
    label = "1.7 KB" if row["body"] == "small" else "10 KB" if row["body"] == "large" else ""
    workers = str(row["workers"]) + (" (default)" if row["workers_flag"] == "default" else "")
    return [
        ("review", f"{label or row['body']}"),
        ("workers", workers),
        ("conns", str(row["connections"])),
        ("admissions/s", f"{row['rate']:,.0f}"),
        ("p50 ms", f"{row['p50_ms']:.2f}"),
        ("p99 ms", f"{row['p99_ms']:.2f}"),
        ("vs w1", f"{row['rate'] / ref['rate']:.2f}" if ref else "-"),
        ("CPU ms/1k", f"{row['server_cpu_ms_per_1k']:.0f}"),
        ("x pure", f"{row['server_cpu_ms_per_1k'] / pure_us[row['body']]:.2f}"),
        ("CPU split", "/".join(f"{share * 100:.0f}" for share in row["worker_cpu_shares"])),
        ("RSS MiB/worker", f"{row['rss_mib_per_worker']:.1f}"),
        ("errors", str(row["errors"])),
    ]


QUIET_LOAD = 1.0
DOC_BEGIN = "<!-- webhook-load:begin -->"
DOC_END = "<!-- webhook-load:end -->"


def write_doc_table(
    doc: Path, note: str, headers: list[str], table: list[list[str]], extra: list[str]
) -> None:
    """Replace the lines between the two markers of ``doc`` with this run's table."""
    text = doc.read_text()
    if text.count(DOC_BEGIN) != 1 or text.count(DOC_END) != 1:
        raise SystemExit(f"{doc}: needs one {DOC_BEGIN} line and one {DOC_END} line")
    head, rest = text.split(DOC_BEGIN + "\n", 1)
    _, tail = rest.split(DOC_END, 1)
    lines = [
        f"Measured {note}.",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(cells) + " |" for cells in table),
        *(["", *extra] if extra else []),
    ]
    doc.write_text(head + DOC_BEGIN + "\n" + "\n".join(lines) + "\n" + DOC_END + tail)
    print(f"wrote the table into {doc}")


if __name__ == "__main__":
    sys.exit(main())

"""``--workers N`` through the real path: a supervisor process, worker processes sharing one
HTTPS port on loopback, real TLS, real signals."""

from __future__ import annotations

import json
import os
import signal
import ssl
import threading
from pathlib import Path

import pytest

from support.waiting import wait_for
from webhook.podcheck import load
from webhook.serverproc import WebhookProcess, running_webhook, start_webhook
from webhook.test_server import metric_value

WORKERS = {"KUBE_LXCFS_WEBHOOK_WORKERS": "2"}
BODY = json.dumps(load("bare-pod.json")).encode()
OK = 'kube_lxcfs_webhook_requests_total{code="200"}'


def children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(x) for x in text.split()}


def all_stopped(pid: int) -> bool:
    """Every thread of ``pid`` in state T (stopped by a signal)."""
    tasks = Path(f"/proc/{pid}/task")
    return all(
        (task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "T" for task in tasks.iterdir()
    )


def workers_of(server: WebhookProcess) -> list[int]:
    serving = next(e for e in server.logs if e.get("msg") == "serving")
    return list(serving["worker_pids"])


def admit_on_new_connection(server: WebhookProcess) -> int:
    conn = server.connect()
    try:
        return conn.post(BODY)[0]
    finally:
        conn.close()


def metric(server: WebhookProcess, name: str) -> float:
    return metric_value(server.health("/metrics")[1], name)


def test_workers_share_the_port_and_metrics_sum_across_them(tmp_path: Path) -> None:
    """A stopped worker cannot accept, so each round is served by the other one alone; the
    supervisor's /metrics counts both rounds."""
    with running_webhook(tmp_path, WORKERS) as server:
        first, second = workers_of(server)
        assert children(server.proc.pid) == {first, second}
        for stopped in (first, second):
            os.kill(stopped, signal.SIGSTOP)
            try:
                # kill() returns before every thread has stopped; a thread still running
                # could accept the next connection and then sit on it.
                wait_for(lambda pid=stopped: all_stopped(pid), what=f"worker {stopped} stopped")
                assert [admit_on_new_connection(server) for _ in range(5)] == [200] * 5
            finally:
                os.kill(stopped, signal.SIGCONT)
        assert metric(server, OK) == 10
        assert metric(server, "kube_lxcfs_webhook_workers") == 2
        assert metric(server, 'kube_lxcfs_webhook_admissions_total{outcome="injected"}') == 10
        assert metric(server, "kube_lxcfs_webhook_request_duration_seconds_count") == 10
        assert metric(server, "kube_lxcfs_webhook_requests_in_flight") == 0
        assert server.health("/readyz") == (200, "ok\n")


def test_a_killed_worker_is_replaced_and_only_its_requests_fail(tmp_path: Path) -> None:
    with running_webhook(tmp_path, WORKERS) as server:
        victim, survivor = workers_of(server)
        failures: list[BaseException] = []
        answered = [0]
        stop = threading.Event()

        def load_loop() -> None:
            while not stop.is_set():
                try:
                    status = admit_on_new_connection(server)
                    assert status == 200, status
                    answered[0] += 1
                except (OSError, ssl.SSLError, AssertionError) as exc:
                    failures.append(exc)

        clients = [threading.Thread(target=load_loop) for _ in range(4)]
        for client in clients:
            client.start()
        try:
            wait_for(lambda: answered[0] >= 20, what="load running")
            os.kill(victim, signal.SIGKILL)
            server.wait_log("worker ended, starting another")
            wait_for(lambda: len(children(server.proc.pid)) == 2, what="a replacement worker")
            wait_for(lambda: metric(server, "kube_lxcfs_webhook_workers") == 2, what="serving")
            after_restart = answered[0]
            wait_for(lambda: answered[0] >= after_restart + 20, what="load after the restart")
        finally:
            stop.set()
            for client in clients:
                client.join()
        # At most the request each client had in flight on the killed worker failed.
        assert len(failures) <= len(clients), failures
        replacement = children(server.proc.pid) - {survivor}
        assert len(replacement) == 1 and victim not in replacement
        assert metric(server, "kube_lxcfs_webhook_worker_restarts_total") == 1
        # The dead worker's counts stay in the sums (counters never go backwards).
        assert metric(server, OK) >= answered[0]
        assert server.health("/readyz")[0] == 200


def test_sigterm_stops_every_worker_and_the_port(tmp_path: Path) -> None:
    server = start_webhook(tmp_path, WORKERS)
    workers = workers_of(server)
    conn = server.connect()
    assert conn.post(BODY)[0] == 200
    assert server.terminate() == 0
    for pid in workers:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
    with pytest.raises(OSError):
        admit_on_new_connection(server)
    assert any(e.get("msg") == "stopped" for e in server.drain_logs())


def test_one_worker_is_one_process_as_before(tmp_path: Path) -> None:
    with running_webhook(tmp_path, {"KUBE_LXCFS_WEBHOOK_WORKERS": "1"}) as server:
        assert children(server.proc.pid) == set()
        assert admit_on_new_connection(server) == 200
        assert metric(server, OK) == 1
        assert "kube_lxcfs_webhook_workers" not in server.health("/metrics")[1]


def test_a_supervisor_that_is_pid_1_keeps_its_workers(tmp_path: Path) -> None:
    """In a container the supervisor is PID 1 of its PID namespace: its workers serve."""
    unshare = ["unshare", "--pid", "--fork", "--kill-child=SIGTERM"]
    server = start_webhook(tmp_path, WORKERS, prefix=unshare)
    try:
        assert admit_on_new_connection(server) == 200
        assert metric(server, "kube_lxcfs_webhook_workers") == 2
        assert server.health("/readyz") == (200, "ok\n")
        (supervisor,) = children(server.proc.pid)  # unshare's child: PID 1 inside
        os.kill(supervisor, signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
    finally:
        server.terminate()

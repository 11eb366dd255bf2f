"""The node agent's /metrics, /healthz, /readyz and --on-render-error, through a real mount.

A real ``kube-lxcfs fs --metrics-address`` daemon, readers in real transient cgroups; a
render failure and a hung request loop are forced with the daemon's own fault
injection (``KUBE_LXCFS_FAULT_STALL``: every cgroup lookup of a matching cgroup sleeps).
The last test scrapes the agent with a real Prometheus (Debian's ``prometheus``,
deps/apt/metrics.txt) on loopback, with its own storage directory, and asks PromQL.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kube_lxcfs.cgroups.transient import Limits, MiB, create_cgroup, unique_name
from kube_lxcfs.fuse.metrics import AddressError, parse_address
from support.fsdaemons import RunningFs, start_kube_lxcfs
from support.readers import read_files
from support.waiting import wait_for

DEADLINE = 1.5
"""The daemon's --health-deadline in these tests."""


def free_port() -> int:
    """A port free on both loopbacks (the IPv6 tests listen on every address)."""
    with socket.socket(socket.AF_INET6 if _ipv6_loopback() else socket.AF_INET) as s:
        s.bind(("::" if s.family == socket.AF_INET6 else "127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample(port: int, name: str, **labels: str) -> float:
    """One sample's value from /metrics (0 when the series does not exist yet)."""
    from prometheus_client.parser import text_string_to_metric_families

    _, text = get(port, "/metrics")
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def start_agent(tmp_path: Path, monkeypatch, *args: str, stall: str = "") -> tuple[RunningFs, int]:
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        pytest.skip("needs root and /dev/fuse")
    if stall:
        monkeypatch.setenv("KUBE_LXCFS_FAULT_STALL", stall)
    port = free_port()
    fs = start_kube_lxcfs(
        tmp_path / "mnt",
        "--no-repair",
        "--metrics-address",
        f"127.0.0.1:{port}",
        "--health-deadline",
        str(DEADLINE),
        *args,
    )
    monkeypatch.delenv("KUBE_LXCFS_FAULT_STALL", raising=False)
    return fs, port


@pytest.fixture
def agent(tmp_path: Path, monkeypatch):
    started: list[RunningFs] = []

    def start(*args: str, stall: str = "") -> tuple[RunningFs, int]:
        fs, port = start_agent(tmp_path / str(len(started)), monkeypatch, *args, stall=stall)
        started.append(fs)
        return fs, port

    yield start
    for fs in started:
        fs.stop()


def test_reads_are_counted_by_file_and_outcome(agent) -> None:
    fs, port = agent()
    meminfo = str(fs.path("proc/meminfo"))
    with create_cgroup(unique_name(), Limits(memory=64 * MiB)) as cg:
        before = sample(port, "kube_lxcfs_reads_total", file="/proc/meminfo", outcome="rendered")
        text = read_files([meminfo, fs.path("sys/devices/system/cpu/cpu0/online")], cgroup=cg)
        assert "MemTotal:          65536 kB" in text[meminfo]
        after = sample(port, "kube_lxcfs_reads_total", file="/proc/meminfo", outcome="rendered")
        assert after >= before + 1
        assert (
            sample(
                port,
                "kube_lxcfs_reads_total",
                file="/sys/devices/system/cpu/cpu{n}/online",
                outcome="rendered",
            )
            >= 1
        ), "per-CPU files are counted under their row, not per CPU"
        assert sample(port, "kube_lxcfs_render_duration_seconds_count", file="/proc/meminfo") >= 1
    read_files([meminfo], root_cgroup=True)
    assert sample(port, "kube_lxcfs_host_answers_total", cause="root_cgroup") >= 1
    _, text = get(port, "/metrics")
    for name in (
        "kube_lxcfs_build_info",
        "process_resident_memory_bytes",
        "kube_lxcfs_fuse_requests_in_flight",
        "kube_lxcfs_slow_cgroups",
        "kube_lxcfs_repair_passes_total",
    ):
        assert name in text, name
    assert "pid=" not in text and "cgroup=" not in text


def _slow_cgroup_read(fs: RunningFs, name: str) -> dict[str, str]:
    """Read meminfo (renders inline for the stall: the cgroup turns slow), then cpuinfo
    (no recent render of a slow cgroup: the host's file, or EIO) in one process."""
    with create_cgroup(name, Limits(memory=64 * MiB)) as cg:
        return read_files([fs.path("proc/meminfo"), fs.path("proc/cpuinfo")], cgroup=cg)


def test_a_failed_render_is_a_counted_host_answer(agent) -> None:
    name = unique_name() + "-stalled"
    fs, port = agent(stall="-stalled=1500")
    texts = _slow_cgroup_read(fs, name)
    assert texts[str(fs.path("proc/cpuinfo"))].startswith("processor")
    wait_for(
        lambda: (
            sample(port, "kube_lxcfs_host_answers_total", file="/proc/cpuinfo", cause="slow_cgroup")
            >= 1
        ),
        timeout=10,
        what="the host answer counted",
    )
    assert sample(port, "kube_lxcfs_reads_total", file="/proc/cpuinfo", outcome="host") >= 1
    assert fs.log().count("serving the host's file: CgroupSlow") == 1


def test_on_render_error_eio_fails_the_read_and_counts_it(agent) -> None:
    name = unique_name() + "-stalled"
    fs, port = agent("--on-render-error=eio", stall="-stalled=1500")
    texts = _slow_cgroup_read(fs, name)
    assert texts[str(fs.path("proc/cpuinfo"))] == "ERROR 5"
    assert texts[str(fs.path("proc/meminfo"))].startswith("MemTotal:")
    assert sample(port, "kube_lxcfs_reads_total", file="/proc/cpuinfo", outcome="eio") >= 1
    assert sample(port, "kube_lxcfs_host_answers_total", cause="slow_cgroup") >= 1


def test_a_hung_request_loop_turns_healthz_red_and_green_again(agent) -> None:
    name = unique_name() + "-hung"
    fs, port = agent(stall=f"-hung={int(DEADLINE * 4000)}")
    wait_for(lambda: get(port, "/readyz")[0] == 200, timeout=10, what="/readyz ok")
    assert get(port, "/healthz")[0] == 200
    with create_cgroup(name, Limits(memory=64 * MiB)) as cg:
        reader = cg.popen([sys.executable, "-c", f"open({str(fs.path('proc/meminfo'))!r}).read()"])
        # the loop renders the stalled cgroup inline for 4 deadlines: /healthz must see it
        _, why = wait_for(
            lambda: (r := get(port, "/healthz"))[0] == 503 and r,
            timeout=DEADLINE * 3,
            what="/healthz red while the loop is held",
        )
        assert "has not answered" in why
        assert sample(port, "kube_lxcfs_fuse_requests_in_flight") == 1
        assert sample(port, "kube_lxcfs_loop_healthy") == 0
        assert reader.wait(timeout=30) == 0
    wait_for(lambda: get(port, "/healthz")[0] == 200, timeout=DEADLINE * 3, what="green again")
    wait_for(lambda: get(port, "/readyz")[0] == 200, timeout=DEADLINE * 3, what="ready again")


def test_readyz_is_red_while_something_is_mounted_over_the_filesystem(agent) -> None:
    """A mount over the mount point (a hostPath bind, a tmpfs) hides the files from every
    new container: not ready until it is gone."""
    fs, port = agent()
    wait_for(lambda: get(port, "/readyz")[0] == 200, timeout=10, what="/readyz ok")
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "over", str(fs.mountpoint)], check=True
    )
    try:
        assert get(port, "/readyz") == (503, "failed: the filesystem is not mounted\n")
        assert get(port, "/healthz")[0] == 200  # the loop itself still answers
    finally:
        subprocess.run(["umount", str(fs.mountpoint)], check=True)
    assert get(port, "/readyz")[0] == 200


def test_readyz_is_red_once_the_mount_is_detached_and_the_agent_exits_after(agent) -> None:
    """A lazy unmount (``umount -l``): red while a reader still holds a file open; when the
    last one closes it, the daemon exits non-zero saying why (the kubelet restarts it)."""
    fs, port = agent()
    wait_for(lambda: get(port, "/readyz")[0] == 200, timeout=10, what="/readyz ok")
    with open(fs.path("proc/meminfo"), "rb") as held:
        subprocess.run(["umount", "-l", str(fs.mountpoint)], check=True)
        assert get(port, "/readyz") == (503, "failed: the filesystem is not mounted\n")
        assert held.read(9) == b"MemTotal:"  # the open file is still served
    assert fs.process.wait(timeout=15) != 0
    assert "the mount went away" in fs.log()


def test_readyz_is_red_while_the_agents_own_read_gets_the_host_file(agent) -> None:
    """The agent's self-read answered with the host's file (its cgroup is slow and has no
    render of meminfo yet, so the read fails over after ``slow_wait``): red, with the
    cause; green again once the background render lands."""
    stall_ms = 3000
    name = unique_name()
    fs, port = agent("--health-deadline", "30", stall=f"{name}-stalled={stall_ms}")
    wait_for(lambda: get(port, "/readyz")[0] == 200, timeout=10, what="/readyz ok")
    with create_cgroup(name + "-home") as home, create_cgroup(name + "-stalled") as stalled:
        home.add_pid(fs.process.pid)
        try:
            # A reader renders cpuinfo inline for the stall: the cgroup is slow afterwards.
            reader = stalled.run(
                [sys.executable, "-c", f"open({str(fs.path('proc/cpuinfo'))!r}).read()"]
            )
            assert reader.returncode == 0, reader.stderr
            stalled.add_pid(fs.process.pid)  # the agent's next self-read is for the slow cgroup
            _, why = wait_for(
                lambda: (r := get(port, "/readyz"))[0] == 503 and r,
                timeout=10,
                what="/readyz red after a host answer to the self-read",
            )
            assert why == "failed: proc/meminfo for the agent's own cgroup: host (slow_cgroup)\n"
            assert get(port, "/healthz")[0] == 200
            assert (
                sample(
                    port, "kube_lxcfs_host_answers_total", file="/proc/meminfo", cause="slow_cgroup"
                )
                >= 1
            )
            wait_for(
                lambda: get(port, "/readyz")[0] == 200,
                timeout=stall_ms / 1000 + 10,
                what="/readyz green once the cgroup's render landed",
            )
        finally:
            home.add_pid(fs.process.pid)
            fs.stop()


def test_bad_metrics_address_is_a_one_line_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kube_lxcfs", "fs", "--metrics-address", "nope", "/nonexistent"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "expected HOST:PORT" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:9110", ("0.0.0.0", 9110)),
        ("[::1]:80", ("::1", 80)),
        ("[::]:80", ("::", 80)),
        (":1", ("", 1)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["::1:80", "[::1:80", "localhost", "127.0.0.1:65536"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(AddressError):
        parse_address(text)


def _get_at(host: str, port: int, path: str) -> int:
    url_host = f"[{host}]" if ":" in host else host
    with urllib.request.urlopen(f"http://{url_host}:{port}{path}", timeout=5) as answer:
        return answer.status


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    ("address", "reachable", "unreachable"),
    [
        ("[::1]", ["::1"], ["127.0.0.1"]),
        ("[::]", ["::1", "127.0.0.1"], []),
        ("", ["::1", "127.0.0.1"], []),  # --metrics-address :PORT, the chart's
        ("127.0.0.1", ["127.0.0.1"], ["::1"]),
    ],
)
def test_metrics_listen_on_ipv6_when_asked(
    tmp_path: Path, monkeypatch, address: str, reachable: list[str], unreachable: list[str]
) -> None:
    if not _ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        pytest.skip("needs root and /dev/fuse")
    port = free_port()
    fs = start_kube_lxcfs(tmp_path / "mnt", "--no-repair", "--metrics-address", f"{address}:{port}")
    try:
        for host in reachable:
            assert _get_at(host, port, "/healthz") == 200, host
        for host in unreachable:
            with pytest.raises(urllib.error.URLError):
                _get_at(host, port, "/healthz")
    finally:
        fs.stop()


PROMETHEUS = "/usr/bin/prometheus"


def query(port: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as answer:
        body = json.load(answer)
    assert body["status"] == "success", body
    return body["data"]["result"]


def value(port: int, promql: str) -> float:
    result = query(port, promql)
    return float(result[0]["value"][1]) if result else 0.0


@pytest.fixture
def prometheus(tmp_path: Path):
    """Factory: a Prometheus scraping ``targets`` every second; stopped at teardown."""
    if shutil.which(PROMETHEUS) is None:
        pytest.skip("Debian's prometheus is not installed (deps/apt/metrics.txt)")
    started: list[subprocess.Popen] = []

    def start(targets: dict[str, str]) -> int:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {"job_name": job, "static_configs": [{"targets": [target]}]}
                        for job, target in targets.items()
                    ],
                }
            )
        )
        log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - the child owns it
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        started.append(process)

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError((tmp_path / "prometheus.log").read_text()[-3000:])
            try:
                return value(port, "sum(up)") == len(targets)
            except OSError:
                return False

        wait_for(up, timeout=60, what="prometheus up and scraping every target")
        return port

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_prometheus_sees_reads_by_file_host_answers_and_admissions(
    agent, prometheus, tmp_path: Path
) -> None:
    from webhook.serverproc import running_webhook

    fs, agent_port = agent(stall="-stalled=1500")
    (tmp_path / "webhook").mkdir()
    with running_webhook(tmp_path / "webhook") as webhook:
        _prometheus_round(fs, agent_port, webhook, prometheus)


def _prometheus_round(fs: RunningFs, agent_port: int, webhook: Any, prometheus: Any) -> None:
    from webhook.podcheck import load

    prom = prometheus(
        {
            "kube-lxcfs-agent": f"127.0.0.1:{agent_port}",
            "kube-lxcfs-webhook": f"127.0.0.1:{webhook.health_port}",
        }
    )
    webhook.connect().admit(load("bare-pod.json"))
    assert get(agent_port, "/healthz")[0] == 200
    with create_cgroup(unique_name() + "-stalled", Limits(memory=64 * MiB)) as cg:
        texts = read_files([fs.path("proc/meminfo"), fs.path("proc/cpuinfo")], cgroup=cg)
    assert texts[str(fs.path("proc/cpuinfo"))].startswith("processor")

    wait_for(
        lambda: (
            value(
                prom,
                'sum(kube_lxcfs_host_answers_total{file="/proc/cpuinfo",cause="slow_cgroup"})',
            )
            >= 1
        ),
        timeout=30,
        what="the host answer in prometheus",
    )
    by_file = {
        r["metric"]["file"]: float(r["value"][1])
        for r in query(prom, 'sum by (file) (kube_lxcfs_reads_total{outcome="rendered"})')
    }
    assert by_file.get("/proc/meminfo", 0) >= 1, by_file
    assert value(prom, 'kube_lxcfs_build_info{job="kube-lxcfs-agent"}') == 1
    assert value(prom, 'process_resident_memory_bytes{job="kube-lxcfs-agent"}') > 0
    wait_for(
        lambda: value(prom, "sum(kube_lxcfs_webhook_admissions_total)") >= 1,
        timeout=30,
        what="the webhook's admission in prometheus",
    )

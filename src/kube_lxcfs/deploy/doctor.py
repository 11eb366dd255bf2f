"""``kube-lxcfs doctor``: what is wrong with a node or a cluster, and how to fix it.

Every check returns findings (ok / warn / fail) with a one-line detail and, when
something is wrong, the fix. Node checks run where the node agent runs (or on a
node, as root); cluster checks talk to the API server like ``install`` does.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kube_lxcfs.defaults import WEBHOOK_PORT
from kube_lxcfs.deploy.kubeapi import ApiError, KubeApi
from kube_lxcfs.deploy.values import NAMESPACE_LABEL

OK, WARN, FAIL = "ok", "warn", "FAIL"
READ_TIMEOUT = 5.0
EXPIRY_WARNING = dt.timedelta(days=14)


@dataclass(frozen=True)
class Check:
    """One check's verdict."""

    level: str
    check: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.level:<4} {self.check}: {self.detail}"
        return f"{text}\n     fix: {self.fix}" if self.fix else text


def failed(findings: list[Check]) -> bool:
    """True when any finding is a failure."""
    return any(f.level == FAIL for f in findings)


# ------------------------------------------------------------------ node


def check_fuse(dev: str = "/dev/fuse", filesystems: str = "/proc/filesystems") -> Check:
    """The kernel has FUSE and the device can be opened."""
    try:
        has_fuse = any(
            line.split()[-1] == "fuse" for line in Path(filesystems).read_text().splitlines()
        )
    except OSError:
        has_fuse = False
    if not has_fuse:
        return Check(FAIL, "fuse", "the kernel has no fuse filesystem", "modprobe fuse")
    try:
        mode = os.stat(dev).st_mode
        if not stat.S_ISCHR(mode):
            return Check(
                FAIL, "fuse", f"{dev} is not a character device", "mknod /dev/fuse c 10 229"
            )
        fd = os.open(dev, os.O_RDWR)
        os.close(fd)
    except OSError as exc:
        return Check(
            FAIL,
            "fuse",
            f"cannot open {dev}: {exc.strerror}",
            "run privileged with the /dev/fuse hostPath (the node agent DaemonSet does)",
        )
    return Check(OK, "fuse", f"{dev} available")


def check_cgroups(mountinfo: str = "/proc/self/mountinfo") -> Check:
    """Which cgroup layout the node has (v1, hybrid, v2), and that it has the controllers."""
    from kube_lxcfs.cgroups.hierarchy import discover_layout

    def read_controllers(directory: str) -> str | None:
        try:
            return Path(directory, "cgroup.controllers").read_text()
        except OSError:
            return None

    try:
        layout = discover_layout(Path(mountinfo).read_text(), read_controllers)
    except OSError as exc:
        return Check(FAIL, "cgroups", f"cannot read {mountinfo}: {exc.strerror}")
    if layout.kind == "none":
        return Check(
            FAIL,
            "cgroups",
            "no cgroup filesystem mounted",
            "mount the host's /sys/fs/cgroup (hostPath) into the node agent",
        )
    missing = [c for c in ("memory", "cpu", "cpuset") if layout.hierarchy(c) is None]
    detail = f"{layout.kind} ({len(layout.hierarchies)} hierarchies)"
    if missing:
        return Check(
            WARN,
            "cgroups",
            f"{detail}; no {', '.join(missing)} controller: those limits cannot be shown",
            "enable the controllers (cgroup v2: cgroup.subtree_control) or boot with them",
        )
    return Check(OK, "cgroups", detail)


NODE_AGENT = "the node agent (kubectl -n lxcfs get pods -l app.kubernetes.io/component=node-agent)"
"""Who mounts the filesystem on a Kubernetes node (what the fixes tell the user to start)."""


def check_mount(mount_dir: str, agent: str = NODE_AGENT) -> Check:
    """The filesystem is mounted at ``mount_dir`` and its daemon is alive."""
    from kube_lxcfs.fuse.mounts import MountState, mount_at, mount_state

    try:
        state = mount_state(mount_dir)
    except OSError as exc:
        return Check(FAIL, "mount", f"{mount_dir}: {exc.strerror}")
    if state is MountState.MISSING:
        return Check(FAIL, "mount", f"{mount_dir} does not exist", f"start {agent}")
    if state is MountState.FREE:
        return Check(FAIL, "mount", f"nothing is mounted on {mount_dir}", f"start {agent}")
    if state is MountState.STALE:
        return Check(
            FAIL,
            "mount",
            f"{mount_dir} is a dead FUSE mount (Transport endpoint is not connected)",
            f"restart {agent}: it detaches the dead mount; then restart injected pods "
            "(or run kube-lxcfs repair) so they see the new one",
        )
    entry = mount_at(mount_dir)
    fstype = entry.fstype if entry else "?"
    if not fstype.startswith("fuse"):
        return Check(WARN, "mount", f"{mount_dir} is a {fstype} mount, not FUSE", f"start {agent}")
    return Check(OK, "mount", f"{mount_dir} mounted ({fstype}, {entry.source if entry else ''})")


def _read_with_timeout(path: Path, timeout: float) -> bytes | OSError | None:
    """The file's bytes, its OSError, or None when it did not answer in time."""
    result: list[bytes | OSError] = []

    def read() -> None:
        try:
            result.append(path.read_bytes())
        except OSError as exc:
            result.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else None


EXPECTED = {
    "proc/meminfo": b"MemTotal:",
    "proc/cpuinfo": b"processor",
    "proc/stat": b"cpu",
    "proc/uptime": b".",
    "proc/loadavg": b"/",
}


def check_files(mount_dir: str, files: list[str], timeout: float = READ_TIMEOUT) -> list[Check]:
    """Every injected file answers, quickly, with plausible content."""
    out = []
    for rel in files:
        path = Path(mount_dir, rel.rstrip("/"))
        target = path / "online" if rel.endswith("/") or path.is_dir() else path
        got = _read_with_timeout(target, timeout)
        name = f"file {rel}"
        if got is None:
            out.append(
                Check(FAIL, name, f"no answer within {timeout:.0f}s", "restart the node agent")
            )
        elif isinstance(got, OSError):
            out.append(Check(FAIL, name, f"{target}: {got.strerror}", "restart the node agent"))
        elif rel in EXPECTED and EXPECTED[rel] not in got:
            out.append(Check(FAIL, name, "unexpected content", "check the node agent's log"))
        else:
            out.append(Check(OK, name, f"{len(got)} bytes"))
    return out


def node_findings(mount_dir: str, files: list[str], agent: str = NODE_AGENT) -> list[Check]:
    """Every node check, in the order a person would debug (``agent``: who mounts it)."""
    findings = [check_fuse(), check_cgroups(), check_mount(mount_dir, agent)]
    if findings[-1].level != FAIL:
        findings += check_files(mount_dir, files)
    return findings


def engine_findings(
    engine_name: str, config: Path, seccomp_socket: str, mount_dir: str
) -> list[Check]:
    """Docker/Podman: the runtime ``kube-lxcfs`` registered, its launcher there, dockerd
    having loaded it, and the daemon answering sysinfo(2) (setup-docker, setup-podman)."""
    from kube_lxcfs.runtime.engines import (
        ENGINES,
        RUNTIME_NAME,
        is_executable,
        podman_conf_override,
        registered_launcher,
    )
    from kube_lxcfs.runtime.wrapper import listener_answers

    setup = f"kube-lxcfs setup-{engine_name}"
    launcher, why = registered_launcher(ENGINES[engine_name], config)
    if launcher is None:
        return [Check(FAIL, f"{engine_name} runtime", why, setup)]
    findings = [Check(OK, f"{engine_name} runtime", f"'{RUNTIME_NAME}' → {launcher} ({config})")]
    if not is_executable(launcher):
        findings.append(Check(FAIL, "wrapper", f"{launcher} is not an executable file", setup))
    if engine_name == "docker":
        findings.append(_dockerd_runtimes())
    override = podman_conf_override(config, os.environ) if engine_name == "podman" else ""
    if override:
        findings.append(Check(WARN, "podman config", override))
    if not seccomp_socket:
        findings.append(Check(WARN, "sysinfo(2)", "no seccomp socket: the host's sysinfo"))
    elif listener_answers(seccomp_socket):
        findings.append(Check(OK, "sysinfo(2)", f"the daemon answers on {seccomp_socket}"))
    else:
        findings.append(
            Check(
                FAIL,
                "sysinfo(2)",
                f"nothing answers on {seccomp_socket}: containers start with the host's"
                " sysinfo(2) (busybox free, _SC_PHYS_PAGES)",
                f"run kube-lxcfs fs {mount_dir} (it listens there when mounted at the default"
                " dir, or with --seccomp-socket)",
            )
        )
    return findings


def _dockerd_runtimes() -> Check:
    """Whether the running dockerd has loaded the runtime (``docker info``; $DOCKER_HOST)."""
    import subprocess

    from kube_lxcfs.runtime.engines import RUNTIME_NAME

    try:
        proc = subprocess.run(
            ["docker", "info", "--format", "{{json .Runtimes}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return Check(WARN, "dockerd", f"cannot ask dockerd: {exc}")
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["docker info failed"])[-1]
        return Check(WARN, "dockerd", f"cannot ask dockerd: {detail}")
    if f'"{RUNTIME_NAME}"' in proc.stdout:
        return Check(OK, "dockerd", f"runtime '{RUNTIME_NAME}' loaded")
    return Check(
        FAIL,
        "dockerd",
        f"the running dockerd does not know the runtime '{RUNTIME_NAME}' yet",
        "systemctl reload docker (or kill -HUP <dockerd pid>)",
    )


# ------------------------------------------------------------------ cluster


def cluster_findings(
    api: KubeApi,
    namespace: str,
    *,
    webhook_config: str = "kube-lxcfs-webhook",
    service: str = "kube-lxcfs-webhook",
    secret: str = "kube-lxcfs-webhook-tls",
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> list[Check]:
    """API reachable, workloads ready, caBundle valid, certificate fresh, namespaces labelled."""
    try:
        version = api.request("GET", "/version").get("gitVersion", "?")
    except ApiError as exc:
        return [Check(FAIL, "api server", str(exc), "check --kubeconfig/--context")]
    findings = [Check(OK, "api server", f"reachable, {version}")]
    findings += _workloads(api, namespace)
    runtime_class = _runtime_class_of_webhook(api, namespace)
    if runtime_class:
        findings.append(_runtime_class(api, runtime_class))
    config = api.get(
        f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{webhook_config}"
    )
    if config is None:
        findings.append(
            Check(
                FAIL, "webhook configuration", f"{webhook_config} not found", "kube-lxcfs install"
            )
        )
        bundle = b""
    else:
        finding, bundle = _ca_bundle(config, now())
        findings.append(finding)
    findings.append(_serving_certificate(api, namespace, secret, service, bundle=bundle, now=now()))
    findings.append(_reachable(api, namespace, service))
    findings += _namespaces(api, namespace, hardened_served=bool(runtime_class))
    return findings


def _runtime_class_of_webhook(api: KubeApi, namespace: str) -> str:
    """The RuntimeClass the webhook sets (``--inject-mode runtimeclass``), or "" (hostPath)."""
    from kube_lxcfs.webhook.config import DEFAULT_RUNTIME_CLASS, MODE_RUNTIME_CLASS

    dep = api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/kube-lxcfs-webhook")
    try:
        args = (dep or {})["spec"]["template"]["spec"]["containers"][0].get("args") or []
    except (KeyError, IndexError, TypeError):
        return ""
    flags = dict(arg.partition("=")[::2] for arg in args if "=" in arg)
    if flags.get("--inject-mode", "").lower() != MODE_RUNTIME_CLASS:
        return ""
    return flags.get("--runtime-class-name") or DEFAULT_RUNTIME_CLASS


def _runtime_class(api: KubeApi, name: str) -> Check:
    """runtimeClass mode: the class must exist, or the API server refuses every injected pod."""
    from kube_lxcfs.runtime.install import HANDLER

    found = api.get(f"/apis/node.k8s.io/v1/runtimeclasses/{name}")
    if found is None:
        return Check(
            FAIL,
            "runtime class",
            f"the webhook sets runtimeClassName {name} but RuntimeClass {name} does not exist:"
            " the API server refuses those pods",
            "kube-lxcfs install --set injection.mode=runtimeClass --set runtimeClass.enabled=true",
        )
    handler = found.get("handler")
    if handler != HANDLER:
        return Check(
            WARN,
            "runtime class",
            f"RuntimeClass {name} has handler {handler!r}, not {HANDLER!r}: containers do not"
            " run through kube-lxcfs-runc",
            f"kubectl delete runtimeclass {name}; then kube-lxcfs install with the same values",
        )
    return Check(
        OK,
        "runtime class",
        f"{name} (handler {HANDLER}); each node's setup-node log says whether it can run it",
    )


def _workloads(api: KubeApi, namespace: str) -> list[Check]:
    out = []
    ds = api.get(f"/apis/apps/v1/namespaces/{namespace}/daemonsets/kube-lxcfs-agent")
    if ds is None:
        out.append(
            Check(FAIL, "node agent", "DaemonSet kube-lxcfs-agent not found", "kube-lxcfs install")
        )
    else:
        st = ds.get("status") or {}
        want, have = st.get("desiredNumberScheduled", 0), st.get("numberReady", 0)
        level = OK if want and have >= want else FAIL
        fix = (
            ""
            if level == OK
            else (
                f"kubectl -n {namespace} describe daemonset kube-lxcfs-agent; on a bad node run "
                "kube-lxcfs doctor --node in the agent pod"
            )
        )
        out.append(Check(level, "node agent", f"{have}/{want} nodes ready", fix))
    dep = api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/kube-lxcfs-webhook")
    if dep is None:
        out.append(
            Check(FAIL, "webhook", "Deployment kube-lxcfs-webhook not found", "kube-lxcfs install")
        )
    else:
        want = (dep.get("spec") or {}).get("replicas", 1)
        have = (dep.get("status") or {}).get("readyReplicas", 0)
        level = OK if have >= want else (WARN if have else FAIL)
        fix = "" if level == OK else f"kubectl -n {namespace} logs deployment/kube-lxcfs-webhook"
        out.append(Check(level, "webhook", f"{have}/{want} replicas ready", fix))
    return out


def _ca_bundle(config: dict[str, Any], now: dt.datetime) -> tuple[Check, bytes]:
    from kube_lxcfs.deploy import certs  # cluster checks only: the node image has no cryptography

    name = "caBundle"
    hooks = config.get("webhooks") or []
    raw = {h.get("clientConfig", {}).get("caBundle", "") for h in hooks}
    if not hooks or raw == {""}:
        return (
            Check(
                FAIL,
                name,
                "not set: the API server cannot verify the webhook, pods are admitted "
                "without injection (failurePolicy Ignore)",
                "check the webhook's log (self-provisioning) or cert-manager's cainjector",
            ),
            b"",
        )
    if len(raw) > 1:
        return Check(FAIL, name, "differs between webhooks", "restart the webhook"), b""
    try:
        bundle = base64.b64decode(raw.pop())
        cas = certs.load_certificates(bundle)
    except ValueError as exc:
        return Check(FAIL, name, f"not a PEM certificate bundle: {exc}", "restart the webhook"), b""
    expiry = min(c.not_valid_after_utc for c in cas)
    if expiry <= now:
        return Check(
            FAIL, name, f"a CA expired on {expiry:%Y-%m-%d}", "restart the webhook"
        ), bundle
    return Check(OK, name, f"{len(cas)} CA(s), valid until {expiry:%Y-%m-%d}"), bundle


def _serving_certificate(
    api: KubeApi, namespace: str, secret: str, service: str, *, bundle: bytes, now: dt.datetime
) -> Check:
    from kube_lxcfs.deploy import certs

    name = "serving certificate"
    obj = api.get(f"/api/v1/namespaces/{namespace}/secrets/{secret}")
    if obj is None:
        return Check(
            FAIL,
            name,
            f"Secret {secret} not found",
            "check the webhook's log; it creates it at start",
        )
    try:
        cert = base64.b64decode((obj.get("data") or {}).get("tls.crt", ""))
        expiry = certs.not_after(cert)
        names = certs.dns_names_of(cert)
    except ValueError as exc:
        return Check(
            FAIL,
            name,
            f"unreadable tls.crt: {exc}",
            f"kubectl -n {namespace} delete secret {secret}",
        )
    wanted = f"{service}.{namespace}.svc"
    if wanted not in names:
        return Check(
            FAIL, name, f"not issued for {wanted}", f"kubectl -n {namespace} delete secret {secret}"
        )
    if bundle and not certs.is_signed_by(cert, bundle):
        return Check(
            FAIL,
            name,
            "not signed by a CA of the caBundle: the API server rejects the webhook",
            "restart the webhook Deployment (it re-syncs the caBundle)",
        )
    left = expiry - now
    if left <= dt.timedelta(0):
        return Check(FAIL, name, f"expired on {expiry:%Y-%m-%d}", "restart the webhook")
    level = WARN if left < EXPIRY_WARNING else OK
    return Check(
        level,
        name,
        f"expires {expiry:%Y-%m-%d} ({left.days} days)",
        "" if level == OK else "it renews itself; if not, restart the webhook",
    )


def _reachable(api: KubeApi, namespace: str, service: str) -> Check:
    """Ask the API server to call the webhook's readiness endpoint through the Service."""
    path = f"/api/v1/namespaces/{namespace}/services/http:{service}:metrics/proxy/readyz"
    try:
        api.request("GET", path)
    except ApiError as exc:
        return Check(
            FAIL,
            "webhook reachable",
            f"the API server cannot reach {service}.{namespace}: {exc}",
            f"kubectl -n {namespace} get endpoints {service}; check NetworkPolicies "
            f"between the control plane and the webhook pods (port {WEBHOOK_PORT})",
        )
    except ValueError:
        pass  # answered, but not JSON: /readyz says "ok"
    return Check(OK, "webhook reachable", f"{service}.{namespace} answers /readyz")


def _namespaces(api: KubeApi, namespace: str, *, hardened_served: bool = False) -> list[Check]:
    labelled = api.list("/api/v1/namespaces", label_selector=f"{NAMESPACE_LABEL}=enabled")
    if not labelled:
        return [
            Check(
                WARN,
                "namespaces",
                f"no namespace is labelled {NAMESPACE_LABEL}=enabled: nothing gets injected",
                f"kubectl label namespace NAME {NAMESPACE_LABEL}=enabled",
            )
        ]
    out = []
    usable = []
    for ns in labelled:
        name = ns["metadata"]["name"]
        labels = ns["metadata"].get("labels") or {}
        level = labels.get("pod-security.kubernetes.io/enforce", "")
        if name == namespace:
            out.append(Check(WARN, f"namespace {name}", "the install namespace is never injected"))
        elif level in ("baseline", "restricted") and not hardened_served:
            out.append(
                Check(
                    WARN,
                    f"namespace {name}",
                    f"enforces Pod Security {level}: skipped (hostPath volumes are not allowed)",
                    f"kubectl label namespace {name} pod-security.kubernetes.io/enforce=privileged "
                    "--overwrite, if that is acceptable",
                )
            )
        else:
            usable.append(name)
    if usable:
        out.insert(0, Check(OK, "namespaces", f"injected: {', '.join(sorted(usable))}"))
    return out

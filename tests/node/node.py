"""A one-node Kubernetes on this machine, in a mount and network namespace of its own.

The node's processes (containerd, etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kubelet) run inside namespaces held by one ``unshare --mount --net``
process, so that the product runs with its DEFAULT paths, the way users run it, while the
host stays untouched:

- mount namespace: /var/lib, /var/log, /run and /usr/local are overlays whose writes land in
  the work directory (mount points can be created without touching the host), and the
  node's own paths (/var/lib/lxcfs, /var/lib/kubelet, /var/lib/containerd, /run/containerd,
  /run/kube-lxcfs, /var/log/pods, /var/log/containers, /var/lib/cni, /etc/containerd) are
  bind mounts of work-directory folders. /var/lib/lxcfs is a shared mount, as Bidirectional
  propagation of the agent's FUSE mount needs. When the holder and every process inside are
  gone, the kernel drops every mount of the namespace (FUSE mounts included).
- network namespace: loopback plus a veth interface carrying the node IP and the API
  server's Service IP (the API server listens on :443, so in-cluster clients reach it at
  10.0.0.1:443 without kube-proxy); pods sit on a CNI bridge inside it with no default route
  and no masquerade. Every address is private to the namespace; net.* sysctls (ip_forward,
  set by the bridge plugin) are per namespace and vanish with it.

What is host-wide and therefore restored: the kernel sysctls the kubelet rewrites
(KERNEL_SYSCTLS) and the pods' cgroups (/kubepods in every hierarchy). A state file in
STATE_DIR records them while the node runs, so the next start cleans up after a killed run.
Clients (kubectl, ``kube-lxcfs install``, helm) enter the namespaces with nsenter.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cluster.control_plane import (
    ADMISSION_PLUGINS,
    SERVICE_CIDR,
    SERVICE_IP,
    Process,
    _child_env,
    die_with_parent,
    wait_until,
    write_kubeconfig,
)
from cluster.pki import CertificateAuthority, Issued, service_account_key

from . import images

NODE_NAME = "kube-lxcfs-node"
NODE_IP = "10.250.0.1"
POD_CIDR = "10.244.0.0/24"
API_PORT = 443  # the `kubernetes` Service's port: pods reach the API server at 10.0.0.1:443
SERVER = f"https://127.0.0.1:{API_PORT}"
STATE_DIR = Path("/run/kube-lxcfs-test-node")
CGROUP_ROOT = Path("/sys/fs/cgroup")
POD_CGROUP = "kubepods"
KERNEL_SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)
"""What the kubelet sets at start (protectKernelDefaults false); saved and restored."""

OVERLAID = ("/var/lib", "/var/log", "/run", "/usr/local")
BOUND = {
    "/var/lib/containerd": "containerd",
    "/run/containerd": "run-containerd",
    "/etc/containerd": "etc-containerd",
    "/var/lib/kubelet": "kubelet",
    "/var/lib/lxcfs": "lxcfs",
    "/run/kube-lxcfs": "run-kube-lxcfs",
    "/var/log/pods": "log-pods",
    "/var/log/containers": "log-containers",
    "/var/lib/cni": "cni",
}
SHARED = ("/var/lib", "/var/lib/lxcfs")
"""Shared like on a systemd host: the agent's Bidirectional volume is /var/lib (the mount
dir's parent), and containerd refuses a Bidirectional source that is not on a shared mount."""
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"


class NodeError(RuntimeError):
    """A component did not start, or a command in the node failed; carries the output."""


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    return {n: _sysctl_path(n).read_text().strip() for n in KERNEL_SYSCTLS}


def restore_sysctls(saved: dict[str, str]) -> None:
    for name, value in saved.items():
        path = _sysctl_path(name)
        if path.read_text().strip() != value:
            path.write_text(value)


def pod_cgroups() -> list[Path]:
    """Every /kubepods cgroup directory of every hierarchy, deepest first."""
    found = []
    for top in CGROUP_ROOT.glob(f"*/{POD_CGROUP}"):
        found += [p for p in top.rglob("*") if p.is_dir()] + [top]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def pids_in_pod_cgroups() -> set[int]:
    pids: set[int] = set()
    for directory in pod_cgroups():
        with contextlib.suppress(OSError):
            pids |= {int(p) for p in (directory / "cgroup.procs").read_text().split()}
    return pids


def pids_in_namespace(inode: str) -> set[int]:
    """Processes whose mount or network namespace is ``inode`` (``mnt:[...]``/``net:[...]``)."""
    found = set()
    kind = inode.split(":", maxsplit=1)[0]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / kind) == inode:
                    found.add(int(entry.name))
    return found


def _kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def remove_pod_cgroups(timeout: float = 30) -> None:
    """Kill what is left in /kubepods and remove the directories, deepest first."""

    def removed() -> bool:
        _kill(pids_in_pod_cgroups())
        for directory in pod_cgroups():
            with contextlib.suppress(OSError):
                directory.rmdir()
        return not pod_cgroups()

    wait_until(removed, timeout, "the pods' cgroups (/kubepods) to be removed", interval=0.2)


def clean_leftovers(log=lambda msg: None) -> None:
    """Undo what a killed earlier run left: its processes, cgroups, sysctls, work directory."""
    state_file = STATE_DIR / "state.json"
    if not state_file.exists():
        return
    state = json.loads(state_file.read_text())
    log(f"node: cleaning up after an earlier run that did not stop ({state.get('workdir')})")
    for inode in state.get("namespaces", []):
        _kill(pids_in_namespace(inode))
    _kill(pids_in_pod_cgroups())
    remove_pod_cgroups()
    restore_sysctls(state.get("sysctls", {}))
    workdir = state.get("workdir")
    if workdir and Path(workdir).is_dir():
        subprocess.run(["rm", "-rf", "--one-file-system", workdir], check=False)
    state_file.unlink()


@dataclass
class Node:
    """The node: start() it, use kubectl()/run(), stop() it (also after a failed start)."""

    binaries: dict[str, Path]
    workdir: Path
    image_archives: dict[str, Path]
    log: Callable[[str], None] = print
    processes: list[Process] = field(default_factory=list)
    holder: subprocess.Popen | None = None
    sysctls: dict[str, str] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    ca: CertificateAuthority | None = None
    _lock_file: IO[str] | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    # -- running things inside ------------------------------------------------------------
    def enter(self, command: Sequence[str]) -> list[str]:
        """``command`` prefixed to run in the node's mount and network namespaces."""
        assert self.holder is not None
        return ["nsenter", f"--target={self.holder.pid}", "--mount", "--net", "--", *command]

    def run(
        self,
        command: Sequence[str],
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in the node's namespaces; NodeError with its output if it fails."""
        proc = subprocess.run(
            self.enter(command),
            check=False,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**_child_env(), **(env or {})},
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise NodeError(
                f"{shlex.join(command)} exited with {proc.returncode}:\n"
                f"{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
            )
        return proc

    def kubectl(self, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
        return self.run(
            [str(self.binaries["kubectl"]), f"--kubeconfig={self.kubeconfig}", *args], **kwargs
        )

    def get(self, *args: str) -> dict:
        """``kubectl get ARGS -o json``, decoded."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def exec(self, namespace: str, pod: str, *command: str, **kwargs) -> str:
        return self.kubectl("exec", "-n", namespace, pod, "--", *command, **kwargs).stdout

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _mark(self, name: str, since: float) -> None:
        self.timings[name] = time.monotonic() - since

    def _start(self) -> None:
        started = time.monotonic()
        self._lock()
        clean_leftovers(self.log)
        self.sysctls = read_sysctls()
        self.holder = subprocess.Popen(
            die_with_parent(
                ["unshare", "--mount", "--net", "--propagation", "private", "sleep", "infinity"]
            ),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(self._holder_in_namespaces, 10, "the namespace holder")
        self.namespaces = [
            os.readlink(f"/proc/{self.holder.pid}/ns/{kind}") for kind in ("mnt", "net")
        ]
        self._save_state()
        self._prepare_namespaces()
        self._write_configs()
        containerd = self._spawn("containerd", ["containerd"])
        self._start_control_plane()
        wait_until(
            lambda: (
                self._alive_or_raise(containerd)
                and self.run(["ctr", "version"], check=False).returncode == 0
            ),
            60,
            "containerd",
        )
        # The images are imported while the control plane and the kubelet start (a pod
        # needs them only once the node is Ready), one after another: concurrent
        # `ctr images import` calls collide on their ingest ref ("tar-index.json locked").
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            imports = [pool.submit(self.import_image, a) for a in self.image_archives.values()]
            self._start_node_components()
            self._mark("control plane", started)
            for done in imports:
                done.result()
            self._mark("images imported", started)
        wait_until(self._node_ready, 180, f"node {NODE_NAME} Ready", interval=0.5)
        wait_until(
            lambda: self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
            120,
            "the default ServiceAccount",
            interval=0.5,
        )
        self._mark("node ready", started)

    def _lock(self) -> None:
        """One node per machine at a time (the /kubepods cgroups and the sysctls are
        machine-wide): another run waits here until this one has stopped. A run that was
        killed released the lock with its process; its leftovers are cleaned next."""
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(STATE_DIR / "lock", "w")  # noqa: SIM115 (held until stop)
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.log("node: another node tier run is using this machine; waiting for it")
            fcntl.flock(self._lock_file, fcntl.LOCK_EX)

    def _holder_in_namespaces(self) -> bool:
        assert self.holder is not None
        if self.holder.poll() is not None:
            raise NodeError(f"unshare exited with {self.holder.returncode}")
        own = os.readlink("/proc/self/ns/net")
        return os.readlink(f"/proc/{self.holder.pid}/ns/net") != own

    def _save_state(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        state = {
            "workdir": str(self.workdir),
            "namespaces": self.namespaces,
            "sysctls": self.sysctls,
            "holder": self.holder.pid if self.holder else None,
        }
        (STATE_DIR / "state.json").write_text(json.dumps(state, indent=1))

    def _prepare_namespaces(self) -> None:
        """Interfaces, overlays and bind mounts, by one shell script inside the namespaces."""
        lines = [
            "set -e",
            # Copies of other mounts of the machine (other tests' FUSE and tmp mounts) would
            # keep those alive after their owners unmount them: detach them here.
            "awk '{print $5}' /proc/self/mountinfo | sort -r | while read -r m; do",
            "  case $m in /|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/mnt/*) ;;",
            '  *) umount -l "$m" 2>/dev/null || true ;; esac',
            "done",
            "ip link set lo up",
            # The node IP needs an interface that is up; this kernel has veth, not dummy.
            "ip link add node0 type veth peer name node0-peer",
            f"ip addr add {NODE_IP}/24 dev node0",
            f"ip addr add {SERVICE_IP}/32 dev node0",
            "ip link set node0-peer up",
            "ip link set node0 up",
        ]
        for path in OVERLAID:
            layer = self.workdir / "overlay" / path.strip("/").replace("/", "-")
            (layer / "upper").mkdir(parents=True)
            (layer / "work").mkdir()
            lines.append(
                f"mount -t overlay overlay -o lowerdir={path},upperdir={layer}/upper,"
                f"workdir={layer}/work {path}"
            )
        for path, name in BOUND.items():
            source = self.workdir / "root" / name
            source.mkdir(parents=True)
            lines += [f"mkdir -p {path}", f"mount --bind {source} {path}"]
        lines += [f"mount --make-shared {path}" for path in SHARED]
        self.run(["sh", "-c", "\n".join(lines)])

    def host_path(self, path: str) -> Path:
        """Where a bound node path (e.g. /var/lib/lxcfs) lives in the work directory."""
        return self.workdir / "root" / BOUND[path]

    def _write_configs(self) -> None:
        pki = self.workdir / "pki"
        self.ca = ca = CertificateAuthority(pki)
        certs = {
            "apiserver": ca.issue(
                "apiserver",
                "kube-apiserver",
                dns_names=(
                    "localhost",
                    "kubernetes",
                    "kubernetes.default",
                    "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local",
                ),
                ips=("127.0.0.1", SERVICE_IP, NODE_IP),
                server=True,
            ),
            "admin": ca.issue(
                "admin", "kube-lxcfs-test-admin", organizations=("system:masters",), client=True
            ),
            "controller-manager": ca.issue(
                "controller-manager", "system:kube-controller-manager", client=True
            ),
            "scheduler": ca.issue("scheduler", "system:kube-scheduler", client=True),
            "kubelet": ca.issue(
                "kubelet", f"system:node:{NODE_NAME}", organizations=("system:nodes",), client=True
            ),
            "kubelet-serving": ca.issue(
                "kubelet-serving", NODE_NAME, dns_names=(NODE_NAME,), ips=(NODE_IP,), server=True
            ),
            "apiserver-kubelet-client": ca.issue(
                "apiserver-kubelet-client",
                "kube-apiserver-kubelet-client",
                organizations=("system:masters",),
                client=True,
            ),
        }
        self.certs = certs
        self.sa = service_account_key(pki)
        for user in ("admin", "controller-manager", "scheduler", "kubelet"):
            self._write_kubeconfig(user, certs[user])
        (self.workdir / "resolv.conf").write_text("")  # pods resolve nothing outside
        cni = self.workdir / "cni-conf"
        cni.mkdir()
        conflist = {
            "cniVersion": "1.0.0",
            "name": "kube-lxcfs-test",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        # No default route: only the Service range (the API server) and
                        # the node are reachable from a pod.
                        "routes": [{"dst": SERVICE_CIDR}, {"dst": f"{NODE_IP}/32"}],
                    },
                },
                {"type": "loopback"},
            ],
        }
        (cni / "10-kube-lxcfs-test.conflist").write_text(json.dumps(conflist, indent=1))
        self.host_path("/etc/containerd").joinpath("config.toml").write_text(
            containerd_config(self.workdir)
        )
        kubelet = {
            "kind": "KubeletConfiguration",
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "address": NODE_IP,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "tlsCertFile": str(certs["kubelet-serving"].cert),
            "tlsPrivateKeyFile": str(certs["kubelet-serving"].key),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(ca.cert_path)},
            },
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs",
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
            "clusterDomain": "cluster.local",
            "resolvConf": str(self.workdir / "resolv.conf"),
            "registerNode": True,
            "makeIPTablesUtilChains": False,
            # Imported images cannot be pulled again: never garbage-collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "shutdownGracePeriod": "0s",
        }
        (self.workdir / "kubelet.json").write_text(json.dumps(kubelet, indent=1))

    def _write_kubeconfig(self, user: str, identity: Issued) -> Path:
        assert self.ca is not None
        return write_kubeconfig(
            self.workdir / f"{user}.kubeconfig",
            server=SERVER,
            ca_cert=self.ca.cert_path,
            identity=identity,
            user=user,
            cluster="node",
        )

    def _spawn(self, name: str, command: list[str]) -> Process:
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                die_with_parent(self.enter(command)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_child_env(),
                start_new_session=True,
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def restart_containerd(self) -> None:
        """Stop containerd by pid and start it again (running containers keep running)."""
        old = next(p for p in self.processes if p.name == "containerd")
        old.stop()
        self.processes.remove(old)
        new = self._spawn("containerd", ["containerd"])
        wait_until(
            lambda: (
                self._alive_or_raise(new)
                and self.run(["ctr", "version"], check=False).returncode == 0
            ),
            60,
            "containerd after a restart",
        )

    def _alive_or_raise(self, process: Process) -> bool:
        if not process.alive():
            raise NodeError(
                f"{process.name} exited with {process.popen.returncode}:\n{process.log_tail()}"
            )
        return True

    def _start_control_plane(self) -> None:
        w, c = self.workdir, self.certs
        etcd = self._spawn(
            "etcd",
            [
                str(self.binaries["etcd"]),
                "--name=node",
                f"--data-dir={w / 'etcd'}",
                "--listen-client-urls=http://127.0.0.1:2379",
                "--advertise-client-urls=http://127.0.0.1:2379",
                "--listen-peer-urls=http://127.0.0.1:2380",
                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                "--initial-cluster=node=http://127.0.0.1:2380",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.binaries["kube-apiserver"]),
                "--etcd-servers=http://127.0.0.1:2379",
                "--bind-address=0.0.0.0",
                f"--advertise-address={NODE_IP}",
                f"--secure-port={API_PORT}",
                f"--cert-dir={w / 'apiserver-certs'}",
                f"--tls-cert-file={c['apiserver'].cert}",
                f"--tls-private-key-file={c['apiserver'].key}",
                f"--client-ca-file={self.ca.cert_path}",
                f"--kubelet-client-certificate={c['apiserver-kubelet-client'].cert}",
                f"--kubelet-client-key={c['apiserver-kubelet-client'].key}",
                f"--kubelet-certificate-authority={self.ca.cert_path}",
                "--kubelet-preferred-address-types=InternalIP",
                f"--service-account-key-file={self.sa.cert}",
                f"--service-account-signing-key-file={self.sa.key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                f"--enable-admission-plugins={ADMISSION_PLUGINS}",
                "--allow-privileged=true",
                # No kube-proxy: webhook Services are called at their endpoints' pod IPs.
                "--enable-aggregator-routing=true",
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                "--v=1",
            ],
        )

        def ready() -> bool:
            self._alive_or_raise(etcd)
            self._alive_or_raise(apiserver)
            return self.kubectl("get", "--raw=/readyz", check=False).returncode == 0

        self._apiserver_ready = ready

    def _start_node_components(self) -> None:
        w = self.workdir
        wait_until(self._apiserver_ready, 180, "kube-apiserver /readyz", interval=0.3)
        for name, user, port in (
            ("kube-controller-manager", "controller-manager", 10257),
            ("kube-scheduler", "scheduler", 10259),
        ):
            kubeconfig = w / f"{user}.kubeconfig"
            extra = (
                [
                    f"--service-account-private-key-file={self.sa.key}",
                    f"--root-ca-file={self.ca.cert_path}",
                    "--use-service-account-credentials=true",
                    f"--cert-dir={w / 'kcm-certs'}",
                ]
                if user == "controller-manager"
                else []
            )
            self._spawn(
                name,
                [
                    str(self.binaries[name]),
                    f"--kubeconfig={kubeconfig}",
                    f"--authentication-kubeconfig={kubeconfig}",
                    f"--authorization-kubeconfig={kubeconfig}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={port}",
                    "--leader-elect=false",
                    "--profiling=false",
                    "--v=1",
                    *extra,
                ],
            )
        self._spawn(
            "kubelet",
            [
                str(self.binaries["kubelet"]),
                f"--config={w / 'kubelet.json'}",
                f"--kubeconfig={w / 'kubelet.kubeconfig'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                "--v=1",
            ],
        )

    def _node_ready(self) -> bool:
        for process in self.processes:
            self._alive_or_raise(process)
        node = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if node.returncode != 0:
            return False
        conditions = json.loads(node.stdout)["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def import_image(self, archive: Path) -> None:
        self.run(["ctr", "--namespace=k8s.io", "images", "import", str(archive)], timeout=300)

    def stop(self) -> None:
        """Stop everything by pid, drop the namespaces, remove cgroups, restore sysctls."""
        kubelet = [p for p in self.processes if p.name == "kubelet"]
        for process in kubelet:
            process.stop()
        _kill(pids_in_pod_cgroups())  # the pods' processes (their shims notice and exit)
        while self.processes:
            self.processes.pop().stop()
        if self.holder is not None:
            for inode in self.namespaces:  # shims and anything else started inside
                _kill(pids_in_namespace(inode) - {self.holder.pid})
            self.holder.kill()
            self.holder.wait()
        remove_pod_cgroups()
        if self.sysctls:
            restore_sysctls(self.sysctls)
        wait_until(
            lambda: not any(pids_in_namespace(i) for i in self.namespaces),
            30,
            "every process of the node to exit",
        )
        # The image store is large and of no use afterwards; the logs stay for a look.
        shutil.rmtree(self.host_path("/var/lib/containerd"), ignore_errors=True)
        (STATE_DIR / "state.json").unlink(missing_ok=True)
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock
            self._lock_file = None


def containerd_config(workdir: Path) -> str:
    """containerd's config for the node (at its default path, /etc/containerd/config.toml)."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "{CONTAINERD_SOCKET}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{workdir}/opt"
[{cri}]
  sandbox_image = "{images.PAUSE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  # This machine withholds CAP_SYS_RESOURCE: runc could not lower oom_score_adj below 0.
  restrict_oom_score_adj = true
  # hugetlb is only on the cgroup2 mount of this hybrid host.
  disable_hugetlb_controller = true
  tolerate_missing_hugetlb_controller = true
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{workdir}/cni-conf"
    max_conf_num = 1
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
"""

"""The ``kube-lxcfs webhook`` subcommand: flags (each with an env var) → the webhook server."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kube_lxcfs.commands._options import (
    LOG_FORMATS,
    LOG_LEVELS,
    comma_list,
    configure_logging,
    fail,
    port,
    positive_int,
    positive_seconds,
    seconds,
)

if TYPE_CHECKING:
    from kube_lxcfs.deploy.selfprovision import Watcher
    from kube_lxcfs.webhook.options import ServerOptions

HELP = "Serve the mutating admission webhook that injects the virtual files into pods."

DESCRIPTION = """\
Serve the mutating admission webhook (POST /mutate, admission.k8s.io v1 and v1beta1) that
bind-mounts the node's virtual /proc and /sys files (hostPath volumes from --mount-dir) read-only
into every container and init container of the pods the API server sends it, or, with
--inject-mode runtimeclass, sets their runtimeClassName so that the node's runtime wrapper does
it (no hostPath volumes: admissible under Pod Security baseline/restricted). Namespace selection
is done by the webhook configuration (namespaceSelector lxcfs-admission-webhook=enabled); pods opt
out with the annotation kube-lxcfs.io/inject: "false" (or the seed's
lxcfs-admission-webhook.aliyun.com/mutate: "false"). Injected pods get the annotation
kube-lxcfs.io/status: injected | partial | conflict.

/healthz, /readyz and /metrics (Prometheus) are served over plain HTTP on --health-port.
Every option can also be set by the environment variable shown with it; a flag wins over its
variable (a bad value in a variable is an error only when its flag is not given). A value of the
form tcp://HOST:PORT in KUBE_LXCFS_WEBHOOK_PORT is the service link the kubelet injects for a
Service named kube-lxcfs-webhook, and is ignored. SIGTERM stops gracefully (readiness fails,
in-flight requests finish)."""

ENV_PREFIX = "KUBE_LXCFS_WEBHOOK_"
SERVICE_LINK = re.compile(r"(tcp|udp|sctp)://\S+:\d+")
"""What the kubelet puts in ``<SERVICE>_PORT`` for every Service of the pod's namespace."""
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def _env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


def _bool_word(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _server_default(name: str) -> Any:
    """The default of a :class:`~kube_lxcfs.webhook.options.ServerOptions` field."""
    from kube_lxcfs.webhook.options import ServerOptions

    return {f.name: f.default for f in fields(ServerOptions)}[name]


@dataclass(frozen=True)
class EnvError:
    """A bad value in an option's variable; kept as the option's default, so a flag hides it.

    Not a ``str``: argparse would run a string default through the option's type.
    """

    message: str

    def __str__(self) -> str:
        return self.message


def _add(
    group: argparse._ArgumentGroup,
    flag: str,
    *,
    help: str,
    default: Any = None,
    convert: Callable[[str], Any] = str,
    shown_default: str | None = None,
    **kwargs: Any,
) -> None:
    """Add ``flag`` whose default comes from its env var, and say so in ``--help``.

    ``convert`` parses the variable, and the flag's value too unless an ``action`` or a
    ``type`` is given.
    """
    if convert is not str and "action" not in kwargs:
        kwargs.setdefault("type", convert)
    env = _env_name(flag)
    raw = os.environ.get(env)
    value = default
    if convert is port and raw is not None and SERVICE_LINK.fullmatch(raw):
        raw = None  # a Kubernetes service link, not our setting
    if raw is not None and raw != "":
        try:
            value = convert(raw)
            if "choices" in kwargs and value not in kwargs["choices"]:
                choices = ", ".join(kwargs["choices"])
                raise argparse.ArgumentTypeError(f"{raw!r} is not one of {choices}")
        except argparse.ArgumentTypeError as exc:
            value = EnvError(f"{env}: {exc}")
    shown = shown_default if shown_default is not None else default
    suffix = f" [env {env}" + (f"; default: {shown}]" if shown not in (None, "") else "]")
    group.add_argument(flag, default=value, help=help + suffix, **kwargs)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``webhook`` subcommand."""
    parser = subparsers.add_parser(
        "webhook",
        help=HELP,
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(_add, parser)
    # A bad environment value is reported only when this subcommand runs (see EnvError).
    parser.set_defaults(handler=run)


def _add_arguments(_add: Callable[..., None], parser: argparse.ArgumentParser) -> None:
    from kube_lxcfs.defaults import MOUNT_DIR as mount_dir
    from kube_lxcfs.webhook.config import (
        DEFAULT_EXCLUDED_NAMESPACES as namespaces,
    )
    from kube_lxcfs.webhook.config import (
        DEFAULT_FILES as files,
    )
    from kube_lxcfs.webhook.config import DEFAULT_RUNTIME_CLASS as runtime_class
    from kube_lxcfs.webhook.config import (
        DEFAULT_SKIP_POD_LABELS as skip_labels,
    )
    from kube_lxcfs.webhook.config import INJECT_MODES as modes

    tls = parser.add_argument_group("TLS and listeners")
    _add(
        tls,
        "--tls-cert",
        help="PEM certificate chain served on the HTTPS port (required)",
        metavar="FILE",
        convert=str,
    )
    _add(
        tls,
        "--tls-key",
        help="PEM private key of --tls-cert (required)",
        metavar="FILE",
        convert=str,
    )
    _add(
        tls,
        "--tls-min-version",
        help="lowest TLS version accepted",
        default=_server_default("tls_min_version"),
        choices=("1.2", "1.3"),
        convert=str,
    )
    _add(
        tls,
        "--tls-reload-interval",
        convert=positive_seconds,
        default=_server_default("tls_reload_interval"),
        metavar="SECONDS",
        help="how often the cert/key files are checked for changes",
    )
    _add(
        tls,
        "--address",
        default=_server_default("address"),
        metavar="IP",
        convert=str,
        help="address both listeners bind to (:: for IPv6 and IPv4)",
    )
    _add(
        tls,
        "--port",
        convert=port,
        default=_server_default("port"),
        help="HTTPS port serving POST /mutate",
    )
    _add(
        tls,
        "--health-port",
        convert=port,
        default=_server_default("health_port"),
        help="plain-HTTP port serving /healthz, /readyz and /metrics",
    )

    inject = parser.add_argument_group("what is injected")
    _add(
        inject,
        "--mount-dir",
        default=mount_dir,
        metavar="DIR",
        convert=str,
        help="node directory where the kube-lxcfs filesystem is mounted (hostPath source)",
    )
    _add(
        inject,
        "--files",
        convert=comma_list,
        default=list(files),
        shown_default=",".join(files),
        metavar="LIST",
        help="comma-separated paths under --mount-dir to mount at the same path in containers;"
        " a trailing / marks a directory (hostPath type Directory, else File)",
    )
    _add(
        inject,
        "--inject-init-containers",
        action=argparse.BooleanOptionalAction,
        convert=_bool_word,
        default=True,
        help="also inject plain init containers (native sidecars, restartPolicy Always, are"
        " always injected)",
    )

    _add(
        inject,
        "--inject-mode",
        default=modes[0],
        choices=modes,
        convert=str.lower,
        help="hostpath: add hostPath volumes and mounts of the files (needs a privileged-level"
        " namespace); runtimeclass: set spec.runtimeClassName to --runtime-class-name and add"
        " no volume: the node's kube-lxcfs-runc wrapper adds the files and sysinfo(2), and the"
        " pod passes Pod Security baseline/restricted (docs/runtime.md)",
    )
    _add(
        inject,
        "--runtime-class-name",
        default=runtime_class,
        metavar="NAME",
        convert=str,
        help="RuntimeClass set by --inject-mode runtimeclass (pods naming another class keep it)",
    )

    select = parser.add_argument_group("which pods are left alone")
    _add(
        select,
        "--exclude-namespaces",
        convert=comma_list,
        default=list(namespaces),
        shown_default=",".join(namespaces),
        metavar="LIST",
        help="comma-separated namespaces never mutated, whatever the configuration sends",
    )
    _add(
        select,
        "--namespace",
        default="",
        metavar="NS",
        convert=str,
        help="the webhook's own namespace, never mutated (set it from the downward API)",
    )
    _add(
        select,
        "--skip-pod-labels",
        convert=comma_list,
        default=list(skip_labels),
        shown_default=",".join(skip_labels),
        metavar="LIST",
        help="comma-separated KEY=VALUE (or KEY) labels of kube-lxcfs's own pods, never mutated",
    )

    certs = parser.add_argument_group(
        "self-provisioned certificate (in-cluster; the default manifests use it)"
    )
    _add(
        certs,
        "--self-provision-secret",
        default="",
        metavar="NAME",
        convert=str,
        help="create (if absent) and renew a CA/serving-certificate Secret NAME in --namespace,"
        " write its tls.crt/tls.key to the directory of --tls-cert/--tls-key and keep the"
        " caBundle of --webhook-config in sync; needs the in-cluster service account",
    )
    _add(
        certs,
        "--webhook-config",
        default="kube-lxcfs-webhook",
        metavar="NAME",
        convert=str,
        help="MutatingWebhookConfiguration whose caBundle --self-provision-secret maintains",
    )
    _add(
        certs,
        "--webhook-service",
        default="kube-lxcfs-webhook",
        metavar="NAME",
        convert=str,
        help="Service name the self-provisioned certificate is issued for (NAME.NS.svc, ...)",
    )

    ops = parser.add_argument_group("operation")
    _add(
        ops,
        "--log-level",
        default="info",
        choices=LOG_LEVELS,
        convert=str.lower,
        help="lowest level logged on stderr (debug logs one line per admission)",
    )
    _add(
        ops,
        "--log-format",
        default="json",
        choices=LOG_FORMATS,
        convert=str.lower,
        help="one JSON object per line (for log collectors), or text lines",
    )
    _add(
        ops,
        "--workers",
        convert=positive_int,
        default=None,
        shown_default="the CPUs usable (affinity, cgroup CPU quota), at most 4",
        metavar="N",
        help="processes serving the HTTPS port; more than 1 adds a supervisor that restarts"
        " them and sums their metrics",
    )
    _add(
        ops,
        "--max-body-bytes",
        convert=positive_int,
        default=_server_default("max_body_bytes"),
        metavar="BYTES",
        help="larger request bodies are refused with HTTP 413",
    )
    _add(
        ops,
        "--max-connections",
        convert=positive_int,
        default=_server_default("max_connections"),
        metavar="N",
        help="open HTTPS connections at most per worker; more are closed at once",
    )
    _add(
        ops,
        "--idle-timeout",
        convert=seconds,
        default=_server_default("idle_timeout"),
        metavar="SECONDS",
        help="close keep-alive connections idle this long",
    )
    _add(
        ops,
        "--shutdown-grace",
        convert=seconds,
        default=_server_default("shutdown_grace"),
        metavar="SECONDS",
        help="on SIGTERM, wait at most this long for in-flight requests",
    )
    _add(
        ops,
        "--shutdown-delay",
        convert=seconds,
        default=_server_default("shutdown_delay"),
        metavar="SECONDS",
        help="on SIGTERM, fail /readyz and keep serving this long before closing the listener",
    )


def _fail(message: str) -> int:
    return fail("webhook", message)


class _ProvisionError(Exception):
    """Self-provisioning cannot start; the message is for the user."""


def run(args: argparse.Namespace) -> int:
    """Check the options, then serve until SIGTERM."""
    from kube_lxcfs.webhook.config import ConfigError, make_options
    from kube_lxcfs.webhook.options import ServerOptions
    from kube_lxcfs.webhook.server import WebhookServer, serve_until_signalled
    from kube_lxcfs.webhook.tls import TlsLoadError
    from kube_lxcfs.webhook.workers import default_workers

    env_errors = [value for value in vars(args).values() if isinstance(value, EnvError)]
    if env_errors:
        return _fail(str(env_errors[0]))
    watcher = None
    if args.self_provision_secret:
        try:
            watcher = _self_provision(args)
        except _ProvisionError as exc:
            return _fail(str(exc))
    for flag, value in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if not value:
            return _fail(f"{flag} is required (or set {_env_name(flag)})")
        if not Path(value).is_file():
            return _fail(f"{flag} {value}: no such file")
    try:
        inject = make_options(
            mount_dir=args.mount_dir,
            files=args.files,
            excluded_namespaces=args.exclude_namespaces,
            own_namespace=args.namespace or None,
            inject_init_containers=args.inject_init_containers,
            skip_pod_labels=args.skip_pod_labels,
            mode=args.inject_mode,
            runtime_class_name=args.runtime_class_name,
        )
    except ConfigError as exc:
        return _fail(str(exc))
    options = ServerOptions(
        cert_file=Path(args.tls_cert),
        key_file=Path(args.tls_key),
        address=args.address,
        port=args.port,
        health_port=args.health_port,
        tls_min_version=args.tls_min_version,
        tls_reload_interval=args.tls_reload_interval,
        max_body_bytes=args.max_body_bytes,
        max_connections=args.max_connections,
        idle_timeout=args.idle_timeout,
        shutdown_grace=args.shutdown_grace,
        shutdown_delay=args.shutdown_delay,
        inject=inject,
    )
    configure_logging(args)
    workers = args.workers or default_workers()
    if workers > 1:
        try:
            return _supervise(options, args, workers)
        finally:
            if watcher is not None:
                watcher.stop()
    from kube_lxcfs.webhook.workers import limit_malloc_arenas

    limit_malloc_arenas()
    try:
        server = WebhookServer(options)
    except TlsLoadError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot listen on {args.address} ports {args.port}/{args.health_port}: {exc}")
    try:
        return serve_until_signalled(server)
    finally:
        if watcher is not None:
            watcher.stop()


def _supervise(options: ServerOptions, args: argparse.Namespace, workers: int) -> int:
    """Serve with ``workers`` processes under one supervisor."""
    from kube_lxcfs.webhook.tls import TlsLoadError
    from kube_lxcfs.webhook.workers import Supervisor

    try:
        supervisor = Supervisor(
            options,
            workers,
            log_level=args.log_level,
            log_format=args.log_format,
        )
    except TlsLoadError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot listen on {args.address} ports {args.port}/{args.health_port}: {exc}")
    return supervisor.run()


def _self_provision(args: argparse.Namespace) -> Watcher:
    """Provision the serving certificate from the cluster; the watcher that keeps it fresh."""
    from kube_lxcfs.deploy.kubeapi import ApiError
    from kube_lxcfs.deploy.selfprovision import start

    if not args.namespace:
        raise _ProvisionError(
            "--self-provision-secret needs --namespace (set it from the downward API)"
        )
    if not args.tls_cert or not args.tls_key:
        raise _ProvisionError(
            "--self-provision-secret needs --tls-cert and --tls-key (where to write them)"
        )
    cert, key = Path(args.tls_cert), Path(args.tls_key)
    if (cert.name, key.name) != ("tls.crt", "tls.key") or cert.parent != key.parent:
        raise _ProvisionError(
            "--self-provision-secret writes DIR/tls.crt and DIR/tls.key: point both there"
        )
    try:
        return start(
            namespace=args.namespace,
            secret_name=args.self_provision_secret,
            webhook_config=args.webhook_config,
            service=args.webhook_service,
            cert_dir=cert.parent,
        )
    except (ApiError, OSError, ValueError) as exc:
        raise _ProvisionError(f"self-provisioning the certificate failed: {exc}") from exc

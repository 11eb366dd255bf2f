"""Every Kubernetes object of a kube-lxcfs deployment, written once.

This module is the single source of truth: ``kube-lxcfs manifests``/``install``
evaluate these trees with a values dict, and the Helm chart's templates are
generated from the very same trees (see ``template.py``). Names are fixed so that
the Service the API server calls is ``kube-lxcfs-webhook.<namespace>.svc``.
"""

from __future__ import annotations

from typing import Any

from kube_lxcfs import __version__
from kube_lxcfs.defaults import INJECT_KEY, STATE_DIR, TLS_DIR
from kube_lxcfs.deploy.template import OMIT, Eq, Fmt, If, Join, Not, Ref, Splice, Truthy
from kube_lxcfs.deploy.values import NAME, NAMESPACE_LABEL
from kube_lxcfs.runtime.install import HANDLER

AGENT = f"{NAME}-agent"
WEBHOOK = f"{NAME}-webhook"
WEBHOOK_CONFIG = WEBHOOK
HEALTH_PORT_NAME = "health"
PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# Our own pods must never be mutated (the install namespace is excluded too).
NO_INJECT = {INJECT_KEY: "false"}

NS = Ref("namespace")
SELF_PROVISION = Not(Truthy("certManager.enabled"))
RUNTIME_CLASS_MODE = Eq("injection.mode", "runtimeClass")
# What `kube-lxcfs setup-node` registers with containerd / CRI-O.
RUNTIME_HANDLER = HANDLER
HOST_ROOT = "/host"


def _when_setup_node(node: Any) -> If:
    """``node`` only when the agent installs the runtime wrapper on its node."""
    return If(Truthy("runtimeClass.enabled"), If(Truthy("runtimeClass.setupNode"), node))


def labels(component: str) -> dict[str, Any]:
    """The recommended ``app.kubernetes.io`` labels of one component."""
    return {
        "app.kubernetes.io/name": NAME,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": NAME,
        "app.kubernetes.io/version": __version__,
    }


def selector(component: str) -> dict[str, Any]:
    """The stable subset of ``labels`` that selectors use (never the version)."""
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": component}


def meta(name: Any, component: str, *, namespaced: bool = True, **extra: Any) -> dict[str, Any]:
    """Object metadata: name, namespace when namespaced, labels."""
    out: dict[str, Any] = {"name": name}
    if namespaced:
        out["namespace"] = NS
    out["labels"] = labels(component)
    out.update(extra)
    return out


def _image(prefix: str) -> Fmt:
    return Fmt("%s:%s", Ref(f"{prefix}.image.repository"), Ref(f"{prefix}.image.tag"))


def namespace() -> Any:
    """The install namespace, allowed to run the privileged node agent."""
    return If(
        Truthy("createNamespace"),
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": NS,
                "labels": {
                    **labels("namespace"),
                    PSA_ENFORCE: "privileged",
                    "pod-security.kubernetes.io/warn": "privileged",
                    "pod-security.kubernetes.io/audit": "privileged",
                },
            },
        },
    )


def service_accounts() -> list[Any]:
    """One ServiceAccount per component; the agent needs no API access at all."""
    agent = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta(AGENT, "node-agent", annotations=Ref("serviceAccount.annotations")),
        "automountServiceAccountToken": False,
    }
    webhook = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta(WEBHOOK, "webhook", annotations=Ref("serviceAccount.annotations")),
        "automountServiceAccountToken": If(SELF_PROVISION, True, False),
    }
    return [
        If(Truthy("serviceAccount.create"), agent),
        If(Truthy("serviceAccount.create"), webhook),
    ]


def rbac() -> list[Any]:
    """Least privilege for self-provisioning: one Secret, one webhook configuration.

    RBAC cannot limit ``create`` by name (the name is not known when it is
    authorised), so creating Secrets is allowed in the install namespace only;
    reading and updating is limited to the one Secret by ``resourceNames``.
    """
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": meta(WEBHOOK, "webhook"),
        "rules": [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": [Ref("webhook.tlsSecretName")],
                "verbs": ["get", "update", "patch"],
            },
        ],
    }
    role_binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta(WEBHOOK, "webhook"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": WEBHOOK},
        "subjects": [{"kind": "ServiceAccount", "name": WEBHOOK, "namespace": NS}],
    }
    cluster_role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": meta(WEBHOOK, "webhook", namespaced=False),
        "rules": [
            {
                "apiGroups": ["admissionregistration.k8s.io"],
                "resources": ["mutatingwebhookconfigurations"],
                "resourceNames": [WEBHOOK_CONFIG],
                "verbs": ["get", "update", "patch"],
            }
        ],
    }
    cluster_role_binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": meta(WEBHOOK, "webhook", namespaced=False),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": WEBHOOK,
        },
        "subjects": [{"kind": "ServiceAccount", "name": WEBHOOK, "namespace": NS}],
    }
    return [
        If(SELF_PROVISION, obj) for obj in (role, role_binding, cluster_role, cluster_role_binding)
    ]


def daemonset() -> dict[str, Any]:
    """The node agent: the FUSE filesystem on every node, propagated to the host."""
    mount_dir = Ref("mountDir")
    metrics = Truthy("nodeAgent.metrics.enabled")
    probe_timing = {"periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}
    container = {
        "name": "fs",
        "image": _image("nodeAgent"),
        "imagePullPolicy": Ref("nodeAgent.image.pullPolicy"),
        "command": ["kube-lxcfs", "fs"],
        "args": [
            If(metrics, Fmt("--metrics-address=:%s", Ref("nodeAgent.metrics.port"))),
            If(
                metrics,
                Fmt("--health-deadline=%s", Ref("nodeAgent.metrics.healthDeadlineSeconds")),
            ),
            mount_dir,
            Splice(Ref("nodeAgent.extraArgs")),
        ],
        "securityContext": {"privileged": True, "readOnlyRootFilesystem": True},
        "resources": Ref("nodeAgent.resources"),
        "ports": If(
            metrics,
            [
                {
                    "name": "metrics",
                    "containerPort": Ref("nodeAgent.metrics.port"),
                    "protocol": "TCP",
                }
            ],
        ),
        # Ready when the filesystem is mounted and renders the agent's own cgroup (without
        # metrics: when a read through the mount answers).
        "readinessProbe": If(
            metrics,
            {"httpGet": {"path": "/readyz", "port": "metrics"}, **probe_timing},
            {"exec": {"command": ["cat", Fmt("%s/proc/meminfo", mount_dir)]}, **probe_timing},
        ),
        # Restarted when the request loop hangs (every pod's reads block): the new agent
        # mounts afresh and repairs the running pods' bind mounts (docs/operations.md).
        "livenessProbe": If(
            metrics, {"httpGet": {"path": "/healthz", "port": "metrics"}, **probe_timing}
        ),
        "volumeMounts": [
            {"name": "fuse", "mountPath": "/dev/fuse"},
            {"name": "cgroup", "mountPath": "/sys/fs/cgroup", "readOnly": True},
            {"name": "mount-dir", "mountPath": mount_dir, "mountPropagation": "Bidirectional"},
            {"name": "run", "mountPath": STATE_DIR},
        ],
    }
    # Installs kube-lxcfs-runc on the host and registers the RuntimeClass handler. A node that
    # cannot (no python3 >= 3.10, unknown runtime) is reported in this container's log and the
    # agent starts anyway: hostPath injection keeps working there.
    setup_node = {
        "name": "setup-node",
        "image": _image("nodeAgent"),
        "imagePullPolicy": Ref("nodeAgent.image.pullPolicy"),
        "command": ["kube-lxcfs", "setup-node"],
        "args": [f"--host-root={HOST_ROOT}", "--best-effort"],
        "securityContext": {"privileged": True},
        "resources": Ref("nodeAgent.resources"),
        "volumeMounts": [{"name": "host", "mountPath": HOST_ROOT}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": meta(AGENT, "node-agent"),
        "spec": {
            "selector": {"matchLabels": selector("node-agent")},
            "updateStrategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxUnavailable": Ref("nodeAgent.maxUnavailable"),
                    "maxSurge": Ref("nodeAgent.maxSurge"),
                },
            },
            "template": {
                "metadata": {"labels": labels("node-agent"), "annotations": dict(NO_INJECT)},
                "spec": {
                    "serviceAccountName": AGENT,
                    "automountServiceAccountToken": False,
                    # no <SERVICE>_PORT=tcp://... variables: they collide with our options' names
                    "enableServiceLinks": False,
                    "hostPID": True,
                    "priorityClassName": Ref("nodeAgent.priorityClassName"),
                    "nodeSelector": Ref("nodeAgent.nodeSelector"),
                    "tolerations": Ref("nodeAgent.tolerations"),
                    "affinity": Ref("nodeAgent.affinity"),
                    "imagePullSecrets": Ref("imagePullSecrets"),
                    "terminationGracePeriodSeconds": 30,
                    "initContainers": _when_setup_node([setup_node]),
                    "containers": [container],
                    "volumes": [
                        {"name": "fuse", "hostPath": {"path": "/dev/fuse", "type": "CharDevice"}},
                        {
                            "name": "cgroup",
                            "hostPath": {"path": "/sys/fs/cgroup", "type": "Directory"},
                        },
                        {
                            "name": "mount-dir",
                            "hostPath": {"path": mount_dir, "type": "DirectoryOrCreate"},
                        },
                        # --state-dir: the repair records must outlive the agent pod.
                        {
                            "name": "run",
                            "hostPath": {"path": STATE_DIR, "type": "DirectoryOrCreate"},
                        },
                        _when_setup_node(
                            {"name": "host", "hostPath": {"path": "/", "type": "Directory"}}
                        ),
                    ],
                },
            },
        },
    }


def _webhook_args() -> list[Any]:
    return [
        Fmt("--port=%s", Ref("webhook.port")),
        Fmt("--health-port=%s", Ref("webhook.healthPort")),
        Fmt("--tls-cert=%s/tls.crt", TLS_DIR),
        Fmt("--tls-key=%s/tls.key", TLS_DIR),
        Fmt("--mount-dir=%s", Ref("mountDir")),
        Fmt("--files=%s", Join(",", Ref("injectedFiles"))),
        Fmt("--log-level=%s", Ref("webhook.logLevel")),
        If(Truthy("webhook.workers"), Fmt("--workers=%s", Ref("webhook.workers"))),
        Fmt("--inject-mode=%s", Ref("injection.mode")),
        If(RUNTIME_CLASS_MODE, Fmt("--runtime-class-name=%s", Ref("runtimeClass.name"))),
        If(SELF_PROVISION, Fmt("--self-provision-secret=%s", Ref("webhook.tlsSecretName"))),
        If(SELF_PROVISION, Fmt("--webhook-config=%s", WEBHOOK_CONFIG)),
        If(SELF_PROVISION, Fmt("--webhook-service=%s", WEBHOOK)),
        Splice(Ref("webhook.extraArgs")),
    ]


def deployment() -> dict[str, Any]:
    """The webhook: two stateless replicas, restricted-compliant."""
    container = {
        "name": "webhook",
        "image": _image("webhook"),
        "imagePullPolicy": Ref("webhook.image.pullPolicy"),
        "command": ["kube-lxcfs", "webhook"],
        "args": _webhook_args(),
        "env": [
            {
                "name": "KUBE_LXCFS_WEBHOOK_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            }
        ],
        "ports": [
            {"name": "https", "containerPort": Ref("webhook.port"), "protocol": "TCP"},
            {
                "name": HEALTH_PORT_NAME,
                "containerPort": Ref("webhook.healthPort"),
                "protocol": "TCP",
            },
        ],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": HEALTH_PORT_NAME},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": HEALTH_PORT_NAME},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "resources": Ref("webhook.resources"),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "tls", "mountPath": TLS_DIR, "readOnly": If(SELF_PROVISION, False, True)}
        ],
    }
    tls_volume = If(
        SELF_PROVISION,
        {"name": "tls", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {"name": "tls", "secret": {"secretName": Ref("webhook.tlsSecretName")}},
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(WEBHOOK, "webhook"),
        "spec": {
            "replicas": Ref("webhook.replicaCount"),
            "selector": {"matchLabels": selector("webhook")},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": labels("webhook"), "annotations": dict(NO_INJECT)},
                "spec": {
                    "serviceAccountName": WEBHOOK,
                    "automountServiceAccountToken": If(SELF_PROVISION, True, False),
                    # no <SERVICE>_PORT=tcp://... variables: they collide with our options' names
                    "enableServiceLinks": False,
                    "priorityClassName": Ref("webhook.priorityClassName"),
                    "nodeSelector": Ref("webhook.nodeSelector"),
                    "tolerations": Ref("webhook.tolerations"),
                    "affinity": Ref("webhook.affinity"),
                    "imagePullSecrets": Ref("imagePullSecrets"),
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "fsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector("webhook")},
                        },
                        {
                            "maxSkew": 1,
                            "topologyKey": "topology.kubernetes.io/zone",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector("webhook")},
                        },
                    ],
                    "containers": [container],
                    "volumes": [tls_volume],
                },
            },
        },
    }


def service() -> dict[str, Any]:
    """The Service the API server calls (443 → https) and Prometheus scrapes (health)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(WEBHOOK, "webhook"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector("webhook"),
            "ports": [
                {
                    "name": "https",
                    "port": Ref("service.port"),
                    "targetPort": "https",
                    "protocol": "TCP",
                },
                {
                    "name": "metrics",
                    "port": Ref("webhook.healthPort"),
                    "targetPort": HEALTH_PORT_NAME,
                    "protocol": "TCP",
                },
            ],
        },
    }


def pod_disruption_budget() -> dict[str, Any]:
    """Keep one webhook replica through node drains."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(WEBHOOK, "webhook"),
        "spec": {
            "minAvailable": Ref("webhook.podDisruptionBudget.minAvailable"),
            "selector": {"matchLabels": selector("webhook")},
        },
    }


def _namespace_guard(*, opted_in: bool) -> list[Any]:
    """Namespaces where injection is possible: not PSA-hardened, not our own."""
    return [
        {
            "key": NAMESPACE_LABEL,
            "operator": "In" if opted_in else "NotIn",
            "values": ["enabled"],
        },
        # Injected hostPath volumes are rejected where baseline/restricted is enforced; a
        # runtimeClassName is not, so runtimeClass mode serves those namespaces too.
        If(
            Not(RUNTIME_CLASS_MODE),
            {"key": PSA_ENFORCE, "operator": "NotIn", "values": ["baseline", "restricted"]},
        ),
        {"key": NAMESPACE_NAME_LABEL, "operator": "NotIn", "values": [NS]},
    ]


def _webhook_entry(name: str, path: str, namespace_rules: list[Any], object_selector: Any) -> Any:
    return {
        "name": name,
        "admissionReviewVersions": ["v1", "v1beta1"],
        "sideEffects": "None",
        "failurePolicy": Ref("webhook.failurePolicy"),
        "timeoutSeconds": Ref("webhook.timeoutSeconds"),
        "reinvocationPolicy": Ref("webhook.reinvocationPolicy"),
        "matchPolicy": "Equivalent",
        "clientConfig": {
            "service": {
                "name": WEBHOOK,
                "namespace": NS,
                "path": path,
                "port": Ref("service.port"),
            }
        },
        "rules": [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ],
        "namespaceSelector": {"matchExpressions": namespace_rules},
        "objectSelector": object_selector,
    }


def mutating_webhook_configuration() -> dict[str, Any]:
    """Route pod creations of opted-in namespaces (and opted-in pods) to the webhook.

    The caBundle is filled in at run time: by the webhook itself (self-provisioning)
    or by cert-manager's CA injector (``certManager.enabled``).
    """
    annotations = If(
        Truthy("certManager.enabled"),
        {"cert-manager.io/inject-ca-from": Fmt("%s/%s", NS, WEBHOOK)},
    )
    by_namespace = _webhook_entry(
        "namespaces.kube-lxcfs.io",
        "/mutate",
        _namespace_guard(opted_in=True),
        {"matchExpressions": [{"key": INJECT_KEY, "operator": "NotIn", "values": ["false"]}]},
    )
    by_pod = _webhook_entry(
        "pods.kube-lxcfs.io",
        "/mutate",
        _namespace_guard(opted_in=False),
        {"matchLabels": {INJECT_KEY: "true"}},
    )
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": meta(WEBHOOK_CONFIG, "webhook", namespaced=False, annotations=annotations),
        "webhooks": [by_namespace, If(Truthy("webhook.podOptIn"), by_pod)],
    }


def runtime_class() -> Any:
    """The RuntimeClass whose handler runs containers through kube-lxcfs-runc (docs/runtime.md)."""
    scheduling = If(
        Truthy("runtimeClass.nodeSelector"),
        {"nodeSelector": Ref("runtimeClass.nodeSelector")},
    )
    return If(
        Truthy("runtimeClass.enabled"),
        {
            "apiVersion": "node.k8s.io/v1",
            "kind": "RuntimeClass",
            "metadata": meta(Ref("runtimeClass.name"), "runtime", namespaced=False),
            "handler": RUNTIME_HANDLER,
            "scheduling": scheduling,
        },
    )


def cert_manager() -> list[Any]:
    """cert-manager alternative: a self-signed CA issuing the serving certificate."""
    enabled = Truthy("certManager.enabled")
    self_signed = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": meta(f"{NAME}-selfsigned", "webhook"),
        "spec": {"selfSigned": {}},
    }
    ca_cert = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": meta(f"{NAME}-ca", "webhook"),
        "spec": {
            "isCA": True,
            "commonName": f"{NAME}-ca",
            "secretName": f"{NAME}-ca",
            "duration": "87600h",
            "privateKey": {"algorithm": "ECDSA", "size": 256},
            "issuerRef": {"name": f"{NAME}-selfsigned", "kind": "Issuer"},
        },
    }
    ca_issuer = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": meta(f"{NAME}-ca", "webhook"),
        "spec": {"ca": {"secretName": f"{NAME}-ca"}},
    }
    serving = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": meta(WEBHOOK, "webhook"),
        "spec": {
            "secretName": Ref("webhook.tlsSecretName"),
            "duration": "8760h",
            "renewBefore": "720h",
            "dnsNames": [
                WEBHOOK,
                Fmt("%s.%s", WEBHOOK, NS),
                Fmt("%s.%s.svc", WEBHOOK, NS),
                Fmt("%s.%s.svc.cluster.local", WEBHOOK, NS),
            ],
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "usages": ["server auth", "digital signature"],
            "issuerRef": {"name": f"{NAME}-ca", "kind": "Issuer"},
        },
    }
    return [If(enabled, obj) for obj in (self_signed, ca_cert, ca_issuer, serving)]


def service_monitor() -> Any:
    """Prometheus Operator scrape config for the webhook's /metrics (optional)."""
    return If(
        Truthy("serviceMonitor.enabled"),
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": meta(WEBHOOK, "webhook", labels=Ref("serviceMonitor.labels")),
            "spec": {
                "selector": {"matchLabels": selector("webhook")},
                "namespaceSelector": {"matchNames": [NS]},
                "endpoints": [
                    {
                        "port": "metrics",
                        "path": "/metrics",
                        "scheme": "http",
                        "interval": Ref("serviceMonitor.interval"),
                    }
                ],
            },
        },
    )


def pod_monitor() -> Any:
    """Prometheus Operator scrape config for the node agents' /metrics (optional)."""
    return If(
        Truthy("podMonitor.enabled"),
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PodMonitor",
            "metadata": meta(AGENT, "node-agent", labels=Ref("podMonitor.labels")),
            "spec": {
                "selector": {"matchLabels": selector("node-agent")},
                "namespaceSelector": {"matchNames": [NS]},
                "podMetricsEndpoints": [
                    {
                        "port": "metrics",
                        "path": "/metrics",
                        "scheme": "http",
                        "interval": Ref("podMonitor.interval"),
                    }
                ],
            },
        },
    )


# (template file name, object tree) in apply order: namespace first, webhook
# configuration last, so the webhook exists before the API server routes to it.
def templates() -> list[tuple[str, Any]]:
    """Every object tree with the chart template file it is generated into."""
    sa_agent, sa_webhook = service_accounts()
    role, role_binding, cluster_role, cluster_role_binding = rbac()
    issuer, ca_cert, ca_issuer, serving = cert_manager()
    return [
        ("namespace.yaml", namespace()),
        ("serviceaccount-agent.yaml", sa_agent),
        ("serviceaccount-webhook.yaml", sa_webhook),
        ("role.yaml", role),
        ("rolebinding.yaml", role_binding),
        ("clusterrole.yaml", cluster_role),
        ("clusterrolebinding.yaml", cluster_role_binding),
        ("certmanager-selfsigned-issuer.yaml", issuer),
        ("certmanager-ca-certificate.yaml", ca_cert),
        ("certmanager-ca-issuer.yaml", ca_issuer),
        ("certmanager-serving-certificate.yaml", serving),
        ("runtimeclass.yaml", runtime_class()),
        ("daemonset.yaml", daemonset()),
        ("service.yaml", service()),
        ("deployment.yaml", deployment()),
        ("poddisruptionbudget.yaml", pod_disruption_budget()),
        ("servicemonitor.yaml", service_monitor()),
        ("podmonitor.yaml", pod_monitor()),
        ("mutatingwebhookconfiguration.yaml", mutating_webhook_configuration()),
    ]


__all__ = ["OMIT", "templates"]

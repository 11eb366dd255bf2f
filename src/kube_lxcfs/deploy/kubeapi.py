"""A thin REST layer over the official ``kubernetes`` client.

The client gives us kubeconfig/in-cluster loading, authentication and TLS; the
objects we manage are plain dicts (the same ones ``manifests`` prints), so we
address them by URL instead of through the generated typed APIs, which would
round-trip them through models and cover no custom resources (cert-manager,
ServiceMonitor).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kube_lxcfs.errors import KubeLxcfsError

# kind → resource (plural) for every kind we create or inspect.
PLURALS = {
    "Namespace": "namespaces",
    "ServiceAccount": "serviceaccounts",
    "Secret": "secrets",
    "Service": "services",
    "Endpoints": "endpoints",
    "Pod": "pods",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "DaemonSet": "daemonsets",
    "Deployment": "deployments",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "MutatingWebhookConfiguration": "mutatingwebhookconfigurations",
    "Issuer": "issuers",
    "Certificate": "certificates",
    "ServiceMonitor": "servicemonitors",
    "RuntimeClass": "runtimeclasses",
}
FIELD_MANAGER = "kube-lxcfs"


class ApiError(KubeLxcfsError):
    """An API request failed; ``status`` is the HTTP status (0: no answer at all)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message


def collection_path(api_version: str, kind: str, namespace: str | None = None) -> str:
    """The URL path of a kind's collection, in ``namespace`` when given."""
    try:
        plural = PLURALS[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r}") from None
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespace:
        return f"{prefix}/namespaces/{quote(namespace)}/{plural}"
    return f"{prefix}/{plural}"


def object_path(obj: dict[str, Any]) -> str:
    """The URL path of one object (its metadata.namespace decides the scope)."""
    md = obj["metadata"]
    base = collection_path(obj["apiVersion"], obj["kind"], md.get("namespace"))
    return f"{base}/{quote(md['name'])}"


def describe(obj: dict[str, Any]) -> str:
    """``kind/name`` (with ``-n namespace``), as a progress line names an object."""
    md = obj["metadata"]
    ns = f" -n {md['namespace']}" if md.get("namespace") else ""
    return f"{obj['kind'].lower()}/{md['name']}{ns}"


@dataclass
class KubeApi:
    """Requests against one API server through a ``kubernetes.client.ApiClient``."""

    client: Any  # kubernetes.client.ApiClient

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One request; the decoded JSON answer, or ApiError."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            serialized = self.client.param_serialize(
                method,
                path,
                query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.client.call_api(*serialized, _request_timeout=30)
            data = response.read()
        except ApiException as exc:
            raise _api_error(exc.status or 0, exc.reason or "", exc.body) from None
        except (HTTPError, OSError) as exc:
            raise ApiError(0, "", f"cannot reach the API server: {exc}") from None
        if not 200 <= response.status <= 299:
            raise _api_error(response.status, response.reason or "", data)
        return json.loads(data) if data else {}

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, None when it does not exist."""
        try:
            return self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """POST ``obj`` to its collection (409 when it exists)."""
        md = obj["metadata"]
        path = collection_path(obj["apiVersion"], obj["kind"], md.get("namespace"))
        return self.request("POST", path, query=_dry(dry_run), body=obj)

    def replace(self, obj: dict[str, Any]) -> dict[str, Any]:
        """PUT ``obj`` (409 when its resourceVersion is stale)."""
        return self.request("PUT", object_path(obj), body=obj)

    def apply(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply: create or update ``obj``, owning the fields we set."""
        query = {"fieldManager": FIELD_MANAGER, "force": "true", **_dry(dry_run)}
        return self.request(
            "PATCH",
            object_path(obj),
            query=query,
            body=json.dumps(obj),  # JSON is YAML; sent as is
            content_type="application/apply-patch+yaml",
        )

    def delete(self, path: str, *, dry_run: bool = False) -> bool:
        """Delete the object at ``path``; False when it was already gone."""
        try:
            self.request("DELETE", path, query=_dry(dry_run))
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def list(self, path: str, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        """The items of a collection, optionally filtered by a label selector."""
        query = {"labelSelector": label_selector} if label_selector else None
        return self.request("GET", path, query=query).get("items") or []


def _dry(dry_run: bool) -> dict[str, str]:
    return {"dryRun": "All"} if dry_run else {}


def _api_error(status: int, reason: str, body: Any) -> ApiError:
    message = ""
    if body:
        try:
            message = json.loads(body).get("message", "")
        except (ValueError, AttributeError):
            message = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    # One line: non-JSON bodies ("404 page not found\n") end up in one-line user errors.
    return ApiError(status, reason, " ".join((message or reason).split()))


class KubeconfigError(ApiError):
    """The kubeconfig the user named cannot be loaded (bad input, not a cluster problem)."""


def connect(
    kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None
) -> KubeApi:
    """A KubeApi from ``kubeconfig`` (or $KUBECONFIG/~/.kube/config), else in-cluster config."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException
    from yaml import YAMLError

    configuration = client.Configuration()
    explicit = kubeconfig or os.environ.get("KUBECONFIG")
    default = os.path.expanduser("~/.kube/config")
    try:
        if explicit or os.path.exists(default):
            config.load_kube_config(
                config_file=os.fspath(kubeconfig) if kubeconfig else None,
                context=context,
                client_configuration=configuration,
            )
        else:
            config.load_incluster_config(client_configuration=configuration)
    except (ConfigException, OSError, YAMLError, TypeError, AttributeError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, (TypeError, AttributeError)):  # the client, on YAML of another shape
            reason = "not a kubeconfig file"
        if kubeconfig:
            raise KubeconfigError(
                0, "", f"--kubeconfig {os.fsdecode(kubeconfig)}: {reason}"
            ) from None
        raise ApiError(0, "", f"no usable Kubernetes configuration: {reason}") from None
    return KubeApi(client.ApiClient(configuration))


def in_cluster() -> KubeApi:
    """A KubeApi from the pod's service account (the webhook's self-provisioning).

    ``KUBE_LXCFS_KUBECONFIG`` names a kubeconfig to use instead, for running the
    webhook outside a cluster (development, tests).
    """
    import os

    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    override = os.environ.get("KUBE_LXCFS_KUBECONFIG")
    if override:
        return connect(override)
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except (ConfigException, OSError) as exc:
        raise ApiError(0, "", f"not running in a cluster: {exc}") from None
    return KubeApi(client.ApiClient(configuration))

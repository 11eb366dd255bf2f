"""The two delivery modes against a real kube-apiserver with Pod Security admission.

The shipped MutatingWebhookConfiguration and webhook arguments, rendered for each mode and
served by a ``kube-lxcfs webhook`` on loopback (reached by URL, as in test_cluster_install):

- hostPath mode excludes namespaces enforcing ``restricted`` (its volumes would be refused);
- runtimeClass mode serves them: a restricted-compliant pod is admitted and stored with
  ``runtimeClassName: kube-lxcfs`` and no hostPath volume. The API server's RuntimeClass
  admission needs the class to exist, so the rendered RuntimeClass object is created first.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube_lxcfs.deploy.render import render
from kube_lxcfs.deploy.values import resolve
from support.deploy_variants import RC_MODE

from .control_plane import ControlPlane, wait_until
from .pki import CertificateAuthority
from .test_cluster_install import (
    deployment_args,
    kube_lxcfs,
    restricted_compliant,
    shipped_configuration_by_url,
)
from .webhooks import (
    SEED_LABEL,
    create_pod,
    pod,
    registered,
    spawn_webhook,
    wait_for_injection,
    webhook_serving_cert,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

INSTALL_NS = "kube-lxcfs-test-rc-install"  # rendered for; never created (excluded anyway)
RUNTIME_CLASSES = "/apis/node.k8s.io/v1/runtimeclasses"
CASE_LABEL = "kube-lxcfs-test/case"
STATUS = "kube-lxcfs.io/status"
MODES = {"hostPath": [], "runtimeClass": RC_MODE}


@contextlib.contextmanager
def shipped_webhook(
    plane: ControlPlane, mode: str, case: str, workdir: Path
) -> Iterator[list[dict]]:
    """The mode's rendered objects, its webhook process serving the rendered configuration
    (limited to namespaces labelled with ``case``, so it never touches another test)."""
    objects = render(resolve(namespace=INSTALL_NS, sets=MODES[mode]))
    ca = CertificateAuthority(workdir / "pki", f"kube-lxcfs-test-{mode.lower()}-ca")
    cert = webhook_serving_cert(ca)
    args = deployment_args(
        objects,
        **{"--tls-cert": str(cert.cert), "--tls-key": str(cert.key), "--self-provision-secret": ""},
    )
    process = spawn_webhook(args, workdir, {"KUBE_LXCFS_WEBHOOK_NAMESPACE": INSTALL_NS})
    try:
        webhooks = shipped_configuration_by_url(objects, process.url, ca.cert_pem)
        for webhook in webhooks:
            webhook["namespaceSelector"].setdefault("matchLabels", {})[CASE_LABEL] = case
        with registered(plane, f"kube-lxcfs-test-{mode.lower()}-{case}", *webhooks):
            yield objects
    finally:
        process.stop()


@contextlib.contextmanager
def created(plane: ControlPlane, path: str, obj: dict) -> Iterator[None]:
    status, answer = plane.request("POST", path, obj)
    assert status == 201, answer[:500]
    try:
        yield
    finally:
        plane.request("DELETE", f"{path}/{obj['metadata']['name']}")


def test_restricted_namespace_is_served_in_runtime_class_mode_only(
    control_plane: ControlPlane, make_namespace, tmp_path: Path
) -> None:
    case = uuid.uuid4().hex[:10]
    labels = {SEED_LABEL: "enabled", CASE_LABEL: case}
    probe_ns = make_namespace("rc-probe", labels)
    strict_ns = make_namespace(
        "rc-strict", {**labels, "pod-security.kubernetes.io/enforce": "restricted"}
    )
    with contextlib.ExitStack() as stack:
        # hostPath mode: in effect (the probe namespace gets volumes) and the restricted
        # namespace is left out, so its pods are admitted untouched.
        stack.enter_context(shipped_webhook(control_plane, "hostPath", case, tmp_path / "hp"))
        wait_for_injection(control_plane, probe_ns)
        status, answer = create_pod(control_plane, strict_ns, restricted_compliant(pod("hp")))
        assert status == 201, answer
        assert "runtimeClassName" not in answer["spec"]
        assert not [v for v in answer["spec"].get("volumes", []) if "hostPath" in v]
        assert STATUS not in (answer["metadata"].get("annotations") or {})

        # runtimeClass mode (the hostPath webhook keeps running: its configuration may be
        # cached a moment longer, and it never matches the restricted namespace anyway).
        objects = stack.enter_context(
            shipped_webhook(control_plane, "runtimeClass", case, tmp_path / "rc")
        )
        runtime_class = next(o for o in objects if o["kind"] == "RuntimeClass")
        assert runtime_class["handler"] == "kube-lxcfs"
        stack.enter_context(created(control_plane, RUNTIME_CLASSES, runtime_class))

        def class_set() -> bool:
            probe = restricted_compliant(pod(f"probe-{uuid.uuid4().hex[:6]}"))
            code, dry = create_pod(control_plane, strict_ns, probe, dry_run=True)
            return code == 201 and dry["spec"].get("runtimeClassName") == "kube-lxcfs"

        wait_until(class_set, 30, "the runtimeClass-mode configuration to take effect")
        status, answer = create_pod(control_plane, strict_ns, restricted_compliant(pod("rc")))
        assert status == 201, answer

    stored = control_plane.get(f"/api/v1/namespaces/{strict_ns}/pods/rc")
    assert stored is not None
    assert stored["spec"]["runtimeClassName"] == "kube-lxcfs"
    assert stored["metadata"]["annotations"][STATUS] == "injected"
    assert not [v for v in stored["spec"].get("volumes", []) if "hostPath" in v]
    for container in stored["spec"]["initContainers"] + stored["spec"]["containers"]:
        assert not [m for m in container.get("volumeMounts", []) if "lxcfs" in m["name"]]
    untouched = control_plane.get(f"/api/v1/namespaces/{strict_ns}/pods/hp")
    assert untouched is not None and "runtimeClassName" not in untouched["spec"]


def test_runtime_class_mode_install_is_accepted_by_the_server(
    control_plane: ControlPlane, make_namespace
) -> None:
    """Every object of the mode (RuntimeClass, the agent with its setup-node init container
    and host / volume) passes server-side validation and admission in a privileged namespace;
    server dry run, so nothing cluster-wide is left for other tests."""
    ns = make_namespace("rc-install", {"pod-security.kubernetes.io/enforce": "privileged"})
    sets = [f"--set={expr}" for expr in [*MODES["runtimeClass"], "createNamespace=false"]]
    kubeconfig = str(control_plane.kubeconfig)
    proc = kube_lxcfs("install", "-n", ns, *sets, "--dry-run=server", "--kubeconfig", kubeconfig)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "runtimeclass/kube-lxcfs created (server dry run)" in proc.stdout
    assert f"daemonset/kube-lxcfs-agent -n {ns} created (server dry run)" in proc.stdout
    assert "not validated" not in proc.stdout
    assert control_plane.get(f"{RUNTIME_CLASSES}/kube-lxcfs") is None

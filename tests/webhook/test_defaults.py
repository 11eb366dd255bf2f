"""Drift check: the deployment's defaults for the webhook are the webhook's own defaults."""

from __future__ import annotations

from kube_lxcfs import defaults
from kube_lxcfs.deploy import values
from kube_lxcfs.webhook import config


def test_deploy_injected_files_are_the_webhook_defaults() -> None:
    assert list(values.DEFAULT_FILES) == list(config.DEFAULT_FILES)
    assert values.DEFAULTS["mountDir"] == defaults.MOUNT_DIR


def test_deploy_labels_its_pods_with_the_skipped_label() -> None:
    key, value = config.parse_label(config.DEFAULT_SKIP_POD_LABELS[0])
    assert (key, value) == ("app.kubernetes.io/part-of", values.NAME)
    assert values.NAMESPACE_LABEL == "lxcfs-admission-webhook"

"""The mutating admission webhook: pure AdmissionReview → JSON patch, and its HTTPS server.

Layers (a lower one never imports a higher one): ``structs`` (wire types) ← ``config``
(what to inject) ← ``selection`` and ``mutation`` (pure decisions; ``runtimeclass`` for
``--inject-mode runtimeclass``) ← ``admission`` (the pure
entry point) ← ``server`` (TLS, HTTP, metrics, signals). The pure part is re-exported here;
the server is imported from ``kube_lxcfs.webhook.server`` (it needs ``cryptography``).
"""

from kube_lxcfs.webhook.admission import BadReviewError, ReviewResult, decode_patch, review
from kube_lxcfs.webhook.config import ConfigError, InjectedPath, InjectOptions, make_options
from kube_lxcfs.webhook.mutation import MalformedPodError, Mutation, plan_mutation
from kube_lxcfs.webhook.runtimeclass import plan_runtime_class
from kube_lxcfs.webhook.selection import skip_reason

__all__ = [
    "BadReviewError",
    "ConfigError",
    "InjectOptions",
    "InjectedPath",
    "MalformedPodError",
    "Mutation",
    "ReviewResult",
    "decode_patch",
    "make_options",
    "plan_mutation",
    "plan_runtime_class",
    "review",
    "skip_reason",
]

"""DriftPolicy: the document that tells the monitor and the retrainer what to do.

Shaped as the Kubernetes custom resource (``apiVersion: driftkeeper.io/v1alpha1``,
``kind: DriftPolicy``), so the same file works locally and with ``kubectl apply``.
"""

from .document import (
    API_VERSION,
    KIND,
    DriftPolicy,
    PromotionSettings,
    RetrainingSettings,
    WindowSettings,
    default_policy,
    load_policy,
    parse_duration,
    parse_policy,
    policy_or_default,
    spec_schema,
)

__all__ = [
    "API_VERSION",
    "KIND",
    "DriftPolicy",
    "PromotionSettings",
    "RetrainingSettings",
    "WindowSettings",
    "default_policy",
    "load_policy",
    "parse_duration",
    "parse_policy",
    "policy_or_default",
    "spec_schema",
]

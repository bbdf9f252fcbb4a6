"""What a retraining Job runs as: the operator's settings, never a DriftPolicy's.

Whoever may create a DriftPolicy must not gain, through the operator, the power to run an
image or a ServiceAccount of their choice (the operator may create Jobs; a policy author
may not). So the Job's image, ServiceAccount, pull secrets, security contexts, resources
and scheduling come from one JSON document in ``DRIFTKEEPER_JOB_SETTINGS``, which the Helm
chart renders from its ``retrainJob`` values. A policy may name an image only when it is
on ``allowedImages``, and a ServiceAccount only when it is the settings' own.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from driftkeeper.errors import DriftkeeperError

RUN_AS = 10001  # the image's numeric non-root user

DEFAULT_POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
    "seccompProfile": {"type": "RuntimeDefault"}}
DEFAULT_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]}}
DEFAULT_RESOURCES: dict[str, Any] = {"requests": {"cpu": "500m", "memory": "512Mi"},
                                     "limits": {"memory": "1Gi"}}
PULL_POLICIES = ("Always", "IfNotPresent", "Never")

_KEYS = {"image": str, "imagePullPolicy": str, "imagePullSecrets": list,
         "serviceAccountName": str, "podSecurityContext": dict, "securityContext": dict,
         "resources": dict, "nodeSelector": dict, "tolerations": list, "affinity": dict,
         "allowedImages": list}


@dataclass(frozen=True)
class JobSettings:
    """The retraining Job's pod settings (see ``DRIFTKEEPER_JOB_SETTINGS`` in the README)."""

    image: str | None = None
    image_pull_policy: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    service_account: str | None = None
    pod_security_context: dict[str, Any] = field(
        default_factory=lambda: copy.deepcopy(DEFAULT_POD_SECURITY_CONTEXT))
    security_context: dict[str, Any] = field(
        default_factory=lambda: copy.deepcopy(DEFAULT_SECURITY_CONTEXT))
    resources: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_RESOURCES))
    node_selector: dict[str, Any] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    affinity: dict[str, Any] = field(default_factory=dict)
    allowed_images: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: str | None, image: str | None = None,
              service_account: str | None = None) -> JobSettings:
        """From the JSON text of ``DRIFTKEEPER_JOB_SETTINGS`` (None or empty: defaults).
        ``image`` and ``service_account`` are the older single variables, used where the
        document does not say. Raises :class:`DriftkeeperError` naming the bad key."""
        doc: Mapping[str, Any] = {}
        if raw and raw.strip():
            try:
                doc = json.loads(raw)
            except ValueError as exc:
                raise DriftkeeperError(f"DRIFTKEEPER_JOB_SETTINGS is not JSON: {exc}") from None
            if not isinstance(doc, dict):
                raise DriftkeeperError("DRIFTKEEPER_JOB_SETTINGS must be a JSON object")
        problems = [f"unknown key {key!r}" for key in doc if key not in _KEYS]
        problems += [f"{key} must be a {kind.__name__}, got {type(doc[key]).__name__}"
                     for key, kind in _KEYS.items()
                     if key in doc and doc[key] is not None and not isinstance(doc[key], kind)]
        pull_policy = doc.get("imagePullPolicy") or None
        if isinstance(pull_policy, str) and pull_policy not in PULL_POLICIES:
            problems.append(f"imagePullPolicy must be one of {', '.join(PULL_POLICIES)}, "
                            f"got {pull_policy!r}")
        secrets = doc.get("imagePullSecrets") or []
        if isinstance(secrets, list) and not all(
                isinstance(s, dict) and isinstance(s.get("name"), str) for s in secrets):
            problems.append("imagePullSecrets must be a list of {name: string}")
        allowed = doc.get("allowedImages") or []
        if isinstance(allowed, list) and not all(isinstance(a, str) and a for a in allowed):
            problems.append("allowedImages must be a list of image names")
        if problems:
            raise DriftkeeperError("invalid DRIFTKEEPER_JOB_SETTINGS: " + "; ".join(problems))

        def obj(key: str, default: dict[str, Any]) -> dict[str, Any]:
            value = doc.get(key)
            return copy.deepcopy(default if value is None else value)

        return cls(
            image=doc.get("image") or image or None,
            image_pull_policy=pull_policy,
            image_pull_secrets=tuple(s["name"] for s in secrets),
            service_account=doc.get("serviceAccountName") or service_account or None,
            pod_security_context=obj("podSecurityContext", DEFAULT_POD_SECURITY_CONTEXT),
            security_context=obj("securityContext", DEFAULT_SECURITY_CONTEXT),
            resources=obj("resources", DEFAULT_RESOURCES),
            node_selector=obj("nodeSelector", {}),
            tolerations=tuple(copy.deepcopy(doc.get("tolerations") or [])),
            affinity=obj("affinity", {}),
            allowed_images=tuple(allowed))

    def image_allowed(self, image: str) -> bool:
        """A policy's own image is allowed only if the settings list it (or it is theirs)."""
        return image == self.image or image in self.allowed_images

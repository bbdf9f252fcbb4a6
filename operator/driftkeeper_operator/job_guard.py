"""What a DriftPolicy may choose for its retraining Job, checked against the operator's
settings and the target Deployment. Pure functions over plain dicts: no API calls here.

A policy author must gain nothing by creating a policy: the Job runs the operator's image
as the operator's ServiceAccount for Jobs (``jobsettings.py``), and mounts only the claim
that the policy's own model Deployment already mounts, at the same path. Anything else is
refused (phase ``Invalid``, an event), and no Job is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from driftkeeper.errors import PolicyError

from .jobsettings import JobSettings

JOB = "spec.retraining.job"
SHARED_NODE_MODES = ("ReadWriteOnce", "ReadWriteOncePod")
"""Access modes that tie a volume to one node: a Job using it must run on that node."""


def check_job_fields(spec: Mapping[str, Any], settings: JobSettings) -> None:
    """Refuse a policy that asks for an image or a ServiceAccount the settings do not give.
    Raises :class:`PolicyError` naming the field."""
    job = (spec.get("retraining") or {}).get("job") or {}
    image = job.get("image")
    if image and not settings.image_allowed(image):
        allowed = [settings.image, *settings.allowed_images] if settings.image else list(
            settings.allowed_images)
        raise PolicyError(f"image {image!r} is not allowed: the operator's settings allow "
                          f"{', '.join(a for a in allowed if a) or 'no image of a policy'} "
                          f"(retrainJob.allowedImages in the Helm values)",
                          field=f"{JOB}.image")
    account = job.get("serviceAccountName")
    if account and account != settings.service_account:
        raise PolicyError(f"ServiceAccount {account!r} is not allowed: retraining Jobs run "
                          f"as the operator's ServiceAccount for Jobs "
                          f"({settings.service_account or 'the namespace default'}, set by "
                          f"retrainJob.serviceAccount in the Helm values)",
                          field=f"{JOB}.serviceAccountName")


def ignored_fields(spec: Mapping[str, Any]) -> list[str]:
    """Fields a policy may still carry that the operator's settings decide instead."""
    job = (spec.get("retraining") or {}).get("job") or {}
    return [f"{JOB}.resources"] if job.get("resources") else []


@dataclass(frozen=True)
class ModelVolume:
    """The model store as the target Deployment mounts it: what the Job may mount."""

    claim: str
    path: str
    pod_labels: dict[str, str]  # the Deployment's selector: the Job runs beside these pods


def _claim_mounts(deployment: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(claim, mount path) of every PersistentVolumeClaim the Deployment's pods mount."""
    pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
              for v in pod.get("volumes") or []
              if (v.get("persistentVolumeClaim") or {}).get("claimName")}
    found: list[tuple[str, str]] = []
    for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
        for mount in container.get("volumeMounts") or []:
            pair = (claims.get(mount.get("name")), mount.get("mountPath"))
            if pair[0] and pair[1] and pair not in found:
                found.append(pair)  # type: ignore[arg-type]
    return found  # type: ignore[return-value]


def model_volume(deployment: Mapping[str, Any], claim: str | None,
                 path: str | None) -> ModelVolume:
    """The claim and path the Job mounts, which must be what the Deployment mounts.

    ``claim`` and ``path`` are the policy's ``target.modelClaim`` and ``target.modelDir``
    (None where it names none: then the Deployment's one model claim is used). Raises
    :class:`PolicyError` naming the field when the Deployment does not mount them."""
    name = (deployment.get("metadata") or {}).get("name", "?")
    mounts = _claim_mounts(deployment)
    described = ", ".join(f"{c} at {p}" for c, p in mounts) or "no PersistentVolumeClaim"
    candidates = [(c, p) for c, p in mounts
                  if (claim is None or c == claim) and (path is None or p == path)]
    if not candidates:
        field = "spec.target.modelClaim" if claim is not None and all(
            c != claim for c, _ in mounts) else "spec.target.modelDir"
        wanted = " at ".join(x for x in (claim, path) if x) or "a model claim"
        raise PolicyError(f"Deployment {name} does not mount {wanted} (it mounts "
                          f"{described}): a policy may only retrain on the volume its model "
                          f"Deployment mounts", field=field)
    if len({c for c, _ in candidates}) > 1:
        raise PolicyError(f"Deployment {name} mounts several claims ({described}): name "
                          f"the model's claim", field="spec.target.modelClaim")
    selector = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ModelVolume(candidates[0][0], candidates[0][1], dict(selector))


def colocation(volume: ModelVolume, access_modes: list[str] | None) -> dict[str, Any]:
    """Pod affinity that puts the Job on the node of a model pod when the claim can be
    attached to one node only (else the Job would wait forever on a Multi-Attach error)."""
    if not access_modes or not any(m in SHARED_NODE_MODES for m in access_modes):
        return {}
    if not volume.pod_labels:
        return {}
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": dict(volume.pod_labels)},
        "topologyKey": "kubernetes.io/hostname"}]}}


def merge_affinity(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """The settings' affinity plus the co-location term (required terms are ANDed)."""
    merged = {k: dict(v) for k, v in base.items()}
    for kind, rules in extra.items():
        target = merged.setdefault(kind, {})
        for key, terms in rules.items():
            target[key] = [*(target.get(key) or []), *terms]
    return merged

"""Pure builders of what the operator writes: the policy ConfigMap, the retraining Job and
the DriftPolicy status. No I/O here, so each is tested as a plain function."""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import yaml

from driftkeeper.drift.report import DriftReport
from driftkeeper.model.retrain import RetrainOutcome
from driftkeeper.policy import DriftPolicy
from driftkeeper.policy.engine import Condition
from driftkeeper.policy.reconcile import RetrainRequest

from .job_guard import ModelVolume
from .jobsettings import JobSettings

POLICY_KEY = "policy.yaml"
POLICY_MOUNT = "/etc/driftkeeper"
TERMINATION_LOG = "/dev/termination-log"
RETRAIN_CONTAINER = "retrain"
POLICY_LABEL = "driftkeeper.io/policy"
COMMON_LABELS = {"app.kubernetes.io/name": "driftkeeper",
                 "app.kubernetes.io/managed-by": "driftkeeper-operator"}
MAX_NAME = 63  # a Job's name becomes its pods' job-name label value


def _trim(name: str, limit: int = MAX_NAME) -> str:
    """A DNS label of at most ``limit`` characters; long names keep a hash of the rest."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-')}-{digest}"


def config_map_name(policy_name: str) -> str:
    return _trim(f"driftpolicy-{policy_name}", 253)


def job_name(policy_name: str, request: RetrainRequest) -> str:
    """Deterministic from what the retrain is for: the policy's generation and the drift
    episode's start. A retried create finds the Job it already made (409) instead of
    making a second, and a Job of another episode or spec never has this name."""
    suffix = f"-retrain-g{request.generation}-{_base36(int(request.since))}"
    return _trim(policy_name, MAX_NAME - len(suffix)) + suffix


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


SINCE = "driftkeeper.io/since"
GENERATION = "driftkeeper.io/generation"
NUMBER = "driftkeeper.io/retrain"
STARTED = "driftkeeper.io/started"


def request_annotations(request: RetrainRequest) -> dict[str, str]:
    """What a Job was made for, on the Job: checked before a Job is adopted."""
    return {SINCE: repr(float(request.since)), GENERATION: str(request.generation),
            NUMBER: str(request.number), STARTED: repr(float(request.started))}


def request_of(job: dict[str, Any]) -> RetrainRequest | None:
    """The retrain a Job was made for, from its annotations (None: not one of ours, or
    made before Jobs carried them)."""
    notes = (job.get("metadata") or {}).get("annotations") or {}
    try:
        return RetrainRequest(int(notes[NUMBER]), float(notes[SINCE]), notes[GENERATION],
                              float(notes[STARTED]))
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Target:
    """``spec.target`` with the operator's defaults filled in."""

    service: str
    port: str
    deployment: str
    model_claim: str
    model_dir: str
    prometheus_url: str | None
    prometheus_selector: str | None

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Target:
        t = spec["target"]
        prometheus = t.get("prometheus") or {}
        return cls(service=t["service"], port=t.get("port", "http"),
                   deployment=t.get("deployment") or t["service"],
                   model_claim=t.get("modelClaim") or f"{t['service']}-models",
                   model_dir=t.get("modelDir", "/models"),
                   prometheus_url=prometheus.get("url"),
                   prometheus_selector=prometheus.get("selector"))


def policy_config_map(policy: DriftPolicy, namespace: str) -> dict[str, Any]:
    """The normalised policy (every default filled) that the model pods and the Job read."""
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": config_map_name(policy.name), "namespace": namespace,
                     "labels": {**COMMON_LABELS, "app.kubernetes.io/component": "policy",
                                POLICY_LABEL: policy.name}},
        "data": {POLICY_KEY: yaml.safe_dump(policy.to_document(), sort_keys=False)},
    }


def retrain_job(policy: DriftPolicy, namespace: str, request: RetrainRequest,
                settings: JobSettings, volume: ModelVolume | None = None,
                affinity: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Job that runs ``driftkeeper retrain`` against the model volume. It needs no API
    access: its outcome goes to the termination message, which the operator reads.

    What the pod runs as (image, ServiceAccount, pull secrets, security contexts,
    resources, scheduling) comes from the operator's ``settings`` only; the policy gives
    what to retrain (the claim and path its Deployment mounts, as checked in
    ``job_guard.model_volume``) and how (timeout, retries, TTL)."""
    target = Target.from_spec(policy.spec)
    claim, model_dir = ((volume.claim, volume.path) if volume is not None
                        else (target.model_claim, target.model_dir))
    job = policy.spec["retraining"].get("job", {})
    labels = {**COMMON_LABELS, "app.kubernetes.io/component": "retrain",
              POLICY_LABEL: policy.name}
    command = ["driftkeeper", "retrain", "--model-dir", model_dir,
               "--policy", f"{POLICY_MOUNT}/{POLICY_KEY}",
               "--since", repr(float(request.since)),
               "--termination-log", TERMINATION_LOG]
    container: dict[str, Any] = {
        "name": RETRAIN_CONTAINER,
        # The policy's image only when the settings allow it (job_guard.check_job_fields).
        "image": (job.get("image") if job.get("image")
                  and settings.image_allowed(job["image"]) else settings.image),
        "command": command,
        # One OpenMP thread: a retrain shares nodes with the service it retrains for.
        "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
        "resources": copy.deepcopy(settings.resources),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": copy.deepcopy(settings.security_context),
        "volumeMounts": [
            {"name": "models", "mountPath": model_dir},
            {"name": "policy", "mountPath": POLICY_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if settings.image_pull_policy:
        container["imagePullPolicy"] = settings.image_pull_policy
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": copy.deepcopy(settings.pod_security_context),
        "containers": [container],
        "volumes": [
            {"name": "models", "persistentVolumeClaim": {"claimName": claim}},
            {"name": "policy", "configMap": {"name": config_map_name(policy.name)}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if settings.service_account:
        pod_spec["serviceAccountName"] = settings.service_account
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in settings.image_pull_secrets]
    if settings.node_selector:
        pod_spec["nodeSelector"] = copy.deepcopy(settings.node_selector)
    if settings.tolerations:
        pod_spec["tolerations"] = copy.deepcopy(list(settings.tolerations))
    if affinity:
        pod_spec["affinity"] = copy.deepcopy(affinity)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name(policy.name, request), "namespace": namespace,
                     "labels": labels, "annotations": request_annotations(request)},
        "spec": {
            "backoffLimit": job.get("backoffLimit", 0),
            "activeDeadlineSeconds": max(int(policy.retraining.timeout), 1),
            "ttlSecondsAfterFinished": job.get("ttlSecondsAfterFinished", 86400),
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


# -- the Job's progress ----------------------------------------------------------------------

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"


def job_state(job: dict[str, Any]) -> tuple[str, str]:
    """(running | succeeded | failed, why) from a Job's status."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return SUCCEEDED, "the Job completed"
        if condition.get("type") == "Failed":
            reason = condition.get("reason") or "Failed"
            detail = condition.get("message") or ""
            if reason == "DeadlineExceeded":
                detail = detail or "the retrain exceeded spec.retraining.timeout"
            return FAILED, f"the Job failed ({reason}){': ' + detail if detail else ''}"
    return RUNNING, "the Job is running"


def job_outcome(state: str, why: str, messages: list[str]) -> RetrainOutcome:
    """The retrain's outcome: the JSON its container wrote to the termination message, or,
    without one, what the Job's status says."""
    import json

    for text in messages:
        try:
            return RetrainOutcome.from_dict(json.loads(text))
        except (ValueError, TypeError):
            continue
    tail = messages[0].strip().splitlines()[-3:] if messages else []
    detail = f": {' | '.join(tail)}" if tail else ""
    if state == SUCCEEDED:
        return RetrainOutcome("failed", f"{why}, but left no outcome{detail}")
    return RetrainOutcome("failed", f"{why}{detail}")


# -- status ----------------------------------------------------------------------------------


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def report_status(report: DriftReport) -> dict[str, Any]:
    """The drift verdicts as ``status.data`` and ``status.concept``."""
    data, concept = report.data, report.concept
    out: dict[str, Any] = {"data": {
        "score": _round(data.score), "statistic": _round(data.statistic),
        "statisticName": data.statistic_name, "threshold": _round(data.threshold),
        "drift": data.drift, "samples": data.samples, "rule": data.rule,
        "driftedFeatures": list(data.drifted_features),
        **({"lowImpact": list(data.low_impact)} if data.low_impact else {}),
        **({"predictionShifts": {n: _round(f.impact_shift) for n, f in data.features.items()
                                 if f.drift and f.impact_shift is not None}}
           if any(f.drift and f.impact_shift is not None for f in data.features.values())
           else {})}}
    if concept is not None:
        out["concept"] = {
            "score": _round(concept.score), "threshold": _round(concept.threshold),
            "drift": concept.drift, "samples": concept.samples, "rmse": _round(concept.rmse),
            "rmseReference": _round(concept.rmse_reference), "tests": list(concept.reasons),
            **({"where": [loc.message for loc in concept.segments.locations]}
               if concept.segments and concept.segments.locations else {}),
            **_classifier_measures(concept)}
    if report.prediction is not None:
        p = report.prediction
        out["prediction"] = {"method": p.method, "score": _round(p.score),
                             "threshold": _round(p.threshold), "drift": p.drift,
                             "samples": p.samples}
    if report.performance is not None:
        e = report.performance
        out["performance"] = {"score": _round(e.score), "threshold": _round(e.threshold),
                              "drift": e.drift, "samples": e.samples,
                              "rmseEstimated": _round(e.rmse_estimated),
                              "rmseReference": _round(e.rmse_reference)}
    return out


def _classifier_measures(concept: Any) -> dict[str, Any]:
    """A classifier's log loss, accuracy and calibration beside their held-out values
    (absent for a regression, whose verdict has no log loss reference)."""
    if concept.log_loss_reference is None:
        return {}
    by_class = concept.class_calibration
    return {"logLoss": _round(concept.log_loss),
            "logLossReference": _round(concept.log_loss_reference),
            "accuracy": _round(concept.accuracy),
            "accuracyReference": _round(concept.accuracy_reference),
            "calibration": _round(concept.calibration),
            "classCalibration": None if by_class is None else {
                c: round(float(v), 6) for c, v in by_class.items()}}


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def retrain_record(job: str, started: float, outcome: RetrainOutcome | None = None,
                   finished: float | None = None) -> dict[str, Any]:
    """``status.lastRetrain``: a running Job, or how it ended."""
    record: dict[str, Any] = {"job": job, "startedAt": rfc3339(started),
                              "finishedAt": rfc3339(finished), "outcome": "running",
                              "message": "the retraining Job is running"}
    if outcome is not None:
        record.update(outcome=outcome.outcome, message=outcome.reason[:1024],
                      candidate=outcome.candidate, serving=outcome.serving,
                      candidateRmse=outcome.candidate_rmse, servingRmse=outcome.serving_rmse,
                      metric=outcome.metric, candidateScore=outcome.candidate_score,
                      servingScore=outcome.serving_score,
                      trainRows=outcome.rows.get("train"), judgeRows=outcome.rows.get("judge"))
    return record


ENGINE_CONDITIONS = {"DataDrift", "ConceptDrift", "Retraining"}


def conditions(engine: list[Condition], ready: Condition, previous: list[dict[str, Any]],
               generation: int | None, now: float) -> list[dict[str, Any]]:
    """Kubernetes-style conditions: the engine's drift and retraining conditions plus Ready;
    ``lastTransitionTime`` moves only when a condition's status changes."""
    before = {c.get("type"): c for c in previous or []}
    out = []
    for c in [ready, *[c for c in engine if c.type in ENGINE_CONDITIONS]]:
        old = before.get(c.type)
        changed = old is None or old.get("status") != c.status
        out.append({**c.to_dict(),
                    "lastTransitionTime": rfc3339(now) if changed
                    else old.get("lastTransitionTime", rfc3339(now)),
                    "observedGeneration": generation})
    return out

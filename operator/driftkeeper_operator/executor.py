"""One DriftPolicy's loop, the I/O half: read the fleet and the Job, act, report.

Every tick: list the target Service's ready endpoints, read their counters (or ask
Prometheus), judge the summed windows against the serving version's reference, read the
followed Job, and hand all of it to :func:`reconcile.reconcile`, which decides; then do
what it says (create or delete a Job), write the status and post the events. The memory
lives in ``status.engine``, so a restarted operator carries on, and finds a Job that is
still running instead of starting a second one.

A failing tick never floods: the error goes to the log, the Ready condition says it, the
next try backs off, and its Warning Event is posted once per distinct error at a growing
interval (``throttle.py``).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import kopf
import requests
from kubernetes.client.exceptions import ApiException

from driftkeeper.errors import PolicyError
from driftkeeper.policy import API_VERSION, KIND, DriftPolicy, parse_policy
from driftkeeper.policy.engine import INVALID, Condition, Event
from driftkeeper.policy.metrics import PolicyMetrics
from driftkeeper.policy.reconcile import Memory, RetrainRequest

from .builders import RUNNING, Target, job_state, request_of, retrain_job
from .builders import conditions as status_conditions
from .config import OperatorConfig
from .counters import total
from .evaluation import judge_fleet
from .job_guard import ModelVolume, check_job_fields, colocation, merge_affinity, model_volume
from .kube import Kube
from .reconcile import (
    MISSING,
    CreateJob,
    DeleteJob,
    FleetObservation,
    JobSeen,
    Step,
    adopted,
    reconcile,
    start_failed,
)
from .references import ReferenceCache, SharedReferences
from .sources import FleetView, PrometheusError, PrometheusSource, ScrapeSource
from .throttle import EventThrottle

log = logging.getLogger("driftkeeper.operator")

RETRY_FIRST = 5.0  # seconds before a failed tick is tried again; doubles per failure
RETRY_MAX = 300.0
VOLUME_RECHECK = 60.0
"""Seconds between checks of the target Deployment's volume (and always before a Job)."""


def parse_for_cluster(name: str, spec: Mapping[str, Any],
                      config: OperatorConfig | None = None) -> tuple[DriftPolicy, Target]:
    """A DriftPolicy as the operator needs it: valid, naming its target, and asking for
    nothing the operator's Job settings do not give."""
    document = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name},
                "spec": copy.deepcopy(dict(spec))}
    policy = parse_policy(document)
    if "target" not in policy.spec:
        raise PolicyError("required on Kubernetes: the model Service to watch",
                          field="spec.target")
    if config is not None:
        check_job_fields(policy.spec, config.job)
    return policy, Target.from_spec(policy.spec)


def explicit_volume(spec: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The claim and path a policy names (None where it names none)."""
    target = spec.get("target") or {}
    return target.get("modelClaim"), target.get("modelDir")


def verify_volume(kube: Kube, namespace: str, policy: DriftPolicy, target: Target
                  ) -> ModelVolume:
    """The model volume the Job may mount: the one the target Deployment mounts.

    Raises :class:`PolicyError` when the policy names another claim or path (the policy
    is invalid), :class:`LookupError` when the Deployment is missing (it may come)."""
    deployment = kube.get_deployment(namespace, target.deployment)
    if deployment is None:
        raise LookupError(f"Deployment {target.deployment} (spec.target.deployment) not found: "
                          f"cannot check which volume its model is on")
    claim, path = explicit_volume(policy.spec)
    if claim is None and path is None:
        claim, path = target.model_claim, target.model_dir
        try:  # the defaults, if the Deployment mounts them; else its one model claim
            return model_volume(deployment, claim, path)
        except PolicyError:
            return model_volume(deployment, None, None)
    return model_volume(deployment, claim, path)


@dataclass(frozen=True)
class TickResult:
    delay: float  # seconds until the next tick
    events: list[Event]  # to post as Kubernetes events on the policy (already throttled)
    status: dict[str, Any] | None  # what was written to the status


class PolicyWorker:
    """The loop of one policy; the Kopf daemon calls :meth:`tick` every interval."""

    def __init__(self, name: str, namespace: str, kube: Kube, config: OperatorConfig,
                 session: requests.Session | None = None,
                 clock: Callable[[], float] = time.time,
                 metrics: PolicyMetrics | None = None,
                 references: SharedReferences | None = None) -> None:
        self.name, self.namespace = name, namespace
        self.kube, self.config = kube, config
        self.metrics = metrics
        self.session = session or requests.Session()
        self.clock = clock
        self.memory: Memory | None = None
        self.shared_references = references or SharedReferences(config.scrape_timeout)
        self.references: ReferenceCache | None = None  # the target Service's, once known
        self.throttle = EventThrottle()
        self.failures = 0  # ticks failed in a row
        # The volume check's last answer: (generation, when, why refused or None).
        self.volume_check: tuple[int | None, float, str | None] | None = None
        self._scrape = ScrapeSource(self.session, config.scrape_timeout, horizon=3600.0)

    # -- the tick ----------------------------------------------------------------------

    def tick(self, body: Mapping[str, Any]) -> TickResult:
        """One tick; whatever goes wrong is logged, shown and retried with backoff."""
        now = self.clock()
        try:
            result = self._tick(body, now)
        except Exception as exc:  # one bad tick must not end the policy's monitoring
            self.failures += 1
            delay = min(RETRY_FIRST * 2 ** (self.failures - 1), RETRY_MAX)
            message = f"evaluation failed ({self.failures} in a row, next try in " \
                      f"{delay:.0f}s): {type(exc).__name__}: {exc}"
            log.exception("%s/%s %s", self.namespace, self.name, message)
            self._report_failure(body, message, now)
            return TickResult(delay, self._admit([Event("Warning", "EvaluationFailed",
                                                        message, now)], now), None)
        self.failures = 0
        self.throttle.clear("EvaluationFailed")
        return result

    def _report_failure(self, body: Mapping[str, Any], message: str, now: float) -> None:
        """Ready=False with the error, if the API takes it (it may be what fails)."""
        status = dict(body.get("status") or {})
        generation = (body.get("metadata") or {}).get("generation")
        engine = [c for c in status.get("conditions") or [] if c.get("type") != "Ready"]
        ready = Condition("Ready", "False", "EvaluationFailed", message[:1024])
        conditions = status_conditions([], ready, list(status.get("conditions") or []),
                                       generation, now) + engine
        try:
            self.kube.patch_status(self.namespace, self.name, {"conditions": conditions})
        except Exception as exc:
            log.warning("%s/%s: cannot write the failure to the status: %s", self.namespace,
                        self.name, exc)

    def _tick(self, body: Mapping[str, Any], now: float) -> TickResult:
        status = dict(body.get("status") or {})
        generation = (body.get("metadata") or {}).get("generation")
        try:
            policy, target = parse_for_cluster(self.name, body.get("spec") or {}, self.config)
        except PolicyError:
            return TickResult(5.0, [], None)  # the spec handler has said why (Invalid)
        events: list[Event] = []
        if self.memory is None:
            self.memory = Memory.from_dict(status.get("engine"))
            events += self._adopt_running_job(now)
        refusal = self._volume_refusal(policy, target, generation, now)
        if refusal is not None:
            return self._invalid(body, status, refusal, events, now)

        observed = self._observe(policy, target, now)
        job = self._read_job()
        step = reconcile(self.memory, observed, job, policy, generation=generation,
                         previous=status, now=now)
        for action in step.actions:
            if isinstance(action, CreateJob):
                step, refusal = self._create_job(action, step, policy, target, body,
                                                 observed, generation, status, now)
                if refusal is not None:  # the tick's decisions are dropped: no Job
                    return self._invalid(body, status, refusal, events, now)
            elif isinstance(action, DeleteJob):
                log.warning("%s/%s: deleting Job %s: %s", self.namespace, self.name,
                            action.name, action.reason)
                self.kube.delete_job(self.namespace, action.name)
        self.memory = step.memory
        self.kube.patch_status(self.namespace, self.name, step.status)
        if self.metrics is not None:
            self.metrics.record(self.namespace, self.name, step.phase,
                                step.memory.engine.failures, policy.retraining.max_failures,
                                step.observation)
            for event in step.events:
                outcome = RETRAIN_OUTCOMES.get(event.reason)
                if outcome:
                    self.metrics.retrain(self.namespace, self.name, outcome)
        events += step.events
        ready = observed.ready
        if ready.status == "False":  # a lasting problem: a reminder now and then
            events.append(Event("Warning", ready.reason, ready.message, now))
        else:
            for reason in NOT_READY_REASONS:
                self.throttle.clear(reason)
        return TickResult(max(policy.interval, self.config.min_interval),
                          self._admit(events, now), step.status)

    def _admit(self, events: list[Event], now: float) -> list[Event]:
        return [e for e in (self.throttle.admit(event, now) for event in events) if e]

    def _invalid(self, body: Mapping[str, Any], status: Mapping[str, Any], message: str,
                 events: list[Event], now: float) -> TickResult:
        """The policy asks for what the operator will not do: phase Invalid, no Job."""
        doc = invalid_status(body, message, now)
        self.kube.patch_status(self.namespace, self.name, doc)
        if self.metrics is not None:
            self.metrics.record(self.namespace, self.name, INVALID, 0, None, None)
        events = [*events, Event("Warning", "InvalidPolicy", message, now)]
        return TickResult(max(5.0, self.config.min_interval), self._admit(events, now), doc)

    # -- reading the fleet -------------------------------------------------------------

    def _observe(self, policy: DriftPolicy, target: Target, now: float) -> FleetObservation:
        empty = FleetView(None, 0, total([]), total([]))
        try:
            endpoints = self.kube.ready_endpoints(self.namespace, target.service, target.port)
        except ApiException as exc:
            return FleetObservation(empty, _not_ready(
                "EndpointsUnreadable", f"cannot list the endpoints of service "
                f"{target.service}: {exc.reason}"), None)
        if not endpoints:
            return FleetObservation(empty, _not_ready(
                "NoReadyEndpoints", f"service {target.service} has no ready endpoints on "
                f"port {target.port!r}"), None)
        source = self._source(target)
        try:
            view = source.observe(endpoints, policy, now)
        except PrometheusError as exc:
            return FleetObservation(empty, _not_ready("PrometheusUnavailable", str(exc)),
                                    None)
        if view.version is None:
            detail = "; ".join(view.errors) or "they export no window counters yet"
            return FleetObservation(view, _not_ready(
                "NoCounters", f"no counters from service {target.service}: {detail}"), None)
        self.references = self.shared_references.for_service(self.namespace, target.service)
        profile = self.references.profile(view.version, endpoints, self.session)
        if profile is None:
            return FleetObservation(view, _not_ready(
                "NoReference", f"no replica of service {target.service} serves the "
                f"reference of {view.version}"), None)
        report = judge_fleet(profile, view, policy, self.references.predictor(view.version),
                             now)
        unread = f"; unreadable: {'; '.join(view.errors)}" if view.errors else ""
        return FleetObservation(view, Condition(
            "Ready", "True", "Evaluating", f"{view.replicas} replicas of service "
            f"{target.service} serving {view.version}{unread}"), report)

    def _source(self, target: Target) -> ScrapeSource | PrometheusSource:
        if target.prometheus_url is None:
            return self._scrape
        selector = target.prometheus_selector or (
            f'namespace="{self.namespace}",service="{target.service}"')
        return PrometheusSource(self.session, target.prometheus_url, selector,
                                self.config.scrape_timeout)

    # -- retraining Jobs ---------------------------------------------------------------

    def _read_job(self) -> JobSeen | None:
        assert self.memory is not None
        request = self.memory.retrain
        if request is None or not request.handle:
            return None
        job = self.kube.get_job(self.namespace, request.handle)
        if job is None:
            return JobSeen(request.handle, MISSING)
        state, why = job_state(job)
        messages = () if state == RUNNING else tuple(
            self.kube.termination_messages(self.namespace, request.handle))
        return JobSeen(request.handle, state, why, messages)

    def _adopt_running_job(self, now: float) -> list[Event]:
        """After a restart that lost the memory: follow a Job of the policy that still
        runs rather than start another (at most one per policy)."""
        assert self.memory is not None
        if self.memory.retrain is not None:
            return []
        running = [j for j in self.kube.policy_jobs(self.namespace, self.name)
                   if job_state(j)[0] == RUNNING]
        if not running:
            return []
        job = running[-1]
        name = job["metadata"]["name"]
        request = request_of(job) or RetrainRequest(  # a Job from before annotations
            self.memory.engine.retrains, self.memory.engine.episode_start or now, "?", now)
        self.memory, events = adopted(self.memory, replace(request, handle=name), name, now)
        return events

    def _create_job(self, action: CreateJob, step: Step, policy: DriftPolicy, target: Target,
                    body: Mapping[str, Any], observed: FleetObservation,
                    generation: int | None, status: Mapping[str, Any], now: float
                    ) -> tuple[Step, str | None]:
        """Create the Job the step asked for, on the volume its Deployment mounts (checked
        again now); returns the step, and why the policy is refused (then no Job)."""
        def failed(reason: str) -> tuple[Step, None]:
            return start_failed(step, policy, observed, generation, status, now, reason), None

        try:
            volume = verify_volume(self.kube, self.namespace, policy, target)
        except PolicyError as exc:
            self.volume_check = (generation, now, str(exc))
            return step, str(exc)
        except (LookupError, ApiException) as exc:
            return failed(f"cannot start the retraining Job: {_reason(exc)}")
        affinity = merge_affinity(self.config.job.affinity,
                                  colocation(volume, self._access_modes(volume.claim)))
        if not self.config.job.image:
            return failed("no image for the retraining Job: set DRIFTKEEPER_IMAGE or "
                          "DRIFTKEEPER_JOB_SETTINGS.image on the operator")
        manifest = retrain_job(policy, self.namespace, action.request, self.config.job,
                               volume, affinity)
        kopf.adopt(manifest, owner=dict(body))
        try:
            job = self.kube.create_job(manifest)
        except (ApiException, RuntimeError) as exc:
            return failed(f"cannot create the retraining Job: {_reason(exc)}")
        found = request_of(job)
        if found is None or not found.same_retrain(action.request):
            return failed(f"a Job named {action.name} already exists for another retrain "
                          f"(annotations {found.to_dict() if found else 'none'}): not "
                          f"adopted; delete it to retrain")
        step.events.append(Event("Normal", "RetrainJobCreated",
                                 f"Job {action.name} retrains on labels since "
                                 f"{_stamp(action.request.since)}", now))
        if self.metrics is not None:
            self.metrics.retrain(self.namespace, self.name, "started")
        return step, None

    def _access_modes(self, claim: str) -> list[str] | None:
        try:
            pvc = self.kube.get_claim(self.namespace, claim)
        except ApiException as exc:
            log.warning("%s/%s: cannot read claim %s (%s): the Job gets no co-location",
                        self.namespace, self.name, claim, exc.reason)
            return None
        return ((pvc or {}).get("spec") or {}).get("accessModes")

    def _volume_refusal(self, policy: DriftPolicy, target: Target, generation: int | None,
                        now: float) -> str | None:
        """Why the policy's volume is refused (None: it is not, or it cannot be told yet),
        from the target Deployment, read at most every VOLUME_RECHECK seconds for a spec."""
        if not policy.retraining.enabled:
            return None  # it never makes a Job: no volume to check
        check = self.volume_check
        if check is not None and check[0] == generation and now - check[1] < VOLUME_RECHECK:
            return check[2]
        try:
            verify_volume(self.kube, self.namespace, policy, target)
            refusal = None
        except PolicyError as exc:
            refusal = str(exc)
        except (LookupError, ApiException):
            refusal = None  # not a refusal: a retrain would say why it cannot start
        self.volume_check = (generation, now, refusal)
        return refusal


RETRAIN_OUTCOMES = {"ModelPromoted": "promoted", "PromotionRejected": "rejected",
                    "RetrainFailed": "failed", "WaitingForLabels": None}
NOT_READY_REASONS = ("EndpointsUnreadable", "NoReadyEndpoints", "PrometheusUnavailable",
                     "NoCounters", "NoReference")


def invalid_status(body: Mapping[str, Any], message: str, now: float) -> dict[str, Any]:
    """Phase Invalid and Ready=False saying why (the engine's memory is left as it is)."""
    generation = (body.get("metadata") or {}).get("generation")
    previous = list((body.get("status") or {}).get("conditions") or [])
    ready = Condition("Ready", "False", "InvalidSpec", message)
    return {"phase": INVALID, "observedGeneration": generation,
            "conditions": status_conditions([], ready, previous, generation, now)}


def _not_ready(reason: str, message: str) -> Condition:
    return Condition("Ready", "False", reason, message)


def _reason(exc: Exception) -> str:
    return getattr(exc, "reason", None) or str(exc)


def _stamp(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))

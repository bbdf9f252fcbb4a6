"""One DriftPolicy's evaluation loop: read the fleet, judge it, decide, act, report.

Every tick: list the target Service's ready endpoints, read their counters (or ask
Prometheus), evaluate the summed windows against the serving version's reference profile,
let the policy engine decide, follow or start the retraining Job, and write the status. The
engine's memory lives in ``status.engine``, so a restarted operator carries on, and finds a
Job that is still running instead of starting a second one.
"""

from __future__ import annotations

import copy
import io
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import kopf
import requests
from kubernetes.client.exceptions import ApiException

from driftkeeper.drift.evaluate import (
    evaluate_concept,
    evaluate_data,
    evaluate_performance,
    evaluate_prediction,
    locate_in_sums,
)
from driftkeeper.drift.profile import ReferenceProfile
from driftkeeper.drift.report import DriftReport
from driftkeeper.errors import PolicyError
from driftkeeper.model.predictor import TreePredictor
from driftkeeper.model.retrain import FAILED, RetrainOutcome
from driftkeeper.policy import API_VERSION, KIND, DriftPolicy, parse_policy
from driftkeeper.policy.engine import (
    Condition,
    Decision,
    EngineState,
    Event,
    Observation,
    retrain_finished,
    step,
)
from driftkeeper.policy.metrics import PolicyMetrics

from .builders import (
    RUNNING,
    Target,
    job_outcome,
    job_state,
    report_status,
    retrain_job,
    retrain_record,
    rfc3339,
)
from .builders import conditions as status_conditions
from .config import OperatorConfig
from .counters import (
    data_window_of,
    estimate_window_of,
    prediction_window_of,
    residual_window_of,
    segment_window_of,
)
from .kube import Endpoint, Kube
from .sources import FleetView, PrometheusError, PrometheusSource, ScrapeSource

log = logging.getLogger("driftkeeper.operator")

PROFILE_CACHE = 4  # reference profiles kept per policy (the serving version and a few before)


def parse_for_cluster(name: str, spec: Mapping[str, Any]) -> tuple[DriftPolicy, Target]:
    """A DriftPolicy as the operator needs it: valid, and naming its target."""
    document = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name},
                "spec": copy.deepcopy(dict(spec))}
    policy = parse_policy(document)
    if "target" not in policy.spec:
        raise PolicyError("required on Kubernetes: the model Service to watch",
                          field="spec.target")
    return policy, Target.from_spec(policy.spec)


@dataclass
class Memory:
    """What the operator remembers of a policy between ticks (``status.engine``)."""

    state: EngineState = field(default_factory=EngineState)
    labels_baseline: float | None = None  # the fleet's label count when the episode began
    job: str | None = None  # the retraining Job being followed
    last_retrain: dict[str, Any] | None = None

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> Memory:
        engine = dict(status.get("engine") or {})
        baseline, job = engine.pop("labelsBaseline", None), engine.pop("job", None)
        last = status.get("lastRetrain")
        return cls(EngineState.from_dict(engine), baseline, job,
                   dict(last) if last else None)

    def to_status(self) -> dict[str, Any]:
        return {**self.state.to_dict(), "labelsBaseline": self.labels_baseline,
                "job": self.job}


@dataclass(frozen=True)
class TickResult:
    delay: float  # seconds until the next tick
    events: list[Event]  # to post as Kubernetes events on the policy
    status: dict[str, Any] | None  # what was written to the status


class PolicyWorker:
    """The loop of one policy; the Kopf daemon calls :meth:`tick` every interval."""

    def __init__(self, name: str, namespace: str, kube: Kube, config: OperatorConfig,
                 session: requests.Session | None = None,
                 clock: Callable[[], float] = time.time,
                 metrics: PolicyMetrics | None = None) -> None:
        self.name, self.namespace = name, namespace
        self.kube, self.config = kube, config
        self.metrics = metrics
        self.session = session or requests.Session()
        self.clock = clock
        self.memory: Memory | None = None
        self.profiles: dict[str, ReferenceProfile] = {}
        self.predictors: dict[str, TreePredictor | None] = {}  # by version, for impacts
        self._scrape = ScrapeSource(self.session, config.scrape_timeout, horizon=3600.0)
        self._events: list[Event] = []

    # -- the tick ----------------------------------------------------------------------

    def tick(self, body: Mapping[str, Any]) -> TickResult:
        now = self.clock()
        self._events = []
        status = dict(body.get("status") or {})
        try:
            policy, target = parse_for_cluster(self.name, body.get("spec") or {})
        except PolicyError:
            return TickResult(5.0, [], None)  # the spec handler has said why (Invalid)
        if self.memory is None:
            self.memory = Memory.from_status(status)
            self._adopt_running_job(now)
        memory = self.memory

        view, ready, report = self._observe(policy, target, now)
        if memory.job is not None:
            self._follow_job(now)
        fresh = 0
        if memory.state.episode_start is not None and memory.labels_baseline is not None:
            fresh = max(round(view.labels - memory.labels_baseline), 0)
        observation = Observation.from_report(report) if report else None
        decision = step(policy, memory.state, observation, now, fresh_labels=fresh,
                        serving_version=view.version)
        self._apply(decision)
        if memory.state.episode_start is None:
            memory.labels_baseline = None
        elif memory.labels_baseline is None:
            memory.labels_baseline = view.labels
        if decision.start_retrain:
            self._start_job(policy, body, now)
        phase = decision.phase
        if memory.job is not None and memory.state.retrain_started is None:
            memory.job = None  # the engine gave up on it (cannot happen; keep them in step)
        doc = self._status(body, status, decision, phase, ready, report, view, now)
        self.kube.patch_status(self.namespace, self.name, doc)
        if self.metrics is not None:
            self.metrics.record(self.namespace, self.name, phase, memory.state.failures,
                                policy.retraining.max_failures, observation)
        return TickResult(max(policy.interval, self.config.min_interval), self._events, doc)

    # -- reading the fleet -------------------------------------------------------------

    def _observe(self, policy: DriftPolicy, target: Target, now: float
                 ) -> tuple[FleetView, Condition, DriftReport | None]:
        from .counters import total

        empty = FleetView(None, 0, total([]), total([]), 0.0)
        try:
            endpoints = self.kube.ready_endpoints(self.namespace, target.service, target.port)
        except ApiException as exc:
            return empty, _not_ready("EndpointsUnreadable", f"cannot list the endpoints of "
                                     f"service {target.service}: {exc.reason}"), None
        if not endpoints:
            return empty, _not_ready("NoReadyEndpoints", f"service {target.service} has no "
                                     f"ready endpoints on port {target.port!r}"), None
        source = self._source(target)
        try:
            view = source.observe(endpoints, policy, now)
        except PrometheusError as exc:
            return empty, _not_ready("PrometheusUnavailable", str(exc)), None
        if view.version is None:
            detail = "; ".join(view.errors) or "they export no window counters yet"
            return view, _not_ready("NoCounters", f"no counters from service "
                                    f"{target.service}: {detail}"), None
        profile = self._profile(view.version, endpoints)
        if profile is None:
            return view, _not_ready("NoReference", f"no replica of service {target.service} "
                                    f"serves the reference of {view.version}"), None
        concept = evaluate_concept(profile, residual_window_of(profile, view.concept),
                                   policy.monitor.concept)
        if concept.drift:  # where it lives, from the fleet's segment counters
            concept = replace(concept, segments=locate_in_sums(
                profile, segment_window_of(profile, view.concept),
                policy.monitor.concept.segments))
        predictor = self.predictors.get(view.version)
        report = DriftReport(
            evaluate_data(profile, data_window_of(profile, view.data), policy.monitor.data,
                          predict=predictor.predict if predictor else None),
            concept,
            view.version, now,
            prediction=evaluate_prediction(profile, prediction_window_of(profile, view.data),
                                           policy.monitor.prediction),
            performance=evaluate_performance(profile, estimate_window_of(profile, view.data),
                                             policy.monitor.performance))
        unread = f"; unreadable: {'; '.join(view.errors)}" if view.errors else ""
        return view, Condition("Ready", "True", "Evaluating",
                               f"{view.replicas} replicas of service {target.service} serving "
                               f"{view.version}{unread}"), report

    def _source(self, target: Target) -> ScrapeSource | PrometheusSource:
        if target.prometheus_url is None:
            return self._scrape
        selector = target.prometheus_selector or (
            f'namespace="{self.namespace}",service="{target.service}"')
        return PrometheusSource(self.session, target.prometheus_url, selector,
                                self.config.scrape_timeout)

    def _profile(self, version: str, endpoints: list[Endpoint]) -> ReferenceProfile | None:
        """The version's reference profile, from the first replica that serves it."""
        if version in self.profiles:
            return self.profiles[version]
        for endpoint in endpoints:
            try:
                resp = self.session.get(endpoint.url + "/reference",
                                        timeout=self.config.scrape_timeout)
                doc = resp.json() if resp.status_code == 200 else {}
                if doc.get("model_version") != version:
                    continue
                profile = ReferenceProfile.from_dict(doc["profile"])
            except (requests.RequestException, ValueError, KeyError) as exc:
                log.warning("reference of %s from %s: %s", version, endpoint.name, exc)
                continue
            self.profiles[version] = profile
            self.predictors[version] = self._predictor(version, endpoint)
            while len(self.profiles) > PROFILE_CACHE:
                oldest = next(iter(self.profiles))
                self.profiles.pop(oldest)
                self.predictors.pop(oldest, None)
            return profile
        return None

    def _predictor(self, version: str, endpoint: Endpoint) -> TreePredictor | None:
        """The version's exported arrays, to measure each drifted feature's impact (None:
        served from a pickle, which the operator never loads, or unreadable)."""
        try:
            resp = self.session.get(endpoint.url + "/reference/predictor",
                                    timeout=self.config.scrape_timeout)
            if resp.status_code != 200 or resp.headers.get("X-Model-Version") != version:
                return None
            return TreePredictor.load(io.BytesIO(resp.content))
        except (requests.RequestException, ValueError, KeyError, OSError) as exc:
            log.warning("predictor of %s from %s: %s", version, endpoint.name, exc)
            return None

    # -- retraining Jobs ---------------------------------------------------------------

    def _adopt_running_job(self, now: float) -> None:
        """After a restart: follow a Job that still runs rather than start another."""
        memory = self.memory
        assert memory is not None
        if memory.job is not None:
            return
        running = [j for j in self.kube.policy_jobs(self.namespace, self.name)
                   if job_state(j)[0] == RUNNING]
        if not running:
            return
        job = running[-1]
        name = job["metadata"]["name"]
        memory.job = name
        if memory.state.retrain_started is None:
            memory.state = replace(memory.state, retrain_started=now,
                                   retrain_reason=f"adopted the running Job {name}")
        memory.last_retrain = retrain_record(name, memory.state.retrain_started or now)
        self._events.append(Event("Normal", "RetrainAdopted",
                                  f"following the retraining Job {name}, which was already "
                                  f"running", now))

    def _start_job(self, policy: DriftPolicy, body: Mapping[str, Any], now: float) -> None:
        memory = self.memory
        assert memory is not None
        self._adopt_running_job(now)  # at most one Job per policy, whatever the memory says
        if memory.job is not None:
            return
        image = (policy.spec["retraining"].get("job") or {}).get("image") or self.config.image
        if not image:
            self._finish(now, RetrainOutcome(FAILED, "no image for the retraining Job: set "
                                             "DRIFTKEEPER_IMAGE on the operator or "
                                             "spec.retraining.job.image"), job=None)
            return
        since = memory.state.episode_start or now
        manifest = retrain_job(policy, self.namespace, memory.state.retrains, since, image,
                               self.config.job_service_account)
        kopf.adopt(manifest, owner=dict(body))
        try:
            job = self.kube.create_job(manifest)
        except (ApiException, RuntimeError) as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            self._finish(now, RetrainOutcome(FAILED, f"cannot create the retraining Job: "
                                             f"{reason}"), job=None)
            return
        name = job["metadata"]["name"]
        memory.job = name
        memory.last_retrain = retrain_record(name, now)
        if self.metrics is not None:
            self.metrics.retrain(self.namespace, self.name, "started")
        self._events.append(Event("Normal", "RetrainJobCreated",
                                  f"Job {name} retrains on labels since {rfc3339(since)}", now))

    def _follow_job(self, now: float) -> None:
        memory = self.memory
        assert memory is not None and memory.job is not None
        job = self.kube.get_job(self.namespace, memory.job)
        if job is None:
            self._finish(now, RetrainOutcome(FAILED, f"the retraining Job {memory.job} "
                                             f"disappeared before it finished"), memory.job)
            return
        state, why = job_state(job)
        if state == RUNNING:
            return
        messages = self.kube.termination_messages(self.namespace, memory.job)
        self._finish(now, job_outcome(state, why, messages), memory.job)

    def _finish(self, now: float, outcome: RetrainOutcome, job: str | None) -> None:
        memory = self.memory
        assert memory is not None
        started = memory.state.retrain_started or now
        prefix = f"Job {job}: " if job else ""
        self._apply(retrain_finished(memory.state, now, outcome.outcome,
                                     prefix + outcome.reason))
        memory.job = None
        memory.last_retrain = retrain_record(job or "-", started, outcome, now)
        if self.metrics is not None:
            self.metrics.retrain(self.namespace, self.name, outcome.outcome)

    # -- bookkeeping -------------------------------------------------------------------

    def _apply(self, decision: Decision) -> None:
        assert self.memory is not None
        self.memory.state = decision.state
        self._events.extend(decision.events)

    def _status(self, body: Mapping[str, Any], status: Mapping[str, Any], decision: Decision,
                phase: str, ready: Condition, report: DriftReport | None, view: FleetView,
                now: float) -> dict[str, Any]:
        memory = self.memory
        assert memory is not None
        generation = (body.get("metadata") or {}).get("generation")
        doc: dict[str, Any] = {
            "phase": phase, "observedGeneration": generation,
            "modelVersion": view.version, "endpoints": view.replicas,
            "conditions": status_conditions(decision.conditions, ready,
                                            list(status.get("conditions") or []), generation,
                                            now),
            "retrains": memory.state.retrains, "failures": memory.state.failures,
            "lastRetrain": memory.last_retrain, "engine": memory.to_status(),
        }
        if report is not None:
            doc["lastEvaluation"] = rfc3339(now)
            doc.update(report_status(report))
        return doc


def _not_ready(reason: str, message: str) -> Condition:
    return Condition("Ready", "False", reason, message)

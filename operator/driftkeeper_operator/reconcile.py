"""One policy's tick on Kubernetes, pure: (memory, observation, job, policy) → (memory,
actions, status).

The executor (``executor.py``) reads the fleet and the followed Job, calls
:func:`reconcile`, and carries out what comes back. The decisions themselves are the
drivers' shared step (``driftkeeper.policy.reconcile``); this module maps Kubernetes onto
it (a Job's state onto a retrain's end, a retrain request onto a Job) and writes the
status document, so all of it is tested as plain functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from driftkeeper.drift.report import DriftReport
from driftkeeper.policy import DriftPolicy
from driftkeeper.policy import reconcile as shared
from driftkeeper.policy.engine import Condition, Event, Observation
from driftkeeper.policy.reconcile import Memory, RetrainRequest, RetrainSeen

from .builders import RUNNING, job_name, job_outcome, report_status, retrain_record, rfc3339
from .builders import conditions as status_conditions
from .sources import FleetView

MISSING = "missing"


@dataclass(frozen=True)
class FleetObservation:
    """What the executor read of the fleet this tick."""

    view: FleetView
    ready: Condition  # Ready: evaluating, or why not
    report: DriftReport | None  # the fleet's verdicts (None: nothing to judge yet)


@dataclass(frozen=True)
class JobSeen:
    """The followed retraining Job as read this tick."""

    name: str
    state: str  # running | succeeded | failed | missing
    why: str = ""
    messages: tuple[str, ...] = ()  # the retrain container's termination messages


@dataclass(frozen=True)
class CreateJob:
    request: RetrainRequest
    name: str


@dataclass(frozen=True)
class DeleteJob:
    name: str
    reason: str


@dataclass(frozen=True)
class Step:
    """What one tick decided."""

    memory: Memory
    actions: list[CreateJob | DeleteJob]
    status: dict[str, Any]
    events: list[Event]
    phase: str
    observation: Observation | None  # the engine's view of the report (for metrics)


def reconcile(memory: Memory, observed: FleetObservation, job: JobSeen | None,
              policy: DriftPolicy, *, generation: int | None,
              previous: Mapping[str, Any], now: float) -> Step:
    """One tick. ``job`` is the followed Job (None when none is followed); ``previous``
    is the policy's status before this tick (conditions keep their transition times,
    ``lastRetrain`` stays until another retrain ends)."""
    obs = Observation.from_report(observed.report) if observed.report else None
    seen = _seen(job) if memory.retrain is not None and job is not None else None
    done = shared.reconcile(memory, obs, seen, policy, now, generation=str(generation or 0),
                            serving_version=observed.view.version,
                            labels=observed.view.labels)
    actions: list[CreateJob | DeleteJob] = []
    after = done.memory
    for action in done.actions:
        if isinstance(action, shared.StartRetrain):
            request = replace(action.request, handle=job_name(policy.name, action.request))
            after = replace(after, retrain=request)
            actions.append(CreateJob(request, request.handle or ""))
        elif job is not None:
            actions.append(DeleteJob(job.name, action.reason))
    status = status_document(after, done.decision.phase, done.decision.conditions,
                             observed, policy.name, generation, previous, now)
    return Step(after, actions, status, done.decision.events, done.decision.phase, obs)


def _seen(job: JobSeen) -> RetrainSeen:
    """A Job's state as the end (or not) of a retrain."""
    if job.state == RUNNING:
        return RetrainSeen(True)
    if job.state == MISSING:
        return RetrainSeen(False, detail=f"Job {job.name}: the retraining Job disappeared "
                           "before it finished")
    outcome = job_outcome(job.state, job.why, list(job.messages))
    return RetrainSeen(False, replace(outcome, reason=f"Job {job.name}: {outcome.reason}"))


def start_failed(step: Step, policy: DriftPolicy, observed: FleetObservation,
                 generation: int | None, previous: Mapping[str, Any], now: float,
                 reason: str) -> Step:
    """The Job just asked for could not be created: the retrain counts as failed."""
    done = shared.retrain_failed_to_start(step.memory, now, reason)
    idle = Condition("Retraining", "False", "Idle", "no retrain running")
    engine = [idle if c.type == "Retraining" else c for c in _engine_conditions(step)]
    status = status_document(done.memory, done.decision.phase, engine, observed,
                             policy.name, generation, previous, now)
    return replace(step, memory=done.memory, actions=[], status=status,
                   events=[*step.events, *done.decision.events], phase=done.decision.phase)


def adopted(memory: Memory, request: RetrainRequest, name: str, now: float) -> tuple[
        Memory, list[Event]]:
    """Follow a running Job the memory did not know (after a restart lost the status)."""
    done = shared.adopt(memory, request, now, f"retraining Job {name}")
    return done.memory, done.decision.events


def _engine_conditions(step: Step) -> list[Condition]:
    return [Condition(c["type"], c["status"], c["reason"], c["message"])
            for c in step.status.get("conditions", []) if c["type"] != "Ready"]


def status_document(memory: Memory, phase: str, engine_conditions: list[Condition],
                    observed: FleetObservation, policy_name: str, generation: int | None,
                    previous: Mapping[str, Any], now: float) -> dict[str, Any]:
    """``status`` of the DriftPolicy after a tick."""
    view, report = observed.view, observed.report
    doc: dict[str, Any] = {
        "phase": phase, "observedGeneration": generation,
        "modelVersion": view.version, "endpoints": view.replicas,
        "conditions": status_conditions(engine_conditions, observed.ready,
                                        list(previous.get("conditions") or []), generation,
                                        now),
        "retrains": memory.engine.retrains, "failures": memory.engine.failures,
        "lastRetrain": last_retrain(memory, policy_name, previous),
        "engine": memory.to_dict(),
    }
    if report is not None:
        doc["lastEvaluation"] = rfc3339(now)
        doc.update(report_status(report))
    return doc


def last_retrain(memory: Memory, policy_name: str, previous: Mapping[str, Any]
                 ) -> dict[str, Any] | None:
    """``status.lastRetrain``: the running one, the one that just ended, or as before."""
    if memory.retrain is not None:
        return retrain_record(memory.retrain.handle or job_name(policy_name, memory.retrain),
                              memory.retrain.started)
    if memory.finished is not None:
        done = memory.finished
        name = (done.request.handle or job_name(policy_name, done.request)) if done.ran else "-"
        return retrain_record(name, done.request.started, done.outcome, done.at)
    last = previous.get("lastRetrain")
    return dict(last) if last else None


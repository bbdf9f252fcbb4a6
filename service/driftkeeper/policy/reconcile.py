"""One policy's control step, the same for the Kubernetes operator and the local driver.

The caller reads the world (the newest evaluation, the replicas' label counters, the
retrain it follows), calls :func:`reconcile`, and carries out the actions it returns
(start a retrain, stop one); this module only decides. So every rule that the two drivers
share is written and tested once, without a cluster, a service or a clock:

* fresh labels since the drift episode began (``labels.py``: reset-aware per replica);
* at most one retrain, followed to its end, stopped when it overruns its timeout;
* what its outcome does (``engine.retrain_finished``: failure budget, cooldown, waiting);
* a retrain found running after a restart is followed, never duplicated, and one asked
  for under another policy generation or episode is never taken for the current one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..model.retrain import FAILED, WAITING, RetrainOutcome
from . import DriftPolicy
from .engine import Decision, EngineState, Event, Observation, retrain_finished, step
from .labels import LabelReading, LabelTally

TIMEOUT_GRACE = 60.0
"""Seconds past ``retraining.timeout`` before the driver stops a retrain itself (a
Kubernetes Job's own deadline should end it first)."""


@dataclass(frozen=True)
class RetrainRequest:
    """One retrain as it was asked for. Its identity (a Job's name and annotations carry
    it) is the policy generation and the episode start: the same request is the same
    retrain, whoever finds it again."""

    number: int  # the n-th retrain of the policy
    since: float  # the drift episode's start: labels from then on train and judge
    generation: str  # the policy generation it was asked under
    started: float  # when it was asked for
    handle: str | None = None  # what the driver follows: a Job's name, a process id

    @property
    def key(self) -> str:
        """A short stable name for (generation, since)."""
        blob = f"{self.generation}/{self.since!r}".encode()
        return hashlib.sha256(blob).hexdigest()[:10]

    def same_retrain(self, other: RetrainRequest) -> bool:
        return self.generation == other.generation and self.since == other.since

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "since": self.since, "generation": self.generation,
                "started": self.started, "handle": self.handle}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> RetrainRequest | None:
        try:
            return cls(int(doc["number"]), float(doc["since"]), str(doc["generation"]),
                       float(doc["started"]), doc.get("handle")) if doc else None
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class RetrainSeen:
    """The followed retrain, as the caller found it this tick."""

    running: bool
    outcome: RetrainOutcome | None = None  # when it ended with one
    detail: str = ""  # when it ended without one: why (it vanished, it crashed ...)


@dataclass(frozen=True)
class Finished:
    """The last retrain that ended (not persisted: the status records it)."""

    request: RetrainRequest
    outcome: RetrainOutcome
    at: float
    ran: bool = True  # False: it could not even be started


@dataclass(frozen=True)
class Memory:
    """What a driver remembers of a policy between ticks (persisted by the caller)."""

    engine: EngineState = field(default_factory=EngineState)
    retrain: RetrainRequest | None = None  # the retrain being followed
    labels: LabelTally = field(default_factory=LabelTally)
    finished: Finished | None = None  # the retrain that ended this tick

    def to_dict(self) -> dict[str, Any]:
        return {**self.engine.to_dict(),
                "retrain": self.retrain.to_dict() if self.retrain else None,
                "labels": self.labels.to_dict()}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> Memory:
        doc = dict(doc or {})
        retrain = RetrainRequest.from_dict(doc.pop("retrain", None))
        labels = LabelTally.from_dict(doc.pop("labels", None))
        return cls(EngineState.from_dict(doc), retrain, labels)


@dataclass(frozen=True)
class StartRetrain:
    request: RetrainRequest


@dataclass(frozen=True)
class StopRetrain:
    request: RetrainRequest
    reason: str


Action = StartRetrain | StopRetrain


@dataclass(frozen=True)
class Reconciled:
    memory: Memory
    decision: Decision  # phase, conditions and the events to post
    actions: list[Action]


def reconcile(memory: Memory, obs: Observation | None, retrain: RetrainSeen | None,
              policy: DriftPolicy | None, now: float, *, generation: str,
              serving_version: str | None = None,
              labels: Mapping[str, LabelReading] | None = None,
              fresh_labels: int | None = None, policy_error: str | None = None,
              timeout_grace: float = TIMEOUT_GRACE) -> Reconciled:
    """One step: follow the retrain, count fresh labels, let the engine decide, and say
    what to start or stop.

    ``retrain`` is what the caller found of ``memory.retrain`` (None: nothing followed);
    ``labels`` are the replicas' label counters (the operator), or ``fresh_labels`` a
    count the caller made itself (the local driver counts the feedback files, as the
    retrain does); ``generation`` names the policy's version (a Kubernetes object's
    ``metadata.generation``, or a hash of the spec)."""
    followed = follow(memory, retrain, policy, now, timeout_grace)
    memory, events, actions = followed.memory, list(followed.decision.events), followed.actions
    state, finished, request = memory.engine, memory.finished, memory.retrain

    tally = memory.labels
    if labels is not None:
        tally = tally.advance(labels, now, state.episode_start)
    fresh = tally.fresh if fresh_labels is None else fresh_labels
    if state.episode_start is None:
        fresh = 0
    decision = step(policy, state, obs, now, policy_error=policy_error, fresh_labels=fresh,
                    serving_version=serving_version)
    state = decision.state
    if decision.start_retrain:
        request = RetrainRequest(state.retrains, state.episode_start or now, generation, now)
        actions.append(StartRetrain(request))
    if state.episode_start is None:
        tally = replace(tally, fresh=0)
    return Reconciled(Memory(state, request, tally, finished),
                      replace(decision, events=[*events, *decision.events]), actions)


def follow(memory: Memory, retrain: RetrainSeen | None, policy: DriftPolicy | None,
           now: float, timeout_grace: float = TIMEOUT_GRACE) -> Reconciled:
    """The followed retrain: runs on, overran its timeout (stop it), or ended (record its
    outcome: failure budget, cooldown, or waiting for labels)."""
    request = memory.retrain
    none = Decision(memory.engine, "", [], [])
    if request is None or retrain is None:
        return Reconciled(replace(memory, finished=None), none, [])
    actions: list[Action] = []
    ended = _ended(request, retrain, policy, now, timeout_grace)
    if isinstance(ended, StopRetrain):
        actions.append(ended)
        ended = RetrainOutcome(FAILED, ended.reason)
    if ended is None:
        return Reconciled(replace(memory, finished=None), none, actions)
    found = ended.rows.get("found") if ended.outcome == WAITING else None
    done = retrain_finished(memory.engine, now, ended.outcome, ended.reason,
                            labels_found=found)
    return Reconciled(replace(memory, engine=done.state, retrain=None,
                              finished=Finished(request, ended, now)), done, actions)


def _ended(request: RetrainRequest, seen: RetrainSeen, policy: DriftPolicy | None,
           now: float, grace: float) -> RetrainOutcome | StopRetrain | None:
    """How the followed retrain ended this tick (None: it runs on)."""
    if seen.running:
        if policy is not None and now - request.started > policy.retraining.timeout + grace:
            return StopRetrain(request, f"retraining exceeded its timeout of "
                               f"{policy.retraining.timeout:.0f}s and was stopped")
        return None
    if seen.outcome is not None:
        return seen.outcome
    return RetrainOutcome(FAILED, seen.detail or "the retrain ended without an outcome")


def retrain_failed_to_start(memory: Memory, now: float, reason: str) -> Reconciled:
    """The caller could not start the retrain just asked for: it counts as failed."""
    assert memory.retrain is not None
    done = retrain_finished(memory.engine, now, FAILED, reason)
    outcome = RetrainOutcome(FAILED, reason)
    return Reconciled(replace(memory, engine=done.state, retrain=None,
                              finished=Finished(memory.retrain, outcome, now, ran=False)),
                      done, [])


def adopt(memory: Memory, request: RetrainRequest, now: float, what: str) -> Reconciled:
    """Follow a retrain found running that the memory did not know (a restart lost it):
    never start a second one beside it."""
    state = memory.engine
    if state.retrain_started is None:
        state = replace(state, retrain_started=request.started or now,
                        retrain_reason=f"adopted the running {what}",
                        episode_start=state.episode_start or request.since)
    event = Event("Normal", "RetrainAdopted", f"following the {what}, which was already "
                  f"running", now)
    decision = Decision(state, "Retraining", [], [event])
    return Reconciled(replace(memory, engine=state, retrain=request), decision, [])

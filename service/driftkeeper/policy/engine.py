"""The policy engine: pure decisions, no I/O.

Given a DriftPolicy, the latest observation from the service and the remembered state, it
decides the verdicts and conditions to report, whether a retrain should start and whether one
is allowed (one at a time, cooldown, failure budget, suspend, enough fresh labels), and what
to say about it. The local driver and the Kubernetes operator both call it; each only does
the I/O around it (reading metrics, starting training, writing status).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

from ..drift.report import ConceptVerdict, DriftReport
from . import DriftPolicy

KINDS = ("data", "concept", "prediction", "performance")
CONDITION_TYPES = {"data": "DataDrift", "concept": "ConceptDrift",
                   "prediction": "PredictionDrift", "performance": "PerformanceDrift"}
# Prediction drift's statistic by method.
METHOD_WORDS = {"ks": "KS statistic", "psi": "PSI", "wasserstein": "Wasserstein distance"}
# How a condition message names each judged statistic (DataVerdict.statistic_name).
STATISTIC_LABELS = {"max_feature_ratio": "largest feature score over its threshold",
                    "drifted_share": "share of drifted features", "mean_score": "mean score",
                    "rmse_increase": "RMSE increase",
                    "estimated_rmse_increase": "estimated RMSE increase (before labels)",
                    # prediction drift: its method's score
                    **{m: f"predictions' {w}" for m, w in METHOD_WORDS.items()}}

# Phases, in the order a user would read them on `kubectl get driftpolicies`.
MONITORING = "Monitoring"  # verdicts are in, nothing to do
INSUFFICIENT_DATA = "InsufficientData"  # windows below minSamples: no verdict yet
DRIFTING = "Drifting"  # drift seen, not (yet) retraining
RETRAINING = "Retraining"
COOLDOWN = "Cooldown"
SUSPENDED = "Suspended"
DEGRADED = "Degraded"  # failure budget spent: retraining stopped until the policy changes
INVALID = "Invalid"  # the policy does not validate


@dataclass(frozen=True)
class Observation:
    """What the service reported at one evaluation (verdicts under the pushed thresholds)."""

    evaluated_at: float
    model_version: str | None
    drift: dict[str, bool | None]  # kind -> verdict (None = insufficient data)
    scores: dict[str, float | None] = field(default_factory=dict)
    thresholds: dict[str, float | None] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)
    drifted_features: tuple[str, ...] = ()
    concept_tests: tuple[str, ...] = ()  # which concept tests fired: rmse, residual_ks, bias
    # What each verdict was judged on, to say so: feature -> (method, score, threshold) for
    # drifted features; concept test -> (statistic, threshold).
    feature_checks: dict[str, tuple[str, float, float]] = field(default_factory=dict)
    concept_checks: dict[str, tuple[float, float]] = field(default_factory=dict)
    # The statistic behind ``scores`` by kind (data: by the rule; concept: rmse_increase).
    statistics: dict[str, str] = field(default_factory=dict)
    # Drifted features' signed effect on the mean prediction (where it was measured).
    prediction_shifts: dict[str, float] = field(default_factory=dict)
    # Where concept drift lives, as sentences ("color D, E, F: price 24 % above the model").
    concept_locations: tuple[str, ...] = ()

    @classmethod
    def from_report(cls, report: DriftReport) -> Observation:
        """The engine's view of a drift report (the operator evaluates reports itself)."""
        data, concept, prediction = report.data, report.concept, report.prediction
        performance = report.performance
        drift: dict[str, bool | None] = {
            "data": data.drift, "concept": concept.drift if concept else None,
            "prediction": prediction.drift if prediction else None,
            "performance": performance.drift if performance else None}
        return cls(
            evaluated_at=report.evaluated_at or 0.0, model_version=report.model_version,
            drift=drift,
            scores={"data": data.statistic, "concept": concept.score if concept else None,
                    "prediction": prediction.score if prediction else None,
                    "performance": performance.score if performance else None},
            thresholds={"data": data.threshold,
                        "concept": concept.threshold if concept else None,
                        "prediction": prediction.threshold if prediction else None,
                        "performance": performance.threshold if performance else None},
            samples={"data": data.samples, "concept": concept.samples if concept else 0,
                     **({"prediction": prediction.samples} if prediction else {}),
                     **({"performance": performance.samples} if performance else {})},
            drifted_features=tuple(sorted(data.drifted_features)),
            concept_tests=tuple(sorted(concept.reasons)) if concept else (),
            feature_checks={name: (f.method, f.score, f.threshold)
                            for name, f in data.features.items()
                            if f.drift and f.score is not None},
            concept_checks=_concept_checks(concept) if concept else {},
            prediction_shifts={name: f.impact_shift for name, f in data.features.items()
                               if f.drift and f.impact_shift is not None},
            concept_locations=tuple(loc.message for loc in concept.segments.locations)
            if concept and concept.segments else (),
            statistics={"data": data.statistic_name, "concept": "rmse_increase",
                        **({"prediction": _prediction_statistic(report)} if prediction
                           else {}),
                        **({"performance": "estimated_rmse_increase"} if performance
                           else {})})



def _prediction_statistic(report: DriftReport) -> str:
    """The prediction verdict's statistic: its method, or for a multiclass model whose
    verdict is one class's test, that class's ("P(barolo)'s KS statistic")."""
    verdict = report.prediction
    assert verdict is not None
    for name, each in (report.class_predictions or {}).items():
        if each == verdict:
            return f"P({name})'s {METHOD_WORDS.get(verdict.method, verdict.method)}"
    return verdict.method


@dataclass(frozen=True)
class Event:
    type: str  # "Normal" or "Warning", as Kubernetes events
    reason: str  # CamelCase, e.g. DriftDetected
    message: str
    time: float

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "reason": self.reason, "message": self.message,
                "time": self.time}


@dataclass(frozen=True)
class Condition:
    type: str  # DataDrift, ConceptDrift, Retraining, PolicyValid
    status: str  # "True", "False", "Unknown"
    reason: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "status": self.status, "reason": self.reason,
                "message": self.message}


@dataclass(frozen=True)
class EngineState:
    """What the engine remembers between observations (persisted by its caller)."""

    breaches: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    drifting: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(KINDS, False))
    last_evaluation: float | None = None
    episode_start: float | None = None  # first drifted evaluation of the current episode
    retrain_started: float | None = None  # set while a retrain runs
    retrain_reason: str | None = None
    last_retrain_end: float | None = None
    failures: int = 0  # failed retrains in a row
    retrains: int = 0  # retrains started, ever
    policy_generation: str | None = None
    blocked_by: str | None = None  # the reason a due retrain is held back, said once
    labels_at_start: int | None = None  # fresh labels counted when the retrain started
    # Labels the driver's count runs ahead of the retrain's (a retrain that found too few
    # on disk said so): a new retrain waits until the count exceeds the need by this much.
    label_offset: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineState:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class Decision:
    state: EngineState
    phase: str
    conditions: list[Condition]
    events: list[Event]
    start_retrain: bool = False
    retrain_reason: str | None = None


def policy_generation(policy: DriftPolicy) -> str:
    """A short hash of the spec: a changed policy resets the failure budget."""
    blob = json.dumps(policy.spec, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _concept_checks(concept: ConceptVerdict) -> dict[str, tuple[float, float]]:
    checks = {"rmse": (concept.score, concept.threshold),
              "residual_ks": (concept.residual_ks.score, concept.residual_ks.threshold),
              "bias": (concept.bias_test.score, concept.bias_test.threshold)}
    if concept.log_loss_test is not None:
        checks["log_loss"] = (concept.log_loss_test.score, concept.log_loss_test.threshold)
    return {test: (score, threshold) for test, (score, threshold) in checks.items()
            if score is not None}


CONCEPT_TEST_NAMES = {"rmse": "RMSE increase", "residual_ks": "residual KS",
                      "bias": "mean residual shift", "log_loss": "log loss increase"}


def _judged(kind: str, obs: Observation) -> str | None:
    """What the verdict rests on, in the test's own terms: the drifted features' scores
    against their thresholds, or the concept tests that fired, each with its statistic."""
    if kind == "data" and obs.feature_checks:
        return "; ".join(f"{name}: {method} {score:.4f} vs threshold {threshold:.4f}"
                         + _moved(obs.prediction_shifts.get(name))
                         for name, (method, score, threshold)
                         in sorted(obs.feature_checks.items()))
    if kind == "concept" and obs.concept_tests and obs.concept_checks:
        fired = [t for t in obs.concept_tests if t in obs.concept_checks]
        return "; ".join(f"{CONCEPT_TEST_NAMES.get(t, t)} {obs.concept_checks[t][0]:.4f} vs "
                         f"threshold {obs.concept_checks[t][1]:.4f}" for t in fired) or None
    return None


# Kinds a policy may turn off, or an older model version may lack, and what to say then.
NOT_MONITORED = {
    "prediction": "prediction drift is off, or the serving version has no reference of its "
                  "predictions (retrain it)",
    "performance": "estimated performance is off, or the serving version has no loss model "
                   "(retrain it)",
}


def _moved(shift: float | None) -> str:
    """", moved predictions +17 %" (empty when the impact was not measured)."""
    if shift is None:
        return ""
    pct = 100.0 * shift
    return f", moved predictions {pct:+.{1 if abs(pct) < 10 else 0}f} %"


def _drift_condition(kind: str, verdict: bool | None, obs: Observation | None) -> Condition:
    ctype = CONDITION_TYPES[kind]
    if kind in NOT_MONITORED and obs is not None and kind not in obs.samples:
        return Condition(ctype, "Unknown", "NotMonitored", NOT_MONITORED[kind])
    if obs is None or verdict is None:
        samples = obs.samples.get(kind, 0) if obs else 0
        return Condition(ctype, "Unknown", "InsufficientData",
                         f"{samples} rows in the window; no verdict yet")
    score, threshold = obs.scores.get(kind), obs.thresholds.get(kind)
    detail = "see the drift report"
    judged = _judged(kind, obs) if verdict else None
    if judged:
        detail = judged
    elif score is not None and threshold is not None:
        name = obs.statistics.get(kind, "rmse_increase" if kind == "concept" else "mean_score")
        detail = f"{STATISTIC_LABELS.get(name, name)} {score:.4f} vs threshold {threshold:.4f}"
    if kind == "data" and obs.drifted_features and not judged:
        detail += f"; drifted: {', '.join(obs.drifted_features)}"
    if kind == "concept" and obs.concept_tests and not judged:
        detail += f"; tests fired: {', '.join(obs.concept_tests)}"
    if kind == "concept" and verdict and obs.concept_locations:
        detail += f"; where: {'; '.join(obs.concept_locations)}"
    if verdict:
        return Condition(ctype, "True", "DriftDetected", detail)
    return Condition(ctype, "False", "WithinThreshold", detail)


def step(policy: DriftPolicy | None, state: EngineState, obs: Observation | None, now: float,
         *, policy_error: str | None = None, fresh_labels: int = 0,
         serving_version: str | None = None) -> Decision:
    """One decision.

    ``obs`` is the newest evaluation (None if the service could not be read);
    ``fresh_labels`` the labelled rows that arrived since the episode started (what a retrain
    would learn from); ``serving_version`` the model currently promoted (evaluations of an
    older model are not counted, they measure what is already being replaced).
    """
    events: list[Event] = []
    if policy is None:  # act on nothing until the policy is fixed; say so once per error
        message = policy_error or "no policy"
        blocker = f"InvalidPolicy: {message}"
        if blocker != state.blocked_by:
            events.append(Event("Warning", "InvalidPolicy", message, now))
        return Decision(replace(state, blocked_by=blocker), INVALID,
                        [Condition("PolicyValid", "False", "InvalidSpec", message)], events)
    generation = policy_generation(policy)
    if generation != state.policy_generation:
        if state.policy_generation is not None and state.failures:
            events.append(Event("Normal", "FailureBudgetReset",
                                "policy changed: failed retrains are forgotten", now))
        state = replace(state, policy_generation=generation, failures=0)

    counted = (obs is not None
               and (state.last_evaluation is None or obs.evaluated_at > state.last_evaluation)
               and (serving_version is None or obs.model_version == serving_version))
    if counted:
        assert obs is not None
        breaches, drifting = dict(state.breaches), dict(state.drifting)
        for kind in KINDS:
            verdict = obs.drift.get(kind)
            breaches[kind] = breaches.get(kind, 0) + 1 if verdict else 0
            if verdict and not drifting.get(kind, False):
                drifting[kind] = True
                events.append(Event("Warning", "DriftDetected",
                                    f"{kind} drift: {_drift_condition(kind, verdict, obs).message}",
                                    now))
            elif verdict is False and drifting.get(kind, False):
                drifting[kind] = False
                events.append(Event("Normal", "DriftCleared", f"{kind} drift is back within "
                                    "its threshold", now))
        episode_start = state.episode_start
        if any(drifting.values()) and episode_start is None:
            episode_start = obs.evaluated_at
        if not any(drifting.values()) and state.retrain_started is None:
            episode_start = None
        state = replace(state, breaches=breaches, drifting=drifting,
                        last_evaluation=obs.evaluated_at, episode_start=episode_start,
                        label_offset=state.label_offset if episode_start is not None else 0)

    conditions = [_drift_condition(k, obs.drift.get(k) if obs else None, obs) for k in KINDS]
    conditions.append(Condition("PolicyValid", "True", "Valid", f"policy {policy.name}"))
    decision = _retrain_decision(policy, state, now, fresh_labels, events)
    retraining = state.retrain_started is not None
    conditions.append(Condition(
        "Retraining", "True" if retraining or decision.start_retrain else "False",
        "Running" if retraining or decision.start_retrain else "Idle",
        state.retrain_reason or decision.retrain_reason or "no retrain running"))
    return replace(decision, conditions=conditions, events=events)


def _retrain_decision(policy: DriftPolicy, state: EngineState, now: float, fresh_labels: int,
                      events: list[Event]) -> Decision:
    r = policy.retraining
    due = [k for k in r.triggers if state.breaches.get(k, 0) >= policy.consecutive_breaches]
    drifting = any(state.drifting.values())
    base_phase = DRIFTING if drifting else (
        MONITORING if state.last_evaluation is not None else INSUFFICIENT_DATA)

    def hold(phase: str, reason: str | None = None, message: str | None = None,
             warning: bool = False) -> Decision:
        held = state
        if reason != state.blocked_by:  # announce a blocker once, not on every evaluation
            held = replace(state, blocked_by=reason)
            if reason and message:
                events.append(Event("Warning" if warning else "Normal", reason, message, now))
        return Decision(held, phase, [], events)

    if state.retrain_started is not None:
        return hold(RETRAINING)
    if not due:
        if (state.last_retrain_end is not None
                and now - state.last_retrain_end < r.cooldown and not drifting):
            return hold(COOLDOWN)
        return hold(base_phase)
    reason = (f"{' and '.join(due)} drift for {policy.consecutive_breaches} evaluations "
              "in a row")
    if not r.enabled:
        return hold(DRIFTING)
    if r.suspend:
        return hold(SUSPENDED, "RetrainSuspended", f"{reason}, but retraining is suspended")
    if state.failures >= r.max_failures:
        return hold(DEGRADED, "RetrainBudgetExhausted",
                    f"{reason}, but {state.failures} retrains failed in a row "
                    f"(maxFailures {r.max_failures}); fix the cause and edit the policy",
                    warning=True)
    if state.last_retrain_end is not None and now - state.last_retrain_end < r.cooldown:
        left = r.cooldown - (now - state.last_retrain_end)
        return hold(COOLDOWN, "RetrainDeferred", f"{reason}; cooldown, {left:.0f}s left")
    needed = r.min_feedback_rows + policy.promotion.evaluation_rows
    usable = fresh_labels - state.label_offset
    if usable < needed:
        behind = (f"; the last retrain found {state.label_offset} fewer on disk than were "
                  f"counted" if state.label_offset else "")
        return hold(DRIFTING, "WaitingForLabels",
                    f"{reason}; {max(usable, 0)} of {needed} labelled rows since the drift "
                    f"began ({r.min_feedback_rows} to train, {policy.promotion.evaluation_rows} "
                    f"to judge the candidate){behind}")
    events.append(Event("Normal", "RetrainStarted", reason, now))
    return Decision(replace(state, retrain_started=now, retrain_reason=reason,
                            retrains=state.retrains + 1, blocked_by=None,
                            labels_at_start=fresh_labels),
                    RETRAINING, [], events, start_retrain=True, retrain_reason=reason)


def retrain_finished(state: EngineState, now: float, outcome: str, message: str,
                     labels_found: int | None = None) -> Decision:
    """Record the end of a retrain: ``promoted``, ``rejected`` (the gate kept the serving
    model), ``failed`` (training crashed, was killed or timed out) or ``waiting`` (it found
    fewer fresh labels on disk, ``labels_found``, than the policy needs).

    ``waiting`` is not a failure and starts no cooldown: the episode goes on, and the next
    retrain waits until the driver's count of fresh labels is ahead by what the last one
    found missing, so the two counts cannot disagree into a loop."""
    if outcome == "waiting":
        offset = state.label_offset
        if labels_found is not None and state.labels_at_start is not None:
            offset = max(state.labels_at_start - labels_found, 0)  # the disagreement seen
        new = replace(state, retrain_started=None, retrain_reason=None, labels_at_start=None,
                      label_offset=offset,
                      blocked_by="WaitingForLabels")
        return Decision(new, DRIFTING, [], [Event("Normal", "WaitingForLabels", message, now)])
    reasons = {"promoted": ("Normal", "ModelPromoted"),
               "rejected": ("Normal", "PromotionRejected"),
               "failed": ("Warning", "RetrainFailed")}
    if outcome not in reasons:
        raise ValueError(f"unknown retrain outcome {outcome!r}")
    etype, reason = reasons[outcome]
    failures = state.failures + 1 if outcome == "failed" else 0
    new = replace(state, retrain_started=None, retrain_reason=None, last_retrain_end=now,
                  failures=failures, breaches=dict.fromkeys(KINDS, 0), labels_at_start=None,
                  label_offset=state.label_offset if outcome != "promoted" else 0,
                  episode_start=state.episode_start if outcome != "promoted" else None)
    return Decision(new, COOLDOWN, [], [Event(etype, reason, message, now)])

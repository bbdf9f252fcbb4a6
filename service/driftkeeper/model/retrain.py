"""One retrain, start to finish: plan, train a candidate, judge it, promote it or not.

Both drivers run exactly this (the local driver as a subprocess, the operator as a
Kubernetes Job), so the rules live in one place:

* **plan**: labels since the drift episode began are the new world. The newest
  ``promotion.evaluationRows`` of them are kept out of training to judge the candidate.
* **train** the candidate from the policy's retraining settings, without promoting it.
* **judge** candidate and serving model on the held-out fresh labels (the gate).
* **promote** with a compare-and-swap on ``current``: only if it still points at the version
  that was judged. A failed step never moves ``current``.

The result is one JSON document, :class:`RetrainOutcome`, small enough for a Kubernetes
termination message (4096 bytes).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import DriftkeeperError, PromotionConflictError
from ..policy import DriftPolicy
from ..policy.document import RetrainingSettings
from .feedback import FeedbackStore
from .gate import judge
from .store import ModelStore
from .train import TrainingConfig, train

PROMOTED, REJECTED, FAILED = "promoted", "rejected", "failed"
WAITING = "waiting"
"""Fewer fresh labels on disk than the policy needs: not a failure, the driver waits."""
OUTCOMES = (PROMOTED, REJECTED, FAILED, WAITING)

TERMINATION_MESSAGE_LIMIT = 4096
"""Kubernetes keeps at most this many bytes of a container's termination message."""


@dataclass(frozen=True)
class RetrainPlan:
    """Which fresh labels train the candidate and which judge it."""

    since: float  # labels at or after this time are fresh
    cutoff: float  # fresh labels before it train, labels from it on judge
    train_rows: int
    judge_rows: int


@dataclass(frozen=True)
class RetrainOutcome:
    """What happened, in the shape both drivers record (status, events, logs)."""

    outcome: str  # promoted | rejected | failed | waiting
    reason: str
    serving: str | None = None  # the version the candidate was judged against
    candidate: str | None = None
    candidate_rmse: float | None = None
    serving_rmse: float | None = None
    rows: dict[str, int] = field(default_factory=dict)  # train, judge (waiting: found, needed)
    pruned: list[str] = field(default_factory=list)  # versions deleted afterwards (retention)
    strategy: str | None = None
    metric: str | None = None  # what the gate judged: rmse, or log_loss for a classifier
    candidate_score: float | None = None  # the metric's values
    serving_score: float | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def promoted(self) -> bool:
        return self.outcome == PROMOTED

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "promoted": self.promoted}

    def to_json(self) -> str:
        """Compact JSON, cut to fit a termination message (the reason is shortened)."""
        doc = self.to_dict()
        text = json.dumps(doc, separators=(",", ":"))
        excess = len(text.encode()) - TERMINATION_MESSAGE_LIMIT
        if excess > 0:
            doc["reason"] = doc["reason"][: max(len(doc["reason"]) - excess - 3, 0)] + "..."
            text = json.dumps(doc, separators=(",", ":"))
        return text

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RetrainOutcome:
        known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        if known.get("outcome") not in OUTCOMES:
            raise ValueError(f"not a retrain outcome: {doc!r:.200}")
        return cls(**known)


def training_config(settings: RetrainingSettings, *, feedback_dir: Path, since: float,
                    until: float, data: str | None = None,
                    serving_model: dict[str, Any] | None = None) -> TrainingConfig:
    """The policy's retraining settings as a training configuration (the one mapping).

    ``serving_model`` is the serving version's ``metadata["model"]``: a user's estimator
    travels with the model, whatever the policy's ``model`` (which picks among the
    built-in kinds)."""
    return TrainingConfig(model=settings.model, strategy=settings.strategy, data=data,
                          include_base=settings.include_base, feedback_dir=str(feedback_dir),
                          feedback_since=since, feedback_until=until,
                          feedback_rows=settings.feedback_rows,
                          min_feedback_rows=settings.min_feedback_rows,
                          feedback_share=settings.feedback_share, promote=False,
                          **_estimator_settings(serving_model or {}))


def _estimator_settings(serving_model: dict[str, Any]) -> dict[str, Any]:
    """How to build the serving model's estimator again: its factory, or (a model given
    as a file, which has none) a clone of its own estimator."""
    source = serving_model.get("source")
    if source == "factory":
        return {"estimator": serving_model["estimator"]}
    if source == "file":
        return {"clone_current": True}
    return {}


class NotEnoughLabelsError(DriftkeeperError):
    """Fewer fresh labelled rows on disk than the policy needs (the driver's count of
    labels, from counters, ran ahead of the files: rows pruned, torn or still unwritten)."""

    def __init__(self, message: str, found: int, needed: int) -> None:
        super().__init__(message)
        self.found, self.needed = found, needed


def plan_retrain(feedback: FeedbackStore, policy: DriftPolicy, since: float) -> RetrainPlan:
    """Split the fresh labels: the newest ``evaluationRows`` judge, the rest train.

    Raises :class:`NotEnoughLabelsError` when there are fewer than the policy requires."""
    recent = feedback.read(since=since)
    judge_rows = policy.promotion.evaluation_rows
    needed = policy.retraining.min_feedback_rows + judge_rows
    if len(recent) < needed:
        raise NotEnoughLabelsError(
            f"{len(recent)} labelled rows since {since:.3f}, need {needed} "
            f"({policy.retraining.min_feedback_rows} to train, {judge_rows} to judge the "
            f"candidate)", len(recent), needed)
    cutoff = float(recent["ts"].iloc[-judge_rows])
    return RetrainPlan(since, cutoff, len(recent) - judge_rows, judge_rows)


def retrain(model_dir: str | Path, policy: DriftPolicy, since: float | None = None,
            data: str | None = None, keep_versions: int | None = None) -> RetrainOutcome:
    """Run one retrain against ``model_dir``; never raises for an expected failure.

    ``since`` defaults to just after the newest label the serving model trained on;
    ``data`` (the base table) to the one the serving version was trained on. Afterwards
    the store keeps ``keep_versions`` versions (default: the policy's ``keepVersions``),
    always with the serving one and the one it replaced.
    """
    outcome = _retrain(model_dir, policy, since, data)
    if outcome.outcome in (PROMOTED, REJECTED):  # a new version was written
        keep = keep_versions or policy.retraining.keep_versions
        try:
            pruned = ModelStore(model_dir).prune(keep)
            outcome = replace(outcome, pruned=pruned[-50:])  # fits a termination message
        except (OSError, ValueError) as exc:  # retention is housekeeping: never a failure
            logging.getLogger("driftkeeper.retrain").warning("pruning versions: %s", exc)
    return outcome


def _retrain(model_dir: str | Path, policy: DriftPolicy, since: float | None,
             data: str | None) -> RetrainOutcome:
    started = time.time()
    store = ModelStore(model_dir)
    serving_version = store.current_version()

    def done(outcome: str, reason: str, **kw: Any) -> RetrainOutcome:
        return RetrainOutcome(outcome, reason, serving=serving_version, started_at=started,
                              finished_at=time.time(), **kw)

    try:
        serving = store.load(serving_version)
        feedback = FeedbackStore(Path(model_dir) / "feedback", serving.schema)
        trained_until = (serving.metadata.get("training") or {}).get("feedback_until")
        if since is None:
            since = trained_until + 1e-6 if trained_until is not None else 0.0
        if data is None:
            data = (serving.metadata.get("training") or {}).get("data")
        plan = plan_retrain(feedback, policy, since)
    except NotEnoughLabelsError as exc:
        return done(WAITING, f"waiting for labels: {exc}",
                    rows={"found": exc.found, "needed": exc.needed})
    except DriftkeeperError as exc:
        return done(FAILED, f"cannot plan the retrain: {exc}")
    rows = {"train": plan.train_rows, "judge": plan.judge_rows}
    try:
        result = train(model_dir, training_config(policy.retraining,
                                                  feedback_dir=feedback.directory,
                                                  since=plan.since, until=plan.cutoff,
                                                  data=data,
                                                  serving_model=serving.metadata.get("model")),
                       schema=serving.schema)
        candidate = store.load(result.version)
    except DriftkeeperError as exc:
        return done(FAILED, f"training failed: {exc}", rows=rows)
    # Judge on every fresh label from the cutoff on, including those that arrived while
    # training, but never on a label the serving model trained on.
    floor = plan.cutoff if trained_until is None else max(plan.cutoff, trained_until + 1e-6)
    verdict = judge(candidate, serving, feedback.read(since=floor),
                    policy.promotion.min_improvement)
    measured = {"candidate": candidate.version, "candidate_rmse": _finite(verdict.candidate_rmse),
                "serving_rmse": _finite(verdict.serving_rmse),
                "rows": {**rows, "judge": verdict.rows},
                "strategy": result.metrics.get("strategy"), "metric": verdict.metric,
                "candidate_score": _finite(verdict.candidate_score, 4),
                "serving_score": _finite(verdict.serving_score, 4)}
    if not verdict.promote:
        return done(REJECTED, f"{serving.version} stays: {verdict.reason}", **measured)
    try:
        store.promote(candidate.version, expected=serving.version)
    except PromotionConflictError as exc:
        return done(REJECTED, str(exc), **measured)
    return done(PROMOTED, f"{candidate.version} promoted: {verdict.reason}", **measured)


def _finite(value: float, digits: int = 3) -> float | None:
    return None if value != value else round(value, digits)  # NaN when the gate had no rows

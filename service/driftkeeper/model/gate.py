"""The promotion gate: a candidate replaces the serving model only if it is better on
recent labelled rows that neither model trained on, by the task's metric: RMSE for a
regression, log loss for a classifier (both lower is better)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..drift.probability import Scored, score
from .store import ModelBundle


@dataclass(frozen=True)
class GateResult:
    promote: bool
    candidate_rmse: float
    serving_rmse: float
    rows: int
    reason: str
    metric: str = "rmse"  # what judged: rmse, or log_loss for a classifier
    candidate_score: float = float("nan")  # the metric's values
    serving_score: float = float("nan")


def _scored(bundle: ModelBundle, rows: pd.DataFrame) -> Scored:
    X = bundle.schema.encode(rows)
    y = bundle.schema.encode_target(rows[bundle.schema.target.name])
    return score(bundle.schema.target.n_classes, y, bundle.model.predict(X))


def _rmse(residuals: np.ndarray) -> float:
    return float(np.sqrt(np.mean(residuals ** 2)))


def judge(candidate: ModelBundle, serving: ModelBundle, rows: pd.DataFrame,
          min_improvement: float = 0.0, min_rows: int = 50) -> GateResult:
    """Promote when the candidate's metric <= the serving model's x (1 - min_improvement)."""
    classifier = serving.schema.target.is_classification
    metric = "log_loss" if classifier else "rmse"
    if len(rows) < min_rows:
        return GateResult(False, float("nan"), float("nan"), len(rows),
                          f"only {len(rows)} fresh labelled rows to judge on (need {min_rows})",
                          metric)
    cand_s, serv_s = _scored(candidate, rows), _scored(serving, rows)
    cand_rmse, serv_rmse = _rmse(cand_s.residual), _rmse(serv_s.residual)
    cand, serv = ((float(cand_s.log_loss.mean()), float(serv_s.log_loss.mean()))
                  if classifier else (cand_rmse, serv_rmse))
    bar = serv * (1.0 - min_improvement)
    promote = cand <= bar
    verdict = "better" if promote else "not better"
    name, fmt = ("log loss", ".3f") if classifier else ("RMSE", ".1f")
    return GateResult(promote, cand_rmse, serv_rmse, len(rows),
                      f"candidate {candidate.version} {name} {cand:{fmt}} vs serving "
                      f"{serving.version} {serv:{fmt}} on {len(rows)} recent labelled rows: "
                      f"{verdict} (bar {bar:{fmt}})", metric, cand, serv)

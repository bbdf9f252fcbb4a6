"""The promotion gate: a candidate replaces the serving model only if it is better on
recent labelled rows that neither model trained on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .store import ModelBundle


@dataclass(frozen=True)
class GateResult:
    promote: bool
    candidate_rmse: float
    serving_rmse: float
    rows: int
    reason: str


def _rmse(bundle: ModelBundle, rows: pd.DataFrame) -> float:
    X = bundle.schema.encode(rows)
    y = rows[bundle.schema.target.name].to_numpy(np.float64)
    return float(np.sqrt(np.mean((y - bundle.model.predict(X)) ** 2)))


def judge(candidate: ModelBundle, serving: ModelBundle, rows: pd.DataFrame,
          min_improvement: float = 0.0, min_rows: int = 50) -> GateResult:
    """Promote when candidate RMSE <= serving RMSE x (1 - min_improvement)."""
    if len(rows) < min_rows:
        return GateResult(False, float("nan"), float("nan"), len(rows),
                          f"only {len(rows)} fresh labelled rows to judge on (need {min_rows})")
    cand, serv = _rmse(candidate, rows), _rmse(serving, rows)
    bar = serv * (1.0 - min_improvement)
    promote = cand <= bar
    verdict = "better" if promote else "not better"
    return GateResult(promote, cand, serv, len(rows),
                      f"candidate {candidate.version} RMSE {cand:.1f} vs serving "
                      f"{serving.version} {serv:.1f} on {len(rows)} recent labelled rows: "
                      f"{verdict} (bar {bar:.1f})")

"""The loss model: each row's expected squared error, learnt at training time.

Fitted on rows the serving model did not train on (the held-out split, or out-of-fold rows
after a retrain on labels), from the row's features and the model's prediction. It is
exported to plain arrays (``loss.npz``) like the predictor, so the pod's evaluator can
estimate a window's RMSE without scikit-learn and before any label arrives
(``drift/performance.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

from ..drift.performance import loss_inputs
from .export import verified_export

LOSS_PARAMS: dict[str, Any] = {
    "max_iter": 50,
    "learning_rate": 0.1,
    "max_leaf_nodes": 8,
    "min_samples_leaf": 50,
    "early_stopping": False,
}
"""Small and strongly regularised: squared errors are heavy-tailed (a few rows carry much of
the sum), and the estimate only has to rank rows by difficulty and keep the mean. Fifty
shallow trees: the pod's evaluator estimates every row of its window each tick (~5 ms per
1,000 rows from the exported arrays)."""


def fit_loss_model(X: np.ndarray, predictions: np.ndarray, residuals: np.ndarray,
                   seed: int = 42) -> HistGradientBoostingRegressor:
    """Learn squared error from (features, prediction) on rows the model did not train on."""
    if not (len(X) == len(predictions) == len(residuals)):
        raise ValueError(f"X ({len(X)}), predictions ({len(predictions)}) and residuals "
                         f"({len(residuals)}) must have one entry per row")
    r = np.asarray(residuals, dtype=np.float64)
    return HistGradientBoostingRegressor(random_state=seed, **LOSS_PARAMS).fit(
        loss_inputs(X, predictions), r * r)


def export_loss_model(model: HistGradientBoostingRegressor, X: np.ndarray,
                      predictions: np.ndarray) -> dict[str, np.ndarray] | None:
    """The arrays of ``loss.npz`` (checked against scikit-learn's predictions), or None."""
    return verified_export(model, loss_inputs(X[:2000], predictions[:2000]))

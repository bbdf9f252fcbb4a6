"""A single-row fast path for fitted HistGradientBoostingRegressor models.

scikit-learn's ``predict`` spends ~300 µs on one row: input validation plus a Python-level
call per tree. Walking the same trees from plain lists takes ~50 µs, which is most of the
service's latency budget. Only numeric splits and squared error are supported; anything else
(and any mismatch in a self-check against scikit-learn at load time) falls back to
``predict``, so the fast path can only ever return what scikit-learn returns.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class CompiledTrees:
    """The trees of a fitted HGB regressor as Python lists, evaluated row by row."""

    def __init__(self, baseline: float, trees: list[tuple[list, list, list, list, list]]) -> None:
        self.baseline = baseline
        self.trees = trees  # per tree: (is_leaf, feature, threshold, left, right/value)

    @classmethod
    def compile(cls, estimator: Any, check_rows: np.ndarray) -> CompiledTrees | None:
        """Compile ``estimator`` if it is a supported HGB regressor that agrees with
        scikit-learn on ``check_rows``; otherwise None."""
        try:
            if type(estimator).__name__ != "HistGradientBoostingRegressor":
                return None
            if type(estimator._loss).__name__ != "HalfSquaredError":
                return None
            trees = []
            for per_iteration in estimator._predictors:
                (predictor,) = per_iteration
                nodes = predictor.nodes
                if nodes["is_categorical"].any():
                    return None
                trees.append((nodes["is_leaf"].astype(bool).tolist(),
                              nodes["feature_idx"].tolist(), nodes["num_threshold"].tolist(),
                              nodes["left"].tolist(), nodes["right"].tolist(),
                              nodes["value"].tolist()))
            compiled = cls(float(np.ravel(estimator._baseline_prediction)[0]), trees)
        except (AttributeError, ValueError, KeyError, TypeError):
            return None
        expected = estimator.predict(check_rows)
        got = np.array([compiled.predict_row(row) for row in check_rows.tolist()])
        return compiled if np.array_equal(expected, got) else None

    def predict_row(self, row: list[float]) -> float:
        """The prediction for one encoded row (no missing values), summed in scikit-learn's
        order so the result is bit-identical."""
        total = self.baseline
        for is_leaf, feature, threshold, left, right, value in self.trees:
            node = 0
            while not is_leaf[node]:
                node = left[node] if row[feature[node]] <= threshold[node] else right[node]
            total += value[node]
        return total

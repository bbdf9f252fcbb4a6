"""A single-row fast path for fitted HistGradientBoostingRegressor models.

scikit-learn's ``predict`` spends ~300 µs on one row: input validation plus a Python-level
call per tree. Walking the same trees from plain lists takes ~10 µs, which is most of the
service's latency budget. Only numeric splits and squared error are supported; anything else
(and any mismatch in a self-check against scikit-learn at load time) falls back to
``predict``, so the fast path can only ever return what scikit-learn returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..model.estimators import PRICE_FLOOR, RecalibratedRegressor

RowPredictor = Callable[[list[float]], float]


class CompiledTrees:
    """The trees of a fitted HGB regressor as Python lists, evaluated row by row."""

    def __init__(self, baseline: float, trees: list[tuple[list, list, list, list, list]]) -> None:
        self.baseline = baseline
        self.trees = trees  # per tree: (is_leaf, feature, threshold, left, right/value)

    @classmethod
    def compile(cls, estimator: Any) -> CompiledTrees | None:
        """Compile ``estimator`` if it is a supported HGB regressor; otherwise None."""
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
            return cls(float(np.ravel(estimator._baseline_prediction)[0]), trees)
        except (AttributeError, ValueError, KeyError, TypeError):
            return None

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


def _compile(estimator: Any) -> RowPredictor | None:
    if isinstance(estimator, RecalibratedRegressor):
        base, correction = _compile(estimator.base), _compile(estimator.correction_)
        if base is None or correction is None:
            return None
        return lambda row: max(base(row), PRICE_FLOOR) * math.exp(correction(row))
    trees = CompiledTrees.compile(estimator)
    return None if trees is None else trees.predict_row


def compile_row_predictor(estimator: Any, check_rows: np.ndarray) -> RowPredictor | None:
    """A fast single-row predictor for ``estimator``, or None when it is not supported or
    disagrees with scikit-learn on ``check_rows`` (bit-identical for plain trees; within
    1e-12 relative where a correction's exp() is involved)."""
    predictor = _compile(estimator)
    if predictor is None:
        return None
    expected = estimator.predict(check_rows)
    got = np.array([predictor(row) for row in check_rows.tolist()])
    return predictor if np.allclose(got, expected, rtol=1e-12, atol=0.0) else None

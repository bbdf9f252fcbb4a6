"""The estimators Driftkeeper can train, all working on schema-encoded float matrices.

Categoricals arrive as ordinal level codes (the levels are ordered), so the default gradient
boosting model needs no encoder in front: a single-row prediction costs ~0.3 ms instead of
~1.5 ms with a ColumnTransformer, which is what lets one pod serve hundreds of requests per
second per core.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ..schema import FeatureSchema
from .custom import TableModel, sample_weight_kwargs

MODEL_KINDS = ("hgb", "rf")

HGB_PARAMS: dict[str, Any] = {
    "max_iter": 50,
    "learning_rate": 0.2,
    "max_leaf_nodes": 63,
    "early_stopping": False,
}
"""Chosen on the lab's 80/20 split: held-out RMSE 553.6 (lab forest: 615.9) in 0.15 MB, and few
enough trees for fast single-row predictions."""


RATIO_FLOOR = 1.0
"""Smallest base prediction a multiplicative correction multiplies (logs need a positive
base; for prices, a unit of currency)."""

RATIO, DIFFERENCE = "ratio", "difference"


class RecalibratedRegressor(RegressorMixin, BaseEstimator):
    """A fitted model corrected by a small model learned from recent labels.

    When the world changes but only a thousand fresh labels exist, refitting from scratch
    learns little (on the diamonds 'D/E/F 25% dearer' shift: RMSE ~920 from 800 rows), while
    keeping the serving model and learning ``log(actual / predicted)`` with a small boosted
    model recovers almost all of it (RMSE ~600, the oracle's). The correction is a function
    of the features, so it can express any smooth change.

    The correction is multiplicative (``mode_ = "ratio"``) when every label is strictly
    positive, as prices are; a target that can be zero or negative gets an additive one
    (``"difference"``: ``y - predicted``), where a ratio has no meaning.
    """

    def __init__(self, base: Any = None, max_iter: int = 30, learning_rate: float = 0.1,
                 max_leaf_nodes: int = 8, min_samples_leaf: int = 20,
                 random_state: int | None = None) -> None:
        self.base = base
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray,
            sample_weight: np.ndarray | None = None) -> RecalibratedRegressor:
        y = np.asarray(y, dtype=np.float64)
        self.mode_ = RATIO if bool(np.all(y > 0)) else DIFFERENCE
        if self.mode_ == RATIO:
            base_pred = np.maximum(self.base.predict(X), RATIO_FLOOR)
            target = np.log(np.maximum(y, RATIO_FLOOR) / base_pred)
        else:
            target = y - self.base.predict(X)
        self.correction_ = HistGradientBoostingRegressor(
            max_iter=self.max_iter, learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes, min_samples_leaf=self.min_samples_leaf,
            early_stopping=False, random_state=self.random_state,
        ).fit(X, target, sample_weight=sample_weight)
        return self

    @property
    def additive(self) -> bool:
        """True for a difference correction (models pickled before modes were ratios)."""
        return getattr(self, "mode_", RATIO) == DIFFERENCE

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.additive:
            return self.base.predict(X) + self.correction_.predict(X)
        base_pred = np.maximum(self.base.predict(X), RATIO_FLOOR)
        return base_pred * np.exp(self.correction_.predict(X))


class _FitsAClone(BaseEstimator):
    """Fits a clone of its ``classifier`` parameter (which stays unfitted, as scikit-learn
    parameters must)."""

    classifier: Any

    def fit(self, X: np.ndarray, y: np.ndarray,
            sample_weight: np.ndarray | None = None) -> _FitsAClone:
        self.classifier_ = clone(self.classifier).fit(X, y, sample_weight=sample_weight)
        return self


class ProbabilityClassifier(_FitsAClone):
    """A binary classifier served as a probability model: ``predict`` gives P(class 1).

    The one place that says what a classifier's prediction is. With y the class index,
    y - predict(X) is a residual like a regression's, so training, the gate, the report,
    drift impact and the service treat both tasks alike (see drift/probability.py)."""

    def __init__(self, classifier: Any = None) -> None:
        self.classifier = classifier

    def predict(self, X: np.ndarray) -> np.ndarray:
        classes = [float(c) for c in self.classifier_.classes_]
        if 1.0 not in classes:  # trained on rows of class 0 only
            return np.zeros(len(X))
        return self.classifier_.predict_proba(X)[:, classes.index(1.0)]


class ClassProbabilities(_FitsAClone):
    """A classifier of K >= 3 classes served as probabilities: ``predict`` gives the
    (rows, K) probabilities of class indices 0..K-1, a class absent from the training rows
    getting 0 (its column stays, so every version of a model has the schema's K columns)."""

    def __init__(self, classifier: Any = None, n_classes: int = 3) -> None:
        self.classifier = classifier
        self.n_classes = n_classes

    def predict(self, X: np.ndarray) -> np.ndarray:
        seen = self.classifier_.predict_proba(X)
        out = np.zeros((len(X), self.n_classes))
        out[:, np.asarray(self.classifier_.classes_, dtype=np.intp)] = seen
        return out


PROBABILITY_FLOOR = 1e-6
"""Probabilities a recalibration takes the logit of are kept within [floor, 1 - floor]."""


class RecalibratedClassifier(BaseEstimator):
    """A fitted probability model with its probabilities recalibrated on recent labels
    (Platt scaling: a logistic regression on the logit of the base probability).

    When the class mix or the calibration moves, a few hundred fresh labels are enough to
    fit two numbers, where a refit would learn the trees again from them."""

    def __init__(self, base: Any = None, C: float = 1.0) -> None:
        self.base = base
        self.C = C

    def _logit(self, X: np.ndarray) -> np.ndarray:
        p = np.clip(self.base.predict(X), PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
        return np.log(p / (1.0 - p)).reshape(-1, 1)

    def fit(self, X: np.ndarray, y: np.ndarray,
            sample_weight: np.ndarray | None = None) -> RecalibratedClassifier:
        self.calibrator_ = LogisticRegression(C=self.C).fit(self._logit(X), y,
                                                            sample_weight=sample_weight)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        classes = [float(c) for c in self.calibrator_.classes_]
        if 1.0 not in classes:
            return np.zeros(len(X))
        return self.calibrator_.predict_proba(self._logit(X))[:, classes.index(1.0)]


class RecalibratedMulticlass(BaseEstimator):
    """A fitted model of K class probabilities recalibrated on recent labels by vector
    scaling: softmax(w * log p + b), one weight and one bias per class (temperature
    scaling is w all equal; vector scaling also moves the class mix, which a prior shift
    needs). An L2 penalty of strength 1 / C pulls w towards 1 and b towards 0, so a class
    absent from the labels keeps a finite bias and its rows still get a probability."""

    def __init__(self, base: Any = None, C: float = 1.0) -> None:
        self.base = base
        self.C = C

    def _log_probabilities(self, X: np.ndarray) -> np.ndarray:
        return np.log(np.clip(self.base.predict(X), PROBABILITY_FLOOR, 1.0))

    def fit(self, X: np.ndarray, y: np.ndarray,
            sample_weight: np.ndarray | None = None) -> RecalibratedMulticlass:
        logs = self._log_probabilities(X)
        n, k = logs.shape
        hit = np.zeros_like(logs)
        hit[np.arange(n), np.asarray(y, dtype=np.intp)] = 1.0
        weight = (np.ones(n) if sample_weight is None else np.asarray(sample_weight, float))
        weight = weight / weight.sum()
        penalty = 1.0 / (self.C * n)

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, b = theta[:k], theta[k:]
            z = logs * w + b
            z = z - z.max(axis=1, keepdims=True)
            log_norm = np.log(np.exp(z).sum(axis=1))
            nll = float(weight @ (log_norm - (z * hit).sum(axis=1)))
            grad_z = (np.exp(z - log_norm[:, None]) - hit) * weight[:, None]
            value = nll + penalty / 2 * (np.sum((w - 1.0) ** 2) + np.sum(b ** 2))
            grad = np.concatenate([(grad_z * logs).sum(axis=0) + penalty * (w - 1.0),
                                   grad_z.sum(axis=0) + penalty * b])
            return value, grad

        start = np.concatenate([np.ones(k), np.zeros(k)])
        found = minimize(loss, start, jac=True, method="L-BFGS-B")
        self.weights_, self.biases_ = found.x[:k], found.x[k:]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        z = self._log_probabilities(X) * self.weights_ + self.biases_
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)


def build_estimator(kind: str, schema: FeatureSchema, seed: int = 42) -> Any:
    """A fresh, unfitted estimator of the given kind for the schema's task.

    ``hgb`` is the default. ``rf`` reproduces the lab's forest (StandardScaler on numerics,
    one-hot with the first level dropped, 100 trees), for comparison (regression only).
    """
    if schema.target.is_classification:
        return _build_classifier(kind, seed, schema.target.n_classes)
    if kind == "hgb":
        return HistGradientBoostingRegressor(random_state=seed, **HGB_PARAMS)
    if kind == "rf":
        numeric = [i for i, f in enumerate(schema.features) if f.kind == "numerical"]
        categorical = [i for i, f in enumerate(schema.features) if f.kind == "categorical"]
        levels = [list(map(float, range(len(schema.features[i].levels)))) for i in categorical]
        pre = ColumnTransformer([
            ("num", StandardScaler(), numeric),
            ("cat", OneHotEncoder(drop="first", sparse_output=False, categories=levels),
             categorical),
        ])
        forest = RandomForestRegressor(n_estimators=100, random_state=seed, n_jobs=-1)
        return Pipeline([("preprocessor", pre), ("regressor", forest)])
    raise ValueError(f"unknown model kind {kind!r}; choose one of {MODEL_KINDS}")


def _build_classifier(kind: str, seed: int, n_classes: int) -> Any:
    """A classifier with the regressor's boosting parameters, as a probability model
    (binary: P(classes[1]); K >= 3 classes: every class's probability)."""
    if kind != "hgb":
        raise ValueError(f"model kind {kind!r} is for regression only; a classification "
                         f"trains 'hgb'")
    boosted = HistGradientBoostingClassifier(random_state=seed, **HGB_PARAMS)
    if n_classes >= 3:
        return ClassProbabilities(boosted, n_classes)
    return ProbabilityClassifier(boosted)


def fit_params(estimator: Any, sample_weight: Any) -> dict[str, Any]:
    """The keyword that passes sample weights to this estimator's ``fit`` (a user's
    ``TableModel`` takes ``sample_weight`` and passes it on only where it is accepted)."""
    if isinstance(estimator, TableModel):
        return {} if sample_weight is None else {"sample_weight": sample_weight}
    return sample_weight_kwargs(estimator, sample_weight)


def for_serving(estimator: Any) -> Any:
    """Make a fitted estimator predict on one thread: the service scales with processes, and
    thread pools per request only add latency."""
    if isinstance(estimator, (RecalibratedRegressor, RecalibratedClassifier)):
        for_serving(estimator.base)
    if isinstance(estimator, TableModel):
        inner = for_serving(getattr(estimator, "estimator_", None))
        if hasattr(inner, "n_jobs") and not isinstance(inner, Pipeline):
            inner.n_jobs = 1  # a user's bare forest or neighbours model
    if isinstance(estimator, Pipeline):
        reg = estimator.steps[-1][1]
        if hasattr(reg, "n_jobs"):
            reg.n_jobs = 1
    return estimator


def model_kind(estimator: Any) -> str:
    """A short description for metadata and logs, e.g. 'hgb', 'hgb+recalibrated' or
    'custom' (a user's estimator)."""
    if isinstance(estimator, (RecalibratedRegressor, RecalibratedClassifier,
                              RecalibratedMulticlass)):
        return f"{model_kind(estimator.base)}+recalibrated"
    if isinstance(estimator, TableModel):
        return "custom"
    if isinstance(estimator, Pipeline):
        return "rf"
    return "hgb"

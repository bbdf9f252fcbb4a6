"""Users' estimators for the ``--estimator`` and ``--model-file`` tests (importable: tests/
is on the path, as a user's module would be installed or on PYTHONPATH)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

CALLS: list[dict[str, Any]] = []
"""What each factory call received (a test can see schema and seed arrive)."""

NOT_CALLABLE = 3


def ridge_pipeline(schema: Any = None, seed: int | None = None) -> Pipeline:
    """One-hot on the categorical column by name, numerics passed through, then Ridge:
    what a user writes for their own DataFrame."""
    CALLS.append({"schema": schema, "seed": seed})
    encode = ColumnTransformer([("sex", OneHotEncoder(handle_unknown="ignore"), ["sex"])],
                               remainder="passthrough")
    return Pipeline([("encode", encode), ("ridge", Ridge(alpha=0.1))])


def knn_pipeline() -> Pipeline:
    """A final step whose fit takes no sample_weight."""
    encode = ColumnTransformer([("sex", OneHotEncoder(handle_unknown="ignore"), ["sex"])],
                               remainder="passthrough")
    return Pipeline([("encode", encode), ("knn", KNeighborsRegressor(n_neighbors=15))])


def bare_hgb(random_state: int = 0) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(max_iter=40, random_state=random_state)


def not_an_estimator() -> str:
    return "a string"


def broken() -> Pipeline:
    raise RuntimeError("no licence for this model")


class MeanOfColumn:
    """A regressor sklearn cannot clone (no get_params): predicts a scaled column."""

    def __init__(self, column: str, scale: float) -> None:
        self.column = column
        self.scale = scale

    def fit(self, frame: Any, y: Any) -> MeanOfColumn:
        self.offset_ = float(np.mean(y) - self.scale * frame[self.column].mean())
        return self

    def predict(self, frame: Any) -> np.ndarray:
        return self.scale * frame[self.column].to_numpy(dtype=float) + self.offset_


def logistic_pipeline() -> Pipeline:
    """A user's classifier: scaled numerics, then logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("logistic", LogisticRegression())])

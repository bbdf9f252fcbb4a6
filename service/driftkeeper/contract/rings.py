"""The ring rows' column layouts: what ``/predict`` and ``/feedback`` append (``serving/
app.py``) and the pod's evaluator and tally read (``serving/monitor.py``, ``tally.py``).

One place, named columns: a reader never picks a column by a position it has to know.
Rows are float64 (``serving/rings.py``); ``n_features`` is the serving schema's width, and
a ring whose width does not match belongs to another schema and is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _probability_count(n_classes: int) -> int:
    """The K probability columns a multiclass model's rows end with (none otherwise)."""
    return n_classes if n_classes >= 3 else 0


def _probability_block(rows: int, columns: int,
                         probabilities: np.ndarray | None) -> np.ndarray:
    if not columns:
        return np.empty((rows, 0))
    return np.asarray(probabilities, dtype=np.float64).reshape(rows, columns)


@dataclass(frozen=True)
class InputRows:
    """``/predict``'s rows: the stamp, the encoded features, the model version number and
    the prediction (a multiclass model's one-number summary, ``drift/probability.py``,
    then its K probabilities: each class's prediction drift needs them)."""

    n_features: int
    n_classes: int = 0  # the model's classes; the rows hold K probabilities when K >= 3
    prefix = "inputs"  # ring files are <prefix>-<pid>.<8 hex: one per writer>.ring

    @property
    def n_probabilities(self) -> int:
        return _probability_count(self.n_classes)

    @property
    def width(self) -> int:
        return self.n_features + 3 + self.n_probabilities

    def pack(self, stamps: np.ndarray, X: np.ndarray, version_number: int,
             predictions: np.ndarray, probabilities: np.ndarray | None = None) -> np.ndarray:
        each = _probability_block(len(X), self.n_probabilities, probabilities)
        return np.column_stack([stamps, X, np.full(len(X), version_number), predictions,
                                each])

    def empty(self) -> np.ndarray:
        return np.empty((0, self.width))

    def stamps(self, rows: np.ndarray) -> np.ndarray:
        return rows[:, 0]

    def features(self, rows: np.ndarray) -> np.ndarray:
        return rows[:, 1:1 + self.n_features]

    def versions(self, rows: np.ndarray) -> np.ndarray:
        return rows[:, 1 + self.n_features]

    def predictions(self, rows: np.ndarray) -> np.ndarray:
        return rows[:, 2 + self.n_features]

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        """(rows, K) class probabilities; (rows, 0) for any other model."""
        start = 3 + self.n_features
        return rows[:, start:start + self.n_probabilities]


@dataclass(frozen=True)
class FeedbackRows:
    """``/feedback``'s rows: the stamp, the model version number, the residual, the
    prediction, the encoded features (where concept drift lives needs each row's segment),
    the outcome: the probability the model gave the class that happened (a classifier's;
    NaN for a regression) and the label as encoded (a class index, or the actual value).
    Residual and prediction are the one-number forms of ``drift/probability.py`` for a
    classifier of K >= 3 classes (``n_classes``), whose rows end with the K probabilities
    (each class's calibration needs them)."""

    n_features: int
    n_classes: int = 0  # the model's classes; the rows hold K probabilities when K >= 3
    prefix = "feedback"

    @property
    def n_probabilities(self) -> int:
        return _probability_count(self.n_classes)

    @property
    def width(self) -> int:
        return self.n_features + 6 + self.n_probabilities

    def pack(self, stamps: np.ndarray, version_number: int, residuals: np.ndarray,
             predictions: np.ndarray, X: np.ndarray, outcomes: np.ndarray | None = None,
             labels: np.ndarray | None = None,
             probabilities: np.ndarray | None = None) -> np.ndarray:
        unknown = np.full(len(X), np.nan)
        each = _probability_block(len(X), self.n_probabilities, probabilities)
        return np.column_stack([stamps, np.full(len(X), version_number), residuals,
                                predictions, X, unknown if outcomes is None else outcomes,
                                unknown if labels is None else labels, each])

    def empty(self) -> np.ndarray:
        return np.empty((0, self.width))

    def stamps(self, rows: np.ndarray) -> np.ndarray:
        return rows[:, 0]

    def versions(self, rows: np.ndarray) -> np.ndarray:
        return rows[:, 1]

    def residuals(self, rows: np.ndarray) -> np.ndarray:
        return rows[:, 2]

    def predictions(self, rows: np.ndarray) -> np.ndarray:
        return rows[:, 3]

    def features(self, rows: np.ndarray) -> np.ndarray:
        return rows[:, 4:4 + self.n_features]

    def outcomes(self, rows: np.ndarray) -> np.ndarray:
        return rows[:, 4 + self.n_features]

    def labels(self, rows: np.ndarray) -> np.ndarray:
        return rows[:, 5 + self.n_features]

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        """(rows, K) class probabilities; (rows, 0) for any other model."""
        start = 6 + self.n_features
        return rows[:, start:start + self.n_probabilities]

"""Mergeable windows: what one process saw, in a form that adds up across processes.

A gunicorn worker (or a replica) turns its recent rows into a :class:`DataWindow` and its
recent labelled rows into a :class:`ResidualWindow`; ``+`` merges them, and the sum is
evaluated exactly as if one process had seen all the traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import stats
from .probability import correct, log_losses
from .profile import NumericalProfile, ReferenceProfile

FeatureCounts = stats.NumericCounts | stats.CategoricalCounts


@dataclass(frozen=True)
class DataWindow:
    """Per-feature binned counts of the current inputs."""

    features: dict[str, FeatureCounts]
    rows: int

    def __add__(self, other: DataWindow) -> DataWindow:
        return DataWindow({k: v + other.features[k] for k, v in self.features.items()},  # type: ignore[operator]
                          self.rows + other.rows)


@dataclass(frozen=True)
class ResidualWindow:
    """Labelled rows: binned residuals plus the sums that give RMSE and bias (and, for a
    classifier, log loss and accuracy: None where the rows came without them, as from the
    fleet's counters)."""

    counts: stats.NumericCounts
    n: int
    total: float  # sum of residuals
    total_sq: float  # sum of squared residuals
    log_loss_sum: float | None = None  # a classifier's summed log loss
    correct: int | None = None  # a classifier's correctly classified rows
    # A multiclass model's rows per class that happened, and its summed probability of
    # each class: one-vs-rest calibration is their difference over n.
    class_rows: np.ndarray | None = None
    class_probabilities: np.ndarray | None = None

    def __add__(self, other: ResidualWindow) -> ResidualWindow:
        return ResidualWindow(self.counts + other.counts, self.n + other.n,
                              self.total + other.total, self.total_sq + other.total_sq,
                              _add(self.log_loss_sum, other.log_loss_sum),
                              _add(self.correct, other.correct),
                              _add(self.class_rows, other.class_rows),
                              _add(self.class_probabilities, other.class_probabilities))


def _add(a: Any, b: Any) -> Any:
    """A sum known only when both parts carry it."""
    return None if a is None or b is None else a + b


def data_window(profile: ReferenceProfile, encoded: np.ndarray) -> DataWindow:
    """Bin an encoded matrix (rows x schema features) against a profile."""
    encoded = np.asarray(encoded, dtype=np.float64).reshape(-1, len(profile.schema.features))
    out: dict[str, FeatureCounts] = {}
    for j, feat in enumerate(profile.schema.features):
        prof = profile.features[feat.name]
        if isinstance(prof, NumericalProfile):
            out[feat.name] = prof.bins.count(encoded[:, j])
        else:
            out[feat.name] = stats.count_categories(encoded[:, j], len(prof.levels))
    return DataWindow(out, len(encoded))


def residual_window(profile: ReferenceProfile, residuals: np.ndarray,
                    losses: np.ndarray | None = None,
                    hits: np.ndarray | None = None,
                    labels: np.ndarray | None = None,
                    probabilities: np.ndarray | None = None) -> ResidualWindow:
    """Summarise residuals (actual - predicted) against the profile's residual bins; a
    classifier's per-row log losses and correct flags are reused when given (the monitor
    derives them once per row), computed from binary residuals when not (a multiclass
    window needs them given: its residual does not say them). A multiclass window also
    sums each class's rows and probabilities when ``labels`` (class indices) and
    ``probabilities`` (rows x K) are given."""
    if profile.residuals is None:
        raise ValueError("this profile has no residual reference (trained without hold-out)")
    r = np.asarray(residuals, dtype=np.float64)
    finite = np.isfinite(r)
    r = r[finite]
    classifier = profile.is_classifier
    if classifier:
        loss = float((log_losses(r) if losses is None else np.asarray(losses)[finite]).sum())
        right = int((correct(r) if hits is None else np.asarray(hits)[finite] > 0).sum())
    k = profile.n_classes
    class_rows = class_probabilities = None
    if k >= 3 and labels is not None and probabilities is not None:
        known = np.asarray(labels, dtype=np.float64)[finite]
        p = np.asarray(probabilities, dtype=np.float64).reshape(-1, k)[finite]
        ok = np.isfinite(known) & np.isfinite(p).all(axis=1)
        class_rows = np.bincount(known[ok].astype(np.intp), minlength=k).astype(np.float64)
        class_probabilities = p[ok].sum(axis=0)
    return ResidualWindow(profile.residuals.bins.count(r), len(r), float(r.sum()),
                          float(np.sum(r * r)),
                          loss if classifier else None,
                          right if classifier else None, class_rows, class_probabilities)


def class_prediction_windows(profile: ReferenceProfile, probabilities: np.ndarray
                             ) -> dict[str, stats.NumericCounts] | None:
    """A multiclass model's probabilities of each class (rows x K) binned against the
    held-out ones, by class name (None: the profile has none)."""
    if profile.class_predictions is None:
        return None
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1, profile.n_classes)
    return {c: profile.class_predictions[c].bins.count(p[:, k])
            for k, c in enumerate(profile.schema.target.classes)}


def prediction_window(profile: ReferenceProfile,
                      predictions: np.ndarray) -> stats.NumericCounts | None:
    """Bin the model's predictions against the profile's held-out predictions (None when
    the profile has none); windows add up with ``+`` like the features'."""
    if profile.predictions is None:
        return None
    return profile.predictions.bins.count(np.asarray(predictions, dtype=np.float64))

"""Estimated performance before labels arrive (direct loss estimation, as NannyML's DLE).

At training time a small model learns each held-out row's squared error from its features
and the prediction (``model/loss.py``). At serving time its estimates are summed over the
window: the mean estimate over the window against the mean over the held-out rows says how
much the RMSE has moved, while the labels that would measure it are still weeks away. A
covariate shift towards rows the model gets wrong raises it; a shift towards easy rows
lowers it; a change of the feature->target relation is invisible to it (that is what the
labels, and concept drift, are for).

The window is a count and a sum, so it merges across workers and replicas like the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import calibration
from .calibration import NullTable


def loss_inputs(X: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """The loss model's columns: the encoded features, then the model's prediction. Here,
    free of scikit-learn, because training fits on them and the pod estimates from them."""
    return np.column_stack([np.asarray(X, dtype=np.float64),
                            np.asarray(predictions, dtype=np.float64)])


@dataclass(frozen=True)
class PerformanceProfile:
    """What the estimates looked like on held-out rows, where the true errors are known.

    ``rmse`` is the measured held-out RMSE; ``mean_estimate`` the mean estimated squared
    error over the same rows; ``null`` the relative change of the estimated RMSE that an
    unchanged world reaches by chance, by window size (bootstrap of the per-row estimates).
    """

    n: int
    rmse: float
    mean_estimate: float
    null: NullTable

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "rmse": self.rmse, "mean_estimate": self.mean_estimate,
                "null": self.null.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PerformanceProfile:
        return cls(int(d["n"]), float(d["rmse"]), float(d["mean_estimate"]),
                   NullTable.from_dict(d["null"]))


@dataclass(frozen=True)
class EstimateWindow:
    """Estimated squared errors of a window's rows: a count and a sum, mergeable."""

    n: int
    total: float

    def __add__(self, other: EstimateWindow) -> EstimateWindow:
        return EstimateWindow(self.n + other.n, self.total + other.total)


def estimate_window(estimates: np.ndarray) -> EstimateWindow:
    """Sum per-row estimates (non-finite ones skipped; negative ones count as 0)."""
    e = np.asarray(estimates, dtype=np.float64)
    e = np.maximum(e[np.isfinite(e)], 0.0)
    return EstimateWindow(len(e), float(e.sum()))


def relative_change(profile: PerformanceProfile, window: EstimateWindow) -> float | None:
    """Estimated RMSE of the window over the held-out RMSE, minus 1 (None if empty).

    Both sides are estimates of the same loss model, so its own bias cancels in the ratio."""
    if window.n == 0 or profile.mean_estimate <= 0:
        return None
    return float(np.sqrt(window.total / window.n / profile.mean_estimate) - 1.0)


def build_performance_profile(estimates: np.ndarray, residuals: np.ndarray,
                              rng: np.random.Generator,
                              trials: int = calibration.TRIALS) -> PerformanceProfile:
    """Profile held-out estimates against the same rows' measured residuals."""
    e = np.maximum(np.asarray(estimates, dtype=np.float64), 0.0)
    r = np.asarray(residuals, dtype=np.float64)
    if e.shape != r.shape:
        raise ValueError(f"estimates ({e.shape}) and residuals ({r.shape}) differ in shape")
    mean = float(e.mean())
    return PerformanceProfile(len(e), float(np.sqrt(np.mean(r * r))), mean,
                              _bootstrap_null(e, mean, rng, max(trials // 10, 500)))


def _bootstrap_null(e: np.ndarray, mean: float, rng: np.random.Generator, trials: int,
                    chunk_cells: int = 4_000_000) -> NullTable:
    """Quantiles of the estimated RMSE's relative change in n-row windows drawn from the
    held-out rows. The held-out mean is a property of the model (not re-drawn): the
    estimate of a window is compared with that number, not with another sample."""
    rows = []
    for n in calibration.SIZES:
        changes = []
        per_chunk = max(chunk_cells // n, 1)
        for start in range(0, trials, per_chunk):
            k = min(per_chunk, trials - start)
            draw = e[rng.integers(0, len(e), size=(k, n))]
            changes.append(np.sqrt(draw.mean(axis=1) / max(mean, 1e-300)) - 1.0)
        rows.append(np.quantile(np.concatenate(changes), calibration.LEVELS))
    return NullTable(np.asarray(calibration.SIZES, dtype=np.float64),
                     np.asarray(calibration.LEVELS), np.vstack(rows))

"""A binary classifier's measures from its residuals alone.

A classifier is served as a probability model: the prediction is p = P(classes[1]) and the
residual is r = y - p with y the class index (0 or 1). Then 1 - |r| is the probability the
model gave the class that happened, so log loss and accuracy are functions of r alone and
every window, counter and reference that keeps residuals keeps what they need; RMSE is the
square root of the Brier score and the mean residual is calibration-in-the-large (observed
rate minus predicted rate).
"""

from __future__ import annotations

import numpy as np

LOG_LOSS_EPS = 1e-15
"""Smallest probability a log loss takes the log of: one confident mistake costs at most
-log(1e-15) ~ 34.5 instead of infinity (scikit-learn clips likewise)."""


def log_losses(residuals: np.ndarray) -> np.ndarray:
    """Each row's log loss, -log P(the class that happened) = -log(1 - |r|)."""
    r = np.abs(np.asarray(residuals, dtype=np.float64))
    return -np.log(np.maximum(1.0 - r, LOG_LOSS_EPS))


def correct(residuals: np.ndarray) -> np.ndarray:
    """Whether each row's predicted class (classes[1] when p > 0.5) was right: for y = 0,
    r = -p and right iff p <= 0.5; for y = 1, r = 1 - p and right iff p > 0.5."""
    r = np.asarray(residuals, dtype=np.float64)
    return (r >= -0.5) & (r < 0.5)

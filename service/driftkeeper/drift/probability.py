"""A classifier's measures from what its rows keep.

A classifier is served as a probability model. A binary one predicts p = P(classes[1]) and
its residual is r = y - p with y the class index (0 or 1): 1 - |r| is the probability the
model gave the class that happened, so log loss and accuracy are functions of r alone, RMSE
is the square root of the Brier score and the mean residual is calibration-in-the-large
(observed rate minus predicted rate).

A classifier of K >= 3 classes predicts K probabilities. Rings, windows, counters and
references keep one number per row, so each row is reduced to:

- its *summary*, ``class index + that class's probability`` (the predicted class and how
  sure the model was, as one ordered number: ``ceil(summary) - 1`` is the class): what
  prediction drift and the loss model track;
- its *residual*, ``sqrt(Brier / 2)`` with the row's multiclass Brier score
  ``sum_k (p_k - [y = k])^2``: for K = 2 this is exactly the binary |y - p|, so RMSE stays
  the Brier score's root and the concept tests judge the multiclass Brier score;
- its *outcome*, the probability the model gave the class that happened: the log loss is
  ``-log(outcome)`` and the row is correct when no class had more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOG_LOSS_EPS = 1e-15
"""Smallest probability a log loss takes the log of: one confident mistake costs at most
-log(1e-15) ~ 34.5 instead of infinity (scikit-learn clips likewise)."""

TIE = 1e-12
"""A multiclass row is correct when the true class's probability is within this of the
highest (floating-point ties count as right, as argmax picking the first would)."""


def log_losses(residuals: np.ndarray) -> np.ndarray:
    """A binary classifier's log loss per row, -log P(the class that happened) =
    -log(1 - |r|)."""
    r = np.abs(np.asarray(residuals, dtype=np.float64))
    return outcome_log_losses(1.0 - r)


def correct(residuals: np.ndarray) -> np.ndarray:
    """Whether each binary row's predicted class (classes[1] when p > 0.5) was right: for
    y = 0, r = -p and right iff p <= 0.5; for y = 1, r = 1 - p and right iff p > 0.5."""
    r = np.asarray(residuals, dtype=np.float64)
    return (r >= -0.5) & (r < 0.5)


def is_multiclass(outputs: np.ndarray) -> bool:
    """K probability columns rather than one number per row."""
    return np.ndim(outputs) == 2


def summaries(outputs: np.ndarray) -> np.ndarray:
    """One number per row: a regression's or binary classifier's output as it is; K
    probabilities as ``predicted class index + its probability``."""
    out = np.asarray(outputs, dtype=np.float64)
    if not is_multiclass(out):
        return out
    if not len(out):
        return np.empty(0)
    k = out.argmax(axis=1)
    return k + out[np.arange(len(out)), k]


def predicted_classes(summary: np.ndarray) -> np.ndarray:
    """The class index a multiclass summary names (its probability is in (0, 1])."""
    return np.ceil(np.asarray(summary, dtype=np.float64)) - 1.0


def residuals(y: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """``y - prediction`` for one output per row; ``sqrt(Brier / 2)`` per row for K
    probabilities (y the class index)."""
    y = np.asarray(y, dtype=np.float64)
    out = np.asarray(outputs, dtype=np.float64)
    if not is_multiclass(out):
        return y - out
    hit = np.zeros_like(out)
    hit[np.arange(len(out)), y.astype(np.intp)] = 1.0
    return np.sqrt(((out - hit) ** 2).sum(axis=1) / 2.0)


def outcomes(y: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """The probability each row's model gave the class that happened (K probabilities, or
    a binary p with y in {0, 1})."""
    y = np.asarray(y, dtype=np.float64)
    out = np.asarray(outputs, dtype=np.float64)
    if not is_multiclass(out):
        return np.where(y >= 0.5, out, 1.0 - out)
    return out[np.arange(len(out)), y.astype(np.intp)]


def outcome_log_losses(outcome: np.ndarray) -> np.ndarray:
    """-log P(the class that happened), clipped at ``LOG_LOSS_EPS``."""
    return -np.log(np.maximum(np.asarray(outcome, dtype=np.float64), LOG_LOSS_EPS))


def multiclass_correct(outcome: np.ndarray, summary: np.ndarray) -> np.ndarray:
    """Whether the class that happened had the highest probability: the summary's
    fractional part is that highest probability."""
    s = np.asarray(summary, dtype=np.float64)
    return np.asarray(outcome, dtype=np.float64) >= s - predicted_classes(s) - TIE


def row_measures(classes: int, residual: np.ndarray, summary: np.ndarray,
                 outcome: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each labelled row's log loss and whether it was correct (NaN, False for a
    regression, ``classes`` 0): from the residual for a binary classifier, from the
    outcome and the summary for K >= 3."""
    if classes == 0:
        return np.full(len(residual), np.nan), np.zeros(len(residual), dtype=bool)
    if classes == 2:
        return log_losses(residual), correct(residual)
    return outcome_log_losses(outcome), multiclass_correct(outcome, summary)


@dataclass(frozen=True)
class Scored:
    """Labelled rows in the one-number forms every window and reference keeps."""

    summary: np.ndarray
    residual: np.ndarray
    outcome: np.ndarray  # NaN for a regression
    log_loss: np.ndarray  # NaN for a regression
    correct: np.ndarray
    outputs: np.ndarray  # the model's raw outputs (a multiclass model's K probabilities)


def score(classes: int, y: np.ndarray, outputs: np.ndarray) -> Scored:
    """Labelled rows (y: a value, or a class index) against the model's raw outputs;
    ``classes`` is 0 for a regression."""
    summary, residual = summaries(outputs), residuals(y, outputs)
    outcome = (outcomes(y, outputs) if classes else np.full(len(residual), np.nan))
    losses, hits = row_measures(classes, residual, summary, outcome)
    return Scored(summary, residual, outcome, losses, hits, np.asarray(outputs, np.float64))


def segment_scales(classes: int, predictions: np.ndarray) -> np.ndarray:
    """What a segment's residual shift is relative to (``drift/segments.py`` sums
    |prediction|): the prediction itself, or for K >= 3 classes the winning probability
    (a summary's class index is a name, not a scale)."""
    p = np.asarray(predictions, dtype=np.float64)
    return p - predicted_classes(p) if classes >= 3 else p

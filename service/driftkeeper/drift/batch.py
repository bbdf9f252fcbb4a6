"""One batch of rows judged as live traffic is: its windows (what the pod's monitor gathers
from its rings, made at once from a table) and the same ``evaluate_all``. What
``driftkeeper report`` and ``driftkeeper drift --model`` run on a CSV, and what the
benchmarks run on their windows."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .judge import Windows, evaluate_all
from .performance import estimate_window
from .probability import Scored, score, segment_scales, summaries
from .report import DriftReport
from .segments import SegmentSums, segment_matrix, segment_sums
from .settings import MonitorSettings
from .windows import (
    class_prediction_windows,
    data_window,
    prediction_window,
    residual_window,
)

if TYPE_CHECKING:  # the serving model is only passed in; drift/ does not import serving/
    from ..serving.runtime import ServingModel


def batch_windows(model: ServingModel, X: np.ndarray, labelled: Scored | None = None,
                  segments: Callable[[], SegmentSums | None] | None = None,
                  classes: tuple[np.ndarray, np.ndarray] | None = None) -> Windows:
    """Every window of encoded rows ``X``: all rows count for data drift; the rows the model
    can score (complete, known categories) for the predictions and the loss estimates;
    ``labelled`` (the labelled rows, scored) for concept drift, when there are labels
    (``classes``: a multiclass model's labels and probabilities of those rows)."""
    profile = model.bundle.profile
    complete = profile.schema.complete_rows(X)
    k = profile.n_classes
    outputs = _outputs(model, X[complete])
    scored = summaries(outputs)
    estimates = model.estimate_squared_errors(X[complete], scored)
    return Windows(data_window(profile, X), prediction_window(profile, scored),
                   None if estimates is None else estimate_window(estimates),
                   None if labelled is None else residual_window(
                       profile, labelled.residual, labelled.log_loss, labelled.correct,
                       *(classes or (None, None))),
                   segments, class_prediction_windows(profile, outputs) if k >= 3 else None)


def judge_frame(model: ServingModel, frame: pd.DataFrame, settings: MonitorSettings,
                now: float) -> tuple[DriftReport, Windows]:
    """Every kind's verdict on a table of current rows; concept drift too when the table
    holds the target (labels), with where it lives once it is found."""
    schema = model.bundle.schema
    X = schema.encode(frame)
    scored = segments = None
    if schema.target.name in frame.columns and model.bundle.profile.residuals is not None:
        y = schema.encode_target(frame[schema.target.name])  # a classifier's: class indices
        labelled = schema.complete_rows(X) & np.isfinite(y)
        k = schema.target.n_classes
        outputs = _outputs(model, X[labelled])
        scored = score(k, y[labelled], outputs)
        segments = partial(_segment_sums, model, segment_matrix(
            X[labelled], y[labelled] if k >= 3 else None), scored.residual, scored.summary)
    windows = batch_windows(model, X, scored, segments,
                            None if scored is None else (y[labelled], outputs))
    report = evaluate_all(model.bundle.profile, windows, settings, model.version, now,
                          predict=model.monitored)
    return report, windows


def _outputs(model: ServingModel, X: np.ndarray) -> np.ndarray:
    """The model's raw outputs for rows it can score; none (in the outputs' shape) for
    no rows, which the model is not asked about."""
    if len(X):
        return model.predict(X)
    k = model.bundle.profile.n_classes
    return np.empty((0, k)) if k >= 3 else np.empty(0)


def _segment_sums(model: ServingModel, X: np.ndarray, residuals: np.ndarray,
                  predicted: np.ndarray) -> SegmentSums | None:
    """The labelled rows' sums per segment (asked for only once concept drift is found)."""
    segments = model.bundle.profile.segments
    if segments is None:
        return None
    return segment_sums(segments.layout, X, residuals,
                        segment_scales(model.bundle.profile.n_classes, predicted))

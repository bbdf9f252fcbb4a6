"""The windows of one batch of rows (a CSV, a benchmark's window): what the pod's monitor
gathers from its rings, made at once from encoded rows, so that a batch is judged by the
same ``evaluate_all`` as live traffic."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .judge import Windows
from .performance import estimate_window
from .segments import SegmentSums
from .windows import data_window, prediction_window, residual_window

if TYPE_CHECKING:  # the serving model is only passed in; drift/ does not import serving/
    from ..serving.runtime import ServingModel


def batch_windows(model: ServingModel, X: np.ndarray, residuals: np.ndarray | None = None,
                  segments: Callable[[], SegmentSums | None] | None = None) -> Windows:
    """Every window of encoded rows ``X``: all rows count for data drift; the rows the model
    can score (complete, known categories) for the predictions and the loss estimates;
    ``residuals`` (of the labelled rows) for concept drift, when there are labels."""
    profile = model.bundle.profile
    complete = profile.schema.complete_rows(X)
    scored = model.predict(X[complete]) if complete.any() else np.empty(0)
    estimates = model.estimate_squared_errors(X[complete], scored)
    return Windows(data_window(profile, X), prediction_window(profile, scored),
                   None if estimates is None else estimate_window(estimates),
                   None if residuals is None else residual_window(profile, residuals),
                   segments)

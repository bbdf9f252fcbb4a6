"""One evaluation sequence for every caller: the pod's evaluator (windows from its rings),
the operator (windows from the fleet's summed counters) and ``driftkeeper report`` (a
batch of rows). Each gathers its windows its own way; the verdicts are taken here, in one
order, with one rule for when concept drift is located."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .evaluate import (
    evaluate_concept,
    evaluate_data,
    evaluate_performance,
    evaluate_predictions,
    locate_in_sums,
)
from .performance import EstimateWindow
from .profile import ReferenceProfile
from .report import DriftReport
from .segments import SegmentSums
from .settings import MonitorSettings
from .stats import NumericCounts
from .windows import DataWindow, ResidualWindow


@dataclass(frozen=True)
class Windows:
    """Every window of one evaluation, however it was gathered."""

    data: DataWindow
    predictions: NumericCounts | None  # None: the version has no prediction reference
    estimates: EstimateWindow | None  # None: the version has no loss model
    residuals: ResidualWindow | None  # None: no labels (a batch without its target)
    # The labelled rows' sums per segment, asked for only once concept drift is found
    # (naming segments of a quiet window would only add noise). None: cannot be located.
    segments: Callable[[], SegmentSums | None] | None = None
    # A multiclass model's probability windows by class (None: another model).
    class_predictions: dict[str, NumericCounts] | None = None


def evaluate_all(profile: ReferenceProfile, windows: Windows, settings: MonitorSettings,
                 version: str | None, now: float,
                 predict: Callable[[np.ndarray], np.ndarray] | None = None) -> DriftReport:
    """Every kind's verdict; where concept drift lives once it is found; each drifted
    feature's impact on the predictions when ``predict`` is given."""
    concept = None
    if windows.residuals is not None:
        concept = evaluate_concept(profile, windows.residuals, settings.concept)
        if concept.drift and windows.segments is not None:
            concept = replace(concept, segments=locate_in_sums(
                profile, windows.segments(), settings.concept.segments))
    prediction, by_class = evaluate_predictions(profile, windows.predictions,
                                                windows.class_predictions, settings.prediction)
    return DriftReport(
        evaluate_data(profile, windows.data, settings.data, predict=predict),
        concept, version, now, prediction=prediction,
        performance=evaluate_performance(profile, windows.estimates, settings.performance),
        class_predictions=by_class)

"""The fleet's drift report: its summed windows judged against the version's reference.

Pure: the counters come in (``sources.py``), the report goes out; the same verdicts as a
pod's own evaluator, on the whole Deployment's traffic.
"""

from __future__ import annotations

from functools import partial

from driftkeeper.drift.judge import Windows, evaluate_all
from driftkeeper.drift.probability import summaries
from driftkeeper.drift.profile import ReferenceProfile
from driftkeeper.drift.report import DriftReport
from driftkeeper.model.predictor import TreePredictor
from driftkeeper.policy import DriftPolicy

from .counters import (
    class_prediction_windows_of,
    data_window_of,
    estimate_window_of,
    prediction_window_of,
    residual_window_of,
    segment_window_of,
)
from .sources import FleetView


def judge_fleet(profile: ReferenceProfile, view: FleetView, policy: DriftPolicy,
                predictor: TreePredictor | None, now: float) -> DriftReport:
    """Every kind's verdict on the fleet's windows; where concept drift lives once it is
    found (from the fleet's segment counters); each drifted feature's impact when the
    version's arrays are at hand."""
    assert view.version is not None
    windows = Windows(data_window_of(profile, view.data),
                      prediction_window_of(profile, view.data),
                      estimate_window_of(profile, view.data),
                      residual_window_of(profile, view.concept),
                      partial(segment_window_of, profile, view.concept),
                      class_prediction_windows_of(profile, view.data))
    return evaluate_all(profile, windows, policy.monitor, view.version, now,
                        predict=(lambda X: summaries(predictor.predict(X)))
                        if predictor else None)

"""The fleet's drift report: its summed windows judged against the version's reference.

Pure: the counters come in (``sources.py``), the report goes out; the same verdicts as a
pod's own evaluator, on the whole Deployment's traffic.
"""

from __future__ import annotations

from dataclasses import replace

from driftkeeper.drift.evaluate import (
    evaluate_concept,
    evaluate_data,
    evaluate_performance,
    evaluate_prediction,
    locate_in_sums,
)
from driftkeeper.drift.profile import ReferenceProfile
from driftkeeper.drift.report import DriftReport
from driftkeeper.model.predictor import TreePredictor
from driftkeeper.policy import DriftPolicy

from .counters import (
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
    found; each drifted feature's impact when the version's arrays are at hand."""
    assert view.version is not None
    concept = evaluate_concept(profile, residual_window_of(profile, view.concept),
                               policy.monitor.concept)
    if concept.drift:  # where it lives, from the fleet's segment counters
        concept = replace(concept, segments=locate_in_sums(
            profile, segment_window_of(profile, view.concept),
            policy.monitor.concept.segments))
    return DriftReport(
        evaluate_data(profile, data_window_of(profile, view.data), policy.monitor.data,
                      predict=predictor.predict if predictor else None),
        concept,
        view.version, now,
        prediction=evaluate_prediction(profile, prediction_window_of(profile, view.data),
                                       policy.monitor.prediction),
        performance=evaluate_performance(profile, estimate_window_of(profile, view.data),
                                         policy.monitor.performance))

"""The local driver reads the service's /metrics into the same Observation the operator
builds from a drift report: both drivers judge on the same facts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from driftkeeper.drift.evaluate import (
    evaluate_concept,
    evaluate_data,
    evaluate_performance,
    evaluate_prediction,
    locate_concept_drift,
)
from driftkeeper.drift.performance import estimate_window
from driftkeeper.drift.report import DriftReport
from driftkeeper.drift.segments import SegmentSettings
from driftkeeper.drift.settings import (
    ConceptSettings,
    DataSettings,
    PerformanceSettings,
    PredictionSettings,
)
from driftkeeper.drift.windows import data_window, prediction_window, residual_window
from driftkeeper.local.observe import parse_metrics
from driftkeeper.model.store import ModelStore
from driftkeeper.policy import parse_policy
from driftkeeper.policy.engine import EngineState, Observation, step
from driftkeeper.serving.metrics import report_metrics
from driftkeeper.serving.runtime import ServingModel


def _both_views(report: DriftReport) -> tuple[Observation | None, Observation]:
    """What the local driver reads from /metrics, and what the operator builds."""

    class Collector:
        def collect(self):
            return report_metrics(report.to_dict())

    registry = CollectorRegistry()
    registry.register(Collector())
    return (parse_metrics(generate_latest(registry).decode(), report.to_dict()),
            Observation.from_report(report))


def test_metrics_and_report_give_the_same_observation(trained_model_dir: Path,
                                                      encoded) -> None:
    bundle = ModelStore(trained_model_dir).load()
    profile = bundle.profile
    X = encoded[np.random.default_rng(2).choice(len(encoded), 600, replace=False)]
    X[:, 0] *= 1.5  # carat drifts
    residuals = np.random.default_rng(3).normal(300.0, 600.0, 600)  # biased: concept drift
    predictions = bundle.model.predict(X)
    estimates = ServingModel.from_bundle(bundle).estimate_squared_errors(X, predictions)
    report = DriftReport(evaluate_data(profile, data_window(profile, X), DataSettings()),
                         evaluate_concept(profile, residual_window(profile, residuals),
                                          ConceptSettings()), "v1", 123.0,
                         prediction=evaluate_prediction(
                             profile, prediction_window(profile, predictions),
                             PredictionSettings()),
                         performance=evaluate_performance(
                             profile, estimate_window(estimates), PerformanceSettings()))

    parsed, built = _both_views(report)
    assert parsed.drift == built.drift == {"data": True, "concept": True, "prediction": True,
                                           "performance": True}
    assert parsed.drifted_features == built.drifted_features == ("carat",)  # only carat
    assert parsed.concept_tests == built.concept_tests and "bias" in built.concept_tests
    assert parsed.feature_checks.keys() == built.feature_checks.keys()
    for name, (method, score, threshold) in built.feature_checks.items():
        assert parsed.feature_checks[name][0] == method
        np.testing.assert_allclose(parsed.feature_checks[name][1:], (score, threshold))
    for test, values in built.concept_checks.items():
        np.testing.assert_allclose(parsed.concept_checks[test], values)
    assert parsed.evaluated_at == 123.0 and parsed.model_version == "v1"
    # Both judge data drift on the rule's statistic (rule any: worst feature ratio vs 1).
    assert parsed.statistics == built.statistics == {"data": "max_feature_ratio",
                                                     "concept": "rmse_increase",
                                                     "prediction": "ks",
                                                     "performance": "estimated_rmse_increase"}
    assert built.thresholds["data"] == 1.0 and built.scores["data"] > 1.0
    assert parsed.samples == built.samples == {"data": 600, "concept": 600, "prediction": 600,
                                               "performance": 600}
    for kind in ("data", "concept", "prediction", "performance"):
        np.testing.assert_allclose((parsed.scores[kind], parsed.thresholds[kind]),
                                   (built.scores[kind], built.thresholds[kind]))


def test_where_concept_drift_lives_reaches_both_drivers(trained_model_dir: Path,
                                                        diamonds) -> None:
    """The located segments travel through /metrics as they do through the report, and the
    ConceptDrift condition names them."""
    bundle = ModelStore(trained_model_dir).load()
    profile = bundle.profile
    rows = diamonds.sample(1500, random_state=4)
    X = profile.schema.encode(rows)
    predictions = bundle.model.predict(X)
    actual = np.where(rows["color"].isin(["D", "E", "F"]), 1.25, 1.0) * rows["price"]
    residuals = actual.to_numpy() - predictions
    concept = evaluate_concept(profile, residual_window(profile, residuals), ConceptSettings())
    assert concept.drift is True
    located = locate_concept_drift(profile, X, residuals, predictions, SegmentSettings())
    report = DriftReport(evaluate_data(profile, data_window(profile, X), DataSettings()),
                         replace(concept, segments=located), "v1", 50.0)

    parsed, built = _both_views(report)
    assert parsed.concept_locations == built.concept_locations
    assert built.concept_locations[0].startswith("color D, E, F: price ")
    decision = step(parse_policy({}), EngineState(), built, 50.0, serving_version="v1")
    condition = next(c for c in decision.conditions if c.type == "ConceptDrift")
    assert f"where: {built.concept_locations[0]}" in condition.message

"""Estimated performance before labels: the statistic, its null, its verdict, and the loss
model that feeds it (fit, export, and tracking the measured RMSE)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from driftkeeper.drift.evaluate import evaluate_performance
from driftkeeper.drift.performance import (
    EstimateWindow,
    PerformanceProfile,
    build_performance_profile,
    estimate_window,
    relative_change,
)
from driftkeeper.drift.profile import ReferenceProfile
from driftkeeper.drift.settings import PerformanceSettings
from driftkeeper.model.loss import export_loss_model, fit_loss_model, loss_inputs
from driftkeeper.model.predictor import TreePredictor
from driftkeeper.model.store import ModelStore
from driftkeeper.serving.runtime import ServingModel


def _profile(estimates: np.ndarray, residuals: np.ndarray, seed: int = 0) -> PerformanceProfile:
    return build_performance_profile(estimates, residuals, np.random.default_rng(seed),
                                     trials=5000)


def test_relative_change_known_answer() -> None:
    prof = _profile(np.full(100, 4.0), np.full(100, 2.0))
    assert prof.rmse == 2.0 and prof.mean_estimate == 4.0
    # Window mean estimate 9 against 4: estimated RMSE 3 against 2, +50 %.
    assert relative_change(prof, EstimateWindow(10, 90.0)) == pytest.approx(0.5)
    assert relative_change(prof, EstimateWindow(0, 0.0)) is None


def test_estimate_window_sums_clips_and_merges() -> None:
    w = estimate_window(np.array([1.0, -2.0, np.nan, 3.0, np.inf]))
    assert (w.n, w.total) == (3, 4.0)  # NaN and inf skipped, a negative estimate counts 0
    rng = np.random.default_rng(1)
    e = rng.gamma(2.0, 100.0, 1000)
    whole, halves = estimate_window(e), estimate_window(e[:400]) + estimate_window(e[400:])
    assert halves.n == whole.n and halves.total == pytest.approx(whole.total)


def test_null_matches_a_direct_simulation() -> None:
    """The tabulated threshold at n rows is the (1 - alpha) quantile of the estimated RMSE
    change of n rows drawn from the held-out estimates."""
    rng = np.random.default_rng(2)
    e = rng.lognormal(10.0, 1.2, 5000)  # heavy-tailed, like squared errors
    prof = _profile(e, np.sqrt(e))
    draws = e[np.random.default_rng(3).integers(0, len(e), (20000, 1000))].mean(axis=1)
    direct = np.quantile(np.sqrt(draws / e.mean()) - 1.0, 0.99)
    assert prof.null.threshold(1000, 0.01) == pytest.approx(direct, rel=0.08)
    # Constant estimates have no noise: the threshold is 0, so the floor decides.
    flat = _profile(np.full(100, 5.0), np.full(100, 1.0))
    assert flat.null.threshold(500, 0.01) == pytest.approx(0.0, abs=1e-9)


def test_profile_round_trips_through_json() -> None:
    prof = _profile(np.random.default_rng(4).gamma(2.0, 3.0, 300), np.ones(300))
    again = PerformanceProfile.from_dict(prof.to_dict())
    assert (again.n, again.rmse) == (prof.n, prof.rmse)
    assert again.mean_estimate == pytest.approx(prof.mean_estimate)
    assert again.null.threshold(800, 0.01) == pytest.approx(prof.null.threshold(800, 0.01),
                                                            rel=1e-6)


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="estimates"):
        _profile(np.ones(5), np.ones(6))


def _reference(trained_model_dir: Path) -> ReferenceProfile:
    return ModelStore(trained_model_dir).load(with_estimator=False).profile


def test_verdict_thresholds_and_switches(trained_model_dir: Path) -> None:
    profile = _reference(trained_model_dir)
    prof = profile.performance
    assert prof is not None
    same = EstimateWindow(500, 500 * prof.mean_estimate)
    worse = EstimateWindow(500, 500 * prof.mean_estimate * 1.5 ** 2)  # estimated RMSE x1.5
    quiet = evaluate_performance(profile, same, PerformanceSettings())
    assert quiet is not None and quiet.score == pytest.approx(0.0, abs=1e-12)
    assert quiet.drift is False and quiet.rmse_reference == prof.rmse
    loud = evaluate_performance(profile, worse, PerformanceSettings())
    assert loud is not None and loud.drift is True and loud.score == pytest.approx(0.5)
    assert loud.rmse_estimated == pytest.approx(1.5 * prof.rmse)
    # The floor holds an auto threshold up; a policy's number is used as it is.
    floored = evaluate_performance(profile, same, PerformanceSettings(min_score=0.6))
    assert floored is not None and (floored.threshold, floored.threshold_source) == (0.6, "floor")
    fixed = evaluate_performance(profile, worse, PerformanceSettings(threshold=0.7))
    assert fixed is not None and fixed.threshold_source == "policy" and fixed.drift is False
    few = evaluate_performance(profile, EstimateWindow(50, 50 * prof.mean_estimate * 4),
                               PerformanceSettings())
    assert few is not None and few.drift is None  # below minSamples: no verdict
    assert evaluate_performance(profile, same, PerformanceSettings(enabled=False)) is None
    assert evaluate_performance(profile, None, PerformanceSettings()) is None


def test_loss_model_learns_where_errors_are_large() -> None:
    """Heteroscedastic errors (sd grows with x): windows of larger x get larger estimates,
    and the estimated RMSE of a shifted window is close to its measured RMSE."""
    rng = np.random.default_rng(5)
    X = rng.uniform(0.0, 1.0, (6000, 2))
    predictions = 1000.0 + 500.0 * X[:, 0]
    residuals = rng.normal(0.0, 50.0 + 400.0 * X[:, 0])
    model = fit_loss_model(X[:4000], predictions[:4000], residuals[:4000], seed=0)
    arrays = export_loss_model(model, X[:4000], predictions[:4000])
    assert arrays is not None  # a plain boosted regressor always exports
    loss = TreePredictor.from_arrays(arrays)
    held = loss.predict(loss_inputs(X[:4000], predictions[:4000]))
    prof = _profile(np.maximum(held, 0.0), residuals[:4000])
    fresh = slice(4000, None)
    high = X[fresh, 0] > 0.7  # a covariate shift towards hard rows
    estimates = loss.predict(loss_inputs(X[fresh][high], predictions[fresh][high]))
    change = relative_change(prof, estimate_window(estimates))
    measured = np.sqrt(np.mean(residuals[fresh][high] ** 2)) / prof.rmse - 1.0
    assert change is not None and change > 0.3  # analytically +42 %
    assert change == pytest.approx(measured, abs=0.1)


def test_served_model_estimates_match_scikit_learn(trained_model_dir: Path, encoded) -> None:
    """The pod's estimates (exported loss model, no scikit-learn) equal the fitted model's,
    and on held-out-like rows their mean is the profile's."""
    bundle = ModelStore(trained_model_dir).load()
    served = ServingModel.from_bundle(bundle)
    X = encoded[:3000]
    predictions = served.predict(X)
    estimates = served.estimate_squared_errors(X, predictions)
    assert estimates is not None and estimates.shape == (3000,) and (estimates >= 0).all()
    prof = bundle.profile.performance
    assert prof is not None
    # Training rows are easier than held-out ones, but the order of magnitude is the same.
    assert 0.3 < float(np.sqrt(estimates.mean() / prof.mean_estimate)) < 1.5

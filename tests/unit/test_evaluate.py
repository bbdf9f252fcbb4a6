"""Verdicts: minimum sample sizes, dataset rules, unseen/invalid counting, concept drift."""

from __future__ import annotations

import json

import numpy as np
import pytest

from driftkeeper.drift.evaluate import evaluate_concept, evaluate_data
from driftkeeper.drift.profile import ReferenceProfile, build_profile
from driftkeeper.drift.report import DriftReport
from driftkeeper.drift.settings import ConceptSettings, DataSettings, FeatureRule
from driftkeeper.drift.windows import data_window, residual_window
from driftkeeper.schema import DIAMONDS_SCHEMA, UNSEEN_CODE


@pytest.fixture(scope="module")
def profile(encoded):
    rng = np.random.default_rng(0)
    residuals = rng.standard_t(4, 8000) * 400.0
    return build_profile(DIAMONDS_SCHEMA, encoded, residuals, seed=3, trials=4000)


def _window(encoded, n, seed=0):
    rng = np.random.default_rng(seed)
    return encoded[rng.integers(0, len(encoded), n)].copy()


def test_below_min_samples_is_insufficient_data_not_drift(profile, encoded) -> None:
    rows = _window(encoded, 150)
    rows[:, 0] *= 3.0  # a huge shift, but too few rows for a verdict
    verdict = evaluate_data(profile, data_window(profile, rows), DataSettings(min_samples=200))
    assert verdict.drift is None
    assert all(f.drift is None for f in verdict.features.values())
    assert verdict.features["carat"].score > 0.5  # the score is still reported
    enough = evaluate_data(profile, data_window(profile, rows), DataSettings(min_samples=100))
    assert enough.drift is True


def test_empty_window_has_no_scores(profile) -> None:
    empty = data_window(profile, np.empty((0, 6)))
    verdict = evaluate_data(profile, empty, DataSettings())
    assert verdict.score is None and verdict.drift is None and verdict.samples == 0
    json.dumps(DriftReport(verdict).to_dict(), allow_nan=False)


def test_unseen_and_invalid_values_are_counted(profile, encoded) -> None:
    rows = _window(encoded, 400)
    rows[:30, DIAMONDS_SCHEMA.index("cut")] = UNSEEN_CODE
    rows[:7, DIAMONDS_SCHEMA.index("depth")] = np.nan
    verdict = evaluate_data(profile, data_window(profile, rows), DataSettings())
    assert verdict.features["cut"].unseen == 30
    assert verdict.features["depth"].invalid == 7
    assert verdict.features["depth"].samples == 393
    doc = DriftReport(verdict).to_dict()
    json.dumps(doc, allow_nan=False)  # never NaN or inf in the report


def test_fixed_threshold_and_per_feature_method(profile, encoded) -> None:
    settings = DataSettings(features={"carat": FeatureRule("ks", 0.01),
                                      "cut": FeatureRule("chisquare")})
    verdict = evaluate_data(profile, data_window(profile, _window(encoded, 1000)), settings)
    carat = verdict.features["carat"]
    assert carat.method == "ks" and carat.threshold == 0.01
    assert carat.threshold_source == "policy"
    assert carat.pvalue is not None and carat.error_bound is not None
    assert verdict.features["cut"].method == "chisquare"
    assert verdict.features["depth"].method == "psi"


def test_share_rule(profile, encoded) -> None:
    rows = _window(encoded, 1000)
    rows[:, 0] *= 1.5
    w = data_window(profile, rows)
    assert evaluate_data(profile, w, DataSettings(rule="share", share_threshold=0.5)).drift is False
    verdict = evaluate_data(profile, w, DataSettings(rule="share", share_threshold=0.1))
    assert verdict.drift is True and verdict.drifted_features == ["carat"]
    assert verdict.share == pytest.approx(1 / 6)


@pytest.mark.parametrize("scale", [1.0, 1.5])
def test_each_rule_reports_the_statistic_it_judged(profile, encoded, scale) -> None:
    """The threshold shown beside a verdict is the one the rule compared against: under
    "any" the worst feature's score over its own threshold against 1, never the mean rule's
    threshold; under "share" the share; under "mean" the mean score."""
    rows = _window(encoded, 1000, seed=4)
    rows[:, 0] *= scale
    w = data_window(profile, rows)
    any_rule = evaluate_data(profile, w, DataSettings(rule="any", threshold=0.15))
    ratios = {n: f.score / f.threshold for n, f in any_rule.features.items()}
    assert any_rule.statistic_name == "max_feature_ratio"
    assert any_rule.statistic == pytest.approx(max(ratios.values()))
    assert any_rule.threshold == 1.0 and any_rule.mean_threshold == 0.15
    assert any_rule.drift is (any_rule.statistic > 1.0) is (scale > 1.0)

    share = evaluate_data(profile, w, DataSettings(rule="share", share_threshold=0.1))
    assert (share.statistic_name, share.statistic, share.threshold) == (
        "drifted_share", share.share, 0.1)
    mean = evaluate_data(profile, w, DataSettings(rule="mean", threshold=0.05))
    assert (mean.statistic_name, mean.statistic, mean.threshold) == (
        "mean_score", mean.score, 0.05)
    assert mean.drift is (mean.score > 0.05)
    # The report keeps them through JSON (the service publishes, the pod's metrics read it).
    again = DriftReport.from_dict(json.loads(json.dumps(DriftReport(any_rule).to_dict())))
    assert again.data == any_rule


def test_exact_mode_uses_raw_values(encoded) -> None:
    profile = build_profile(DIAMONDS_SCHEMA, encoded, keep_values=True, trials=2000)
    rows = _window(encoded, 500)
    rows[:, 0] *= 1.3
    exact = {"carat": rows[:, 0], "depth": rows[:, 4], "table": rows[:, 5]}
    settings = DataSettings(features={"carat": FeatureRule("ks")})
    verdict = evaluate_data(profile, data_window(profile, rows), settings, exact_values=exact)
    from scipy.stats import ks_2samp

    assert verdict.features["carat"].score == pytest.approx(
        ks_2samp(encoded[:, 0], rows[:, 0]).statistic)
    assert verdict.features["carat"].drift is True


def test_concept_unchanged_residuals_are_quiet(profile) -> None:
    rng = np.random.default_rng(9)
    quiet = 0
    for _ in range(100):
        r = rng.standard_t(4, 500) * 400.0
        verdict = evaluate_concept(profile, residual_window(profile, r), ConceptSettings())
        quiet += verdict.drift is False
    assert quiet >= 95


def test_concept_rmse_increase_is_flagged(profile) -> None:
    rng = np.random.default_rng(10)
    r = rng.standard_t(4, 500) * 400.0 * 1.5
    verdict = evaluate_concept(profile, residual_window(profile, r), ConceptSettings())
    assert verdict.score == pytest.approx(0.5, abs=0.2)
    assert verdict.drift is True and "rmse" in verdict.reasons


def test_smaller_errors_are_not_concept_drift(profile) -> None:
    """Residuals half as wide (a model replaying rows it trained on) differ in distribution
    but are no stale model; residuals as much wider and reshaped are."""
    rng = np.random.default_rng(13)
    base = rng.standard_t(4, 1000) * 400.0
    better = evaluate_concept(profile, residual_window(profile, base * 0.5), ConceptSettings())
    assert better.score < -0.3 and better.residual_ks.score > better.residual_ks.threshold
    assert better.residual_ks.drift is False and better.drift is False
    # A reshaped distribution whose errors are no smaller than the reference's still counts.
    reshaped = np.where(np.abs(base) < 400.0, base * 0.2, base * 1.05)
    worse = evaluate_concept(profile, residual_window(profile, reshaped), ConceptSettings())
    assert worse.score >= 0 and worse.residual_ks.drift is True
    assert "residual_ks" in worse.reasons


def test_concept_pure_bias_shift_is_caught(profile) -> None:
    """A shift too small to move the RMSE past 0.15 is still caught by the bias test."""
    rng = np.random.default_rng(11)
    r = rng.standard_t(4, 1000) * 400.0 + 150.0
    verdict = evaluate_concept(profile, residual_window(profile, r), ConceptSettings())
    assert verdict.score < 0.15
    assert verdict.drift is True and "bias" in verdict.reasons


def test_concept_bias_floor_is_a_share_of_the_held_out_rmse(profile) -> None:
    """A mean error shift of 8 % of the held-out RMSE, on so many rows that chance could not
    produce it: real, but under the practical floor (15 %), so not drift; with no floor the
    calibrated threshold alone flags it."""
    ref = profile.residuals
    rng = np.random.default_rng(12)
    r = rng.choice(np.asarray(rng.standard_t(4, 20000) * 400.0), 20000) + ref.mean
    r = r - r.mean() + ref.mean + 0.08 * ref.rmse
    window = residual_window(profile, r)
    floored = evaluate_concept(profile, window, ConceptSettings())
    assert floored.bias_test.threshold == pytest.approx(0.15 * ref.rmse)
    assert floored.bias_test.score == pytest.approx(0.08 * ref.rmse)
    assert floored.bias_test.drift is False
    unfloored = evaluate_concept(profile, window, ConceptSettings(bias_min_score=0.0))
    assert unfloored.bias_test.threshold < 0.08 * ref.rmse
    assert unfloored.bias_test.drift is True


def test_concept_min_samples(profile) -> None:
    r = np.full(50, 5000.0)
    verdict = evaluate_concept(profile, residual_window(profile, r), ConceptSettings())
    assert verdict.drift is None and verdict.samples == 50 and verdict.score > 1


def test_report_roundtrip_and_shape(profile, encoded) -> None:
    data = evaluate_data(profile, data_window(profile, _window(encoded, 300)), DataSettings())
    rng = np.random.default_rng(1)
    concept = evaluate_concept(profile, residual_window(profile, rng.normal(0, 400, 300)),
                               ConceptSettings())
    doc = DriftReport(data, concept, "v1", 123.0).to_dict()
    for block in ("data", "concept"):
        assert {"score", "threshold", "drift", "samples"} <= set(doc[block])
    assert {"method", "score", "threshold", "drift"} <= set(doc["data"]["features"]["carat"])
    assert DriftReport.from_dict(json.loads(json.dumps(doc))) == DriftReport(data, concept,
                                                                            "v1", 123.0)
    assert "concept" not in DriftReport(data).to_dict()


def test_profile_save_load_roundtrip(profile, tmp_path, encoded) -> None:
    path = tmp_path / "profile.json"
    profile.save(path)
    loaded = ReferenceProfile.load(path)
    rows = _window(encoded, 700, seed=5)
    a = evaluate_data(profile, data_window(profile, rows), DataSettings())
    b = evaluate_data(loaded, data_window(loaded, rows), DataSettings())
    assert a == b


# -- prediction drift --------------------------------------------------------------------

@pytest.fixture(scope="module")
def with_predictions(encoded):
    """A profile whose held-out 'predictions' are a known function of carat."""
    rng = np.random.default_rng(5)
    held_out = encoded[rng.integers(0, len(encoded), 8000)]
    return build_profile(DIAMONDS_SCHEMA, encoded, rng.standard_t(4, 8000) * 400.0, seed=3,
                         trials=4000, predictions=_price(held_out))


def _price(rows: np.ndarray) -> np.ndarray:
    return 4000.0 * rows[:, 0] ** 1.7


def test_prediction_ks_matches_scipy_within_its_bound(with_predictions, encoded) -> None:
    from scipy.stats import ks_2samp

    from driftkeeper.drift.evaluate import evaluate_prediction
    from driftkeeper.drift.settings import PredictionSettings
    from driftkeeper.drift.windows import prediction_window

    rows = _window(encoded, 1000, seed=6)
    rows[:, 0] *= 1.1  # carat x1.1: predictions about 17 % higher
    predictions = _price(rows)
    verdict = evaluate_prediction(with_predictions,
                                  prediction_window(with_predictions, predictions),
                                  PredictionSettings())
    assert verdict is not None and verdict.method == "ks" and verdict.samples == 1000
    reference = _price(encoded[np.random.default_rng(5).integers(0, len(encoded), 8000)])
    exact = ks_2samp(reference, predictions).statistic
    assert abs(verdict.score - exact) <= verdict.error_bound + 1e-9
    assert verdict.drift is True and verdict.threshold_source in ("auto", "floor")
    # Unshifted rows: the same test stays quiet, and its auto threshold is the calibrated
    # one (the KS critical value for 1,000 vs 8,000 rows at 1 % is about 0.054).
    quiet = evaluate_prediction(with_predictions,
                                prediction_window(with_predictions, _price(_window(encoded,
                                                                                   1000, 7))),
                                PredictionSettings())
    assert quiet is not None and quiet.drift is False
    assert 0.045 < quiet.threshold < 0.07


def test_prediction_windows_add_up_across_workers(with_predictions, encoded) -> None:
    from driftkeeper.drift.windows import prediction_window

    predictions = _price(_window(encoded, 900, seed=8))
    parts = [prediction_window(with_predictions, p) for p in np.array_split(predictions, 3)]
    whole = prediction_window(with_predictions, predictions)
    assert whole is not None and all(p is not None for p in parts)
    merged = parts[0] + parts[1] + parts[2]
    np.testing.assert_array_equal(merged.counts, whole.counts)


def test_no_prediction_reference_or_disabled_means_no_verdict(profile, with_predictions,
                                                              encoded) -> None:
    from driftkeeper.drift.evaluate import evaluate_prediction
    from driftkeeper.drift.profile import ReferenceProfile
    from driftkeeper.drift.settings import PredictionSettings
    from driftkeeper.drift.windows import prediction_window

    assert profile.predictions is None  # built without predictions (an older model)
    assert prediction_window(profile, np.ones(10)) is None
    assert evaluate_prediction(profile, None, PredictionSettings()) is None
    window = prediction_window(with_predictions, _price(_window(encoded, 300)))
    assert evaluate_prediction(with_predictions, window,
                               PredictionSettings(enabled=False)) is None
    # The prediction reference survives the profile's JSON; a profile without it loads too.
    again = ReferenceProfile.from_dict(json.loads(json.dumps(with_predictions.to_dict())))
    assert again.predictions is not None
    np.testing.assert_array_equal(again.predictions.bins.counts,
                                  with_predictions.predictions.bins.counts)
    older = with_predictions.to_dict()
    del older["predictions"]
    assert ReferenceProfile.from_dict(older).predictions is None

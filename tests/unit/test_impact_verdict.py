"""Impact in the verdicts: drifted features say how much they move the predictions, and a
policy's minImpact stops a drift that moves nothing from counting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from driftkeeper.drift.evaluate import evaluate_data
from driftkeeper.drift.profile import ReferenceProfile
from driftkeeper.drift.report import DriftReport
from driftkeeper.drift.settings import DataSettings
from driftkeeper.drift.windows import data_window
from driftkeeper.model.store import ModelStore
from driftkeeper.policy import parse_policy
from driftkeeper.policy.engine import EngineState, Observation, step
from driftkeeper.serving.runtime import ServingModel


@pytest.fixture(scope="module")
def served(trained_model_dir: Path) -> ServingModel:
    return ServingModel.from_bundle(ModelStore(trained_model_dir).load(with_estimator=False))


def _rows(encoded: np.ndarray, n: int = 1000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return encoded[rng.integers(0, len(encoded), n)].copy()


def test_training_stores_a_held_out_sample(served: ServingModel) -> None:
    profile = served.bundle.profile
    assert profile.sample is not None and profile.sample.shape == (500, 6)
    assert np.isfinite(profile.sample).all()
    again = ReferenceProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
    np.testing.assert_array_equal(again.sample, profile.sample)


def test_drifted_features_carry_their_impact(served: ServingModel, encoded) -> None:
    profile = served.bundle.profile
    rows = _rows(encoded)
    rows[:, 0] *= 1.3  # carat: the price's main driver
    rows[:, 4] += 2.0  # depth: drifts clearly, the model hardly cares
    verdict = evaluate_data(profile, data_window(profile, rows), DataSettings(),
                            predict=served.predict)
    carat, depth = verdict.features["carat"], verdict.features["depth"]
    assert carat.drift and depth.drift
    assert carat.impact_shift is not None and carat.impact_shift > 0.2
    assert depth.impact is not None and depth.impact < 0.05 < carat.impact
    assert verdict.features["cut"].impact is None  # not drifted: not measured
    assert verdict.drifted_features == ["carat", "depth"] and verdict.low_impact == []
    # Without the model (a source that has none) the verdict is the same, without impacts.
    bare = evaluate_data(profile, data_window(profile, rows), DataSettings())
    assert bare.drifted_features == verdict.drifted_features
    assert bare.features["carat"].impact is None


def test_min_impact_discounts_drift_that_moves_no_price(served: ServingModel,
                                                        encoded) -> None:
    profile = served.bundle.profile
    rows = _rows(encoded, seed=1)
    rows[:, 4] += 2.0  # depth only
    window = data_window(profile, rows)
    counted = evaluate_data(profile, window, DataSettings(), predict=served.predict)
    assert counted.drift is True and counted.drifted_features == ["depth"]
    gated = evaluate_data(profile, window, DataSettings(min_impact=0.05), predict=served.predict)
    assert gated.drift is False and gated.drifted_features == []
    assert gated.low_impact == ["depth"] and gated.min_impact == 0.05
    assert gated.features["depth"].drift is True  # the statistic's own verdict stays
    assert gated.statistic is not None and gated.statistic <= 1.0  # rule any: not counted
    # The same gate lets a feature that moves prices through.
    rows[:, 0] *= 1.3
    both = evaluate_data(profile, data_window(profile, rows), DataSettings(min_impact=0.05),
                         predict=served.predict)
    assert both.drift is True and both.drifted_features == ["carat"]
    assert both.low_impact == ["depth"]
    back = DriftReport.from_dict(json.loads(json.dumps(DriftReport(both).to_dict())))
    assert back.data.low_impact == ["depth"]
    assert back.data.features["carat"].impact == both.features["carat"].impact


def test_condition_message_says_how_far_predictions_moved(served: ServingModel,
                                                          encoded) -> None:
    profile = served.bundle.profile
    rows = _rows(encoded, seed=2)
    rows[:, 0] *= 1.3
    report = DriftReport(evaluate_data(profile, data_window(profile, rows), DataSettings(),
                                       predict=served.predict), None, "v1", 10.0)
    obs = Observation.from_report(report)
    shift = report.data.features["carat"].impact_shift
    assert shift is not None and obs.prediction_shifts == {"carat": shift}
    decision = step(parse_policy({}), EngineState(), obs, 10.0, serving_version="v1")
    condition = next(c for c in decision.conditions if c.type == "DataDrift")
    assert condition.status == "True"
    assert f"moved predictions {100 * shift:+.0f} %" in condition.message


def test_policy_min_impact() -> None:
    assert parse_policy({}).monitor.data.min_impact == 0.0
    assert parse_policy({"data": {"minImpact": 0.02}}).monitor.data.min_impact == 0.02

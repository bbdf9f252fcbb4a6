"""Impact per feature: known answers with a linear model, the binned inverse CDF re-bins to
its own allocation, determinism, and a real model on the simulator's scenarios."""

from __future__ import annotations

import json

import numpy as np
import pytest

from driftkeeper.drift import stats
from driftkeeper.drift.impact import (
    SAMPLE_ROWS,
    Impact,
    describe,
    feature_impacts,
    reference_counts,
    reference_sample,
    window_values,
)
from driftkeeper.drift.profile import NumericalProfile, build_profile
from driftkeeper.drift.windows import DataWindow, data_window
from driftkeeper.schema import DIAMONDS_SCHEMA, Feature, FeatureSchema, Target

SCHEMA = FeatureSchema(
    features=(Feature("x0", "numerical"), Feature("x1", "numerical"),
              Feature("code", "categorical", levels=("a", "b", "c", "d"))),
    target=Target("y"),
)
SHARES = np.array([2000, 4000, 6000, 8000])  # exact shares 0.1 .. 0.4: mean code 2.0
N_REF = int(SHARES.sum())


def linear(X: np.ndarray) -> np.ndarray:
    """p = 100 + 10 x0 + 0 x1 + 5 code: x1 is ignored, bit for bit."""
    return 100.0 + 10.0 * X[:, 0] + 0.0 * X[:, 1] + 5.0 * X[:, 2]


def _rows(rng: np.random.Generator) -> np.ndarray:
    return np.column_stack([rng.normal(5.0, 1.0, N_REF), rng.normal(0.0, 1.0, N_REF),
                            rng.permutation(np.repeat(np.arange(4.0), SHARES))])


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(1)
    reference = _rows(rng)
    profile = build_profile(SCHEMA, reference, trials=200)
    return reference, profile, reference_sample(_rows(rng))


def _window(profile, rows: np.ndarray, **replace) -> DataWindow:
    window = data_window(profile, rows)
    return DataWindow({**window.features, **replace}, window.rows)


def _binning_error(profile: NumericalProfile, counts: stats.NumericCounts, m: int) -> float:
    """Bound on |mean of window_values - mean of the raw window|: inside bin k a raw value
    and the interpolated ones are at most its width apart (half on average, since the
    interpolation is uniform), plus the midpoint rule's error on a monotone inverse CDF,
    at most its range over m."""
    c = counts.counts
    q = c / c.sum()
    widths = np.diff(profile.bins.edges)
    lo = counts.under_sum / c[0] if c[0] else profile.bins.edges[0]
    hi = counts.over_sum / c[-1] if c[-1] else profile.bins.edges[-1]
    return float(np.sum(q[1:-1] * widths) / 2.0 + (hi - lo) / m)


# -- known answers with a linear model --------------------------------------------------


def test_numeric_shift_matches_the_analytic_value(toy) -> None:
    reference, profile, sample = toy
    shifted = reference.copy()
    shifted[:, 0] += 0.5  # the reference itself, half a standard deviation heavier
    prof = profile.features["x0"]
    counts = prof.bins.count(shifted[:, 0])
    assert counts.counts[-1] > 0  # some values beyond the reference range: overflow used
    impact = feature_impacts(linear, sample, profile, _window(profile, shifted), ["x0"])["x0"]

    m = len(sample)
    level = 100.0 + 10.0 * reference[:, 0].mean() + 5.0 * sample[:, 2].mean()
    expected = 10.0 * 0.5 / level
    bound = 10.0 * (_binning_error(prof, counts, m)
                    + _binning_error(prof, reference_counts(prof), m)) / level
    assert bound < 0.3 * expected  # the bound says something
    assert impact.shift == pytest.approx(expected, abs=bound)
    # Measured 2.8 % high, within the bound's 25 %: mostly the top reference bin (7.3-8.9),
    # where the shifted window's mass sits at the low end but interpolation spreads it evenly.
    assert impact.shift == pytest.approx(expected, rel=0.05)
    # Every row gets the same quantile of both distributions, and each quantile moved up.
    assert impact.change == pytest.approx(impact.shift, rel=1e-9)


def test_a_feature_the_model_ignores_has_impact_exactly_zero(toy) -> None:
    reference, profile, sample = toy
    drifted = reference.copy()
    drifted[:, 1] = drifted[:, 1] * 3.0 + 2.0
    impact = feature_impacts(linear, sample, profile, _window(profile, drifted), ["x1"])["x1"]
    assert impact == Impact(0.0, 0.0)


def test_categorical_window_on_one_level_gives_the_analytic_shift(toy) -> None:
    reference, profile, sample = toy
    window = _window(profile, reference, code=stats.CategoricalCounts(np.array([700., 0, 0, 0])))
    impact = feature_impacts(linear, sample, profile, window, ["code"])["code"]
    # Reference allocation is exactly 10/20/30/40 % of the sample: mean code 2.0 -> 0.
    level = 100.0 + 10.0 * sample[:, 0].mean() + 5.0 * 2.0
    assert impact.shift == pytest.approx(5.0 * (0.0 - 2.0) / level, rel=1e-12)
    assert impact.change == pytest.approx(-impact.shift, rel=1e-12)


def test_no_drift_has_no_impact(toy) -> None:
    _, profile, sample = toy
    # The reference's own counts (scaled: only proportions matter) give exactly 0.
    own = DataWindow({name: _scaled(reference_counts(prof), 3.0)
                      for name, prof in profile.features.items()}, 3 * N_REF)
    assert all(i == Impact(0.0, 0.0) for i in
               feature_impacts(linear, sample, profile, own).values())
    # A fresh draw: the window mean's noise is 1/sqrt(20000) = 0.007 sd, i.e. 0.04 % of
    # the ~160 mean prediction per standard deviation; 0.3 % allows binning and 6 sd.
    fresh = data_window(profile, _rows(np.random.default_rng(99)))
    for name, impact in feature_impacts(linear, sample, profile, fresh).items():
        assert abs(impact.shift) < 0.003, name


def _scaled(counts, k: float):
    if isinstance(counts, stats.NumericCounts):
        return stats.NumericCounts(counts.counts * k)
    return stats.CategoricalCounts(counts.counts * k)


# -- window values ----------------------------------------------------------------------


@pytest.mark.parametrize("m", [1, 7, 500, 1234])
def test_numeric_values_rebin_to_their_allocation(toy, m: int) -> None:
    _, profile, _ = toy
    prof = profile.features["x0"]
    rng = np.random.default_rng(m)
    raw = np.concatenate([rng.normal(5.8, 1.3, 3000), [-1.0, -2.0, -3.0], [20.0, 30.0]])
    counts = prof.bins.count(raw)
    values = window_values(prof, counts, m)
    assert len(values) == m and np.all(np.diff(values) >= 0)
    # The quantile (i + 0.5) / m falls in bin k when cum[k-1] < (i + 0.5) n / m <= cum[k].
    targets = (np.arange(m) + 0.5) / m * counts.n
    allocation = np.diff(np.searchsorted(targets, np.cumsum(counts.counts), side="right"),
                         prepend=0)
    np.testing.assert_array_equal(prof.bins.count(values).counts, allocation)
    assert np.all(np.abs(allocation - m * counts.counts / counts.n) < 1.0)


def test_out_of_range_values_are_the_mean_out_of_range_value(toy) -> None:
    _, profile, _ = toy
    prof = profile.features["x0"]
    lo, hi = prof.bins.edges[0], prof.bins.edges[-1]
    raw = np.concatenate([lo - np.array([1.0, 2.0, 3.0]), np.full(4, 5.0), hi + np.array([1., 3.])])
    values = window_values(prof, prof.bins.count(raw), 9)
    np.testing.assert_allclose(values[:3], lo - 2.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(values[-2:], hi + 2.0, rtol=0, atol=1e-12)
    # The four interior values stay in 5.0's reference bin, spread across it.
    np.testing.assert_array_equal(prof.bins.bin_index(values[3:7]),
                                  prof.bins.bin_index(np.full(4, 5.0)))


def test_categorical_allocation_is_proportional_and_sums_to_m(toy) -> None:
    _, profile, _ = toy
    prof = profile.features["code"]
    counts = stats.CategoricalCounts(np.array([1.0, 2.0, 3.0, 0.0]), unseen=50)
    # Quotas 1.67 / 3.33 / 5 / 0: the one spare value goes to the largest remainder (a).
    np.testing.assert_array_equal(window_values(prof, counts, 10),
                                  [0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    big = stats.CategoricalCounts(np.array([13.0, 0.0, 977.0, 10.0]))
    for m in (1, 3, 500, 999):
        allocation = np.bincount(window_values(prof, big, m).astype(int), minlength=4)
        assert allocation.sum() == m
        assert np.all(np.abs(allocation - m * big.counts / big.counts.sum()) < 1.0)


def test_an_empty_window_raises(toy) -> None:
    _, profile, _ = toy
    with pytest.raises(ValueError, match="x0"):
        window_values(profile.features["x0"], profile.features["x0"].bins.count([np.nan]), 5)
    with pytest.raises(ValueError, match="code"):  # only unseen categories: nothing to score
        window_values(profile.features["code"], stats.CategoricalCounts(np.zeros(4), 12), 5)


# -- the call itself --------------------------------------------------------------------


def test_one_predict_call_and_deterministic(toy) -> None:
    reference, profile, sample = toy
    drifted = reference.copy()
    drifted[:, 0] *= 1.1
    drifted[: N_REF // 2, 2] = 3.0
    window = _window(profile, drifted)
    calls: list[int] = []

    def counted(X: np.ndarray) -> np.ndarray:
        calls.append(len(X))
        return linear(X)

    first = feature_impacts(counted, sample, profile, window, seed=5)
    assert len(calls) == 1 and calls[0] <= 2 * 3 * len(sample)
    assert first == feature_impacts(linear, sample, profile, window, seed=5)
    # A feature's impact does not depend on which other features were asked for.
    assert feature_impacts(linear, sample, profile, window, ["x0"], seed=5)["x0"] == first["x0"]
    json.dumps({k: v.to_dict() for k, v in first.items()}, allow_nan=False)


def test_features_none_skips_empty_windows_and_a_requested_one_raises(toy) -> None:
    reference, profile, sample = toy
    rows = reference[:500].copy()
    rows[:, 1] = np.nan  # x1 has only invalid values
    window = data_window(profile, rows)
    assert list(feature_impacts(linear, sample, profile, window)) == ["x0", "code"]
    with pytest.raises(ValueError, match="x1"):
        feature_impacts(linear, sample, profile, window, ["x0", "x1"])
    with pytest.raises(ValueError, match="carat"):
        feature_impacts(linear, sample, profile, window, ["carat"])
    assert feature_impacts(linear, sample, profile, window, []) == {}


def test_reference_sample_is_seeded_and_nan_free() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 3))
    X[::10, 1] = np.nan
    sample = reference_sample(X)
    assert sample.shape == (SAMPLE_ROWS, 3) and np.isfinite(sample).all()
    np.testing.assert_array_equal(sample, reference_sample(X))
    assert not np.array_equal(sample, reference_sample(X, seed=1))
    np.testing.assert_array_equal(reference_sample(X[:40]), X[:40][np.isfinite(X[:40, 1])])


@pytest.mark.parametrize(("impact", "text"), [
    (Impact(0.17, 0.17), "carat moved predictions +17 %"),
    (Impact(0.002, 0.002), "carat moved predictions +0.2 %"),
    (Impact(-0.0996, 0.0996), "carat moved predictions -10 %"),
    (Impact(-0.00004, 0.00004), "carat moved predictions +0.0 %"),
    (Impact(0.0, 0.0), "carat moved predictions +0.0 %"),
    (Impact(2.545, 2.545), "carat moved predictions +254 %"),
    (Impact(0.002, 0.051), "carat moved predictions +0.2 % (±5.1 % per row)"),
])
def test_describe(impact: Impact, text: str) -> None:
    assert describe("carat", impact) == text


# -- a real model on the simulator's scenarios ------------------------------------------


@pytest.fixture(scope="module")
def diamond_model(diamonds):
    from sklearn.ensemble import HistGradientBoostingRegressor

    X = DIAMONDS_SCHEMA.encode(diamonds)
    y = diamonds["price"].to_numpy(np.float64)
    order = np.random.default_rng(0).permutation(len(X))
    train, ref = order[:20_000], order[20_000:30_000]
    model = HistGradientBoostingRegressor(max_iter=50, learning_rate=0.2, max_leaf_nodes=63,
                                          early_stopping=False, random_state=0)
    model.fit(X[train], y[train])
    profile = build_profile(DIAMONDS_SCHEMA, X[ref], trials=1000)
    return model, profile, reference_sample(X[ref])


def _scenario_impacts(diamonds, diamond_model, scenario: str, rows: int) -> dict[str, Impact]:
    from driftkeeper.simulate.scenarios import SCENARIOS
    from driftkeeper.simulate.world import World

    model, profile, sample = diamond_model
    batch = SCENARIOS[scenario].generate(np.random.default_rng(0), World.for_diamonds(diamonds),
                                         1.0, rows)
    window = data_window(profile, DIAMONDS_SCHEMA.encode(batch.rows))
    return feature_impacts(model.predict, sample, profile, window)


def test_heavier_diamonds_move_predictions_through_carat(diamonds, diamond_model) -> None:
    impacts = _scenario_impacts(diamonds, diamond_model, "covariate-sudden", 1000)
    # Measured: carat +255 %, depth -1.6 %, table -0.3 % (and clarity -24 %, color -14 %:
    # heavier diamonds come with worse grades, a real marginal shift of their own).
    assert impacts["carat"].shift > 0.2
    assert abs(impacts["depth"].shift) < 0.03
    assert abs(impacts["table"].shift) < 0.03


def test_no_drift_moves_no_prediction(diamonds, diamond_model) -> None:
    # 20,000 rows: carat's impact has a sampling sd of ~3.3 % at 1,000 rows (the window's
    # mean carat itself wanders ~2 %) and ~0.4 % here, so 3 % is a 7-sd bound.
    impacts = _scenario_impacts(diamonds, diamond_model, "none", 20_000)
    for name, impact in impacts.items():
        assert abs(impact.shift) < 0.03, (name, impact)


def test_the_exported_predictor_gives_the_same_impacts(diamonds, diamond_model) -> None:
    from driftkeeper.model.export import verified_export
    from driftkeeper.model.predictor import TreePredictor

    model, profile, sample = diamond_model
    arrays = verified_export(model, sample)
    assert arrays is not None
    fast = TreePredictor.from_arrays(arrays)
    rows = DIAMONDS_SCHEMA.encode(diamonds.iloc[:3000])
    window = data_window(profile, rows)
    slow = feature_impacts(model.predict, sample, profile, window)
    for name, impact in feature_impacts(fast.predict, sample, profile, window).items():
        assert impact.shift == pytest.approx(slow[name].shift, rel=1e-9, abs=1e-12)
        assert impact.change == pytest.approx(slow[name].change, rel=1e-9, abs=1e-12)

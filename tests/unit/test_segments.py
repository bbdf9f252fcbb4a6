"""Where concept drift lives: segment sums, known-answer statistics, localisation."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn.ensemble import HistGradientBoostingRegressor

from driftkeeper.drift.segment_verdict import SegmentVerdict, evaluate_segments
from driftkeeper.drift.segments import (
    SegmentFeature,
    SegmentProfile,
    SegmentSettings,
    SegmentSums,
    build_segment_profile,
    layout_from_schema,
    segment_sums,
)
from driftkeeper.drift.significance import bh_adjust, chi2_sf, chi2_z, normal_two_sided
from driftkeeper.schema import DIAMONDS_SCHEMA, Feature, FeatureSchema, Target
from driftkeeper.simulate.scenarios import SCENARIOS
from driftkeeper.simulate.world import DIAMONDS_CONCEPT_COLORS as CONCEPT_COLORS
from driftkeeper.simulate.world import World as SimulatedWorld

TINY = FeatureSchema(
    features=(Feature("g", "categorical", levels=("a", "b")), Feature("x", "numerical")),
    target=Target("y"),
)


# -- a stand-in model on the real diamonds ----------------------------------------------------


class World:
    """An 80/20 split, a small boosted model fit on the 80 % and its held-out residuals."""

    def __init__(self, diamonds: pd.DataFrame) -> None:
        order = np.random.default_rng(0).permutation(len(diamonds))
        cut = int(0.8 * len(diamonds))
        train = diamonds.iloc[order[:cut]].reset_index(drop=True)
        self.hold = diamonds.iloc[order[cut:]].reset_index(drop=True)
        # The serving model's parameters (driftkeeper.model.estimators.HGB_PARAMS): ~0.3 s.
        self.model = HistGradientBoostingRegressor(max_iter=50, learning_rate=0.2,
                                                   max_leaf_nodes=63, early_stopping=False,
                                                   random_state=0)
        self.model.fit(DIAMONDS_SCHEMA.encode(train), train["price"].to_numpy())
        self.X = DIAMONDS_SCHEMA.encode(self.hold)
        self.prices = self.hold["price"].to_numpy(np.float64)
        self.predictions = self.model.predict(self.X)
        self.residuals = self.prices - self.predictions
        self.profile = build_segment_profile(DIAMONDS_SCHEMA, self.X, self.residuals,
                                             self.predictions)

    def window(self, rows: pd.DataFrame, prices: np.ndarray) -> SegmentSums:
        X = DIAMONDS_SCHEMA.encode(rows)
        predictions = self.model.predict(X)
        return segment_sums(self.profile.layout, X, prices - predictions, predictions)

    def resampled(self, seed: int, reprice) -> SegmentSums:
        """A 1,000-row window of held-out rows, repriced: no model call needed."""
        idx = np.random.default_rng(seed).integers(0, len(self.hold), 1000)
        prices = reprice(self.hold.iloc[idx].reset_index(drop=True), self.prices[idx])
        return segment_sums(self.profile.layout, self.X[idx], prices - self.predictions[idx],
                            self.predictions[idx])


@pytest.fixture(scope="module")
def world(diamonds: pd.DataFrame) -> World:
    return World(diamonds)


def _tiny(ref_codes, ref_x, ref_r, ref_p, bands: int = 2) -> SegmentProfile:
    X = np.column_stack([ref_codes, ref_x]).astype(np.float64)
    return build_segment_profile(TINY, X, np.asarray(ref_r, float), np.asarray(ref_p, float),
                                 bands=bands)


def _sums(profile: SegmentProfile, codes, x, r, p) -> SegmentSums:
    X = np.column_stack([codes, x]).astype(np.float64)
    return segment_sums(profile.layout, X, np.asarray(r, float), np.asarray(p, float))


# -- known answers ----------------------------------------------------------------------------


def test_relative_shift_bias_and_rmse_ratio_by_hand() -> None:
    # Level "a": reference residuals 10, -10, 0 (mean 0, mean square 200/3); the window's are
    # 30, 10, 20 (mean 20) at predictions of 100: prices 20 % above the model.
    profile = _tiny([0, 0, 0, 1, 1, 1], [1, 2, 3, 4, 5, 6], [10, -10, 0, 5, -5, 0],
                    [100] * 6)
    window = _sums(profile, [0, 0, 0], [1, 2, 3], [30, 10, 20], [100, 100, 100])
    verdict = evaluate_segments(profile, window, SegmentSettings(min_rows=2))
    a = next(s for s in verdict.segments if s.feature == "g" and s.segment == "a")
    assert a.rows == 3
    assert a.bias == pytest.approx(20.0)
    assert a.shift == pytest.approx(0.20)
    assert a.rmse_ratio == pytest.approx(math.sqrt(7.0) - 1.0)
    assert [s.segment for s in verdict.segments if s.feature == "g"] == ["a"]  # "b": no rows


def test_pvalue_is_the_welch_z_test_of_the_summary_statistics() -> None:
    rng = np.random.default_rng(1)
    n0, n1 = 4000, 600
    ref = (rng.integers(0, 2, n0), rng.normal(size=n0), rng.standard_t(5, n0) * 300,
           rng.uniform(500, 5000, n0))
    cur_codes, cur_x = rng.integers(0, 2, n1), rng.normal(size=n1)
    cur_r = rng.standard_t(5, n1) * 350 + 40.0 * cur_codes
    cur_p = rng.uniform(500, 5000, n1)
    profile = _tiny(*ref)
    verdict = evaluate_segments(profile, _sums(profile, cur_codes, cur_x, cur_r, cur_p),
                                SegmentSettings())
    for level in (0, 1):
        r0, r1 = ref[2][ref[0] == level], cur_r[cur_codes == level]
        se = math.sqrt(r0.var(ddof=1) / len(r0) + r1.var(ddof=1) / len(r1))
        z = (r1.mean() - r0.mean()) / se
        got = next(s for s in verdict.segments if s.segment == "ab"[level])
        assert got.pvalue == pytest.approx(2.0 * sps.norm.sf(abs(z)), rel=1e-9)
        # At these sizes the large-sample test is close to Welch's t-test (df ~ 700).
        welch = sps.ttest_ind_from_stats(r1.mean(), r1.std(ddof=1), len(r1), r0.mean(),
                                         r0.std(ddof=1), len(r0), equal_var=False)
        assert got.pvalue == pytest.approx(welch.pvalue, rel=0.1)
        assert got.bias == pytest.approx(r1.mean() - r0.mean())
        assert got.shift == pytest.approx(len(r1) * got.bias
                                          / cur_p[cur_codes == level].sum())


def test_benjamini_hochberg_matches_scipy() -> None:
    rng = np.random.default_rng(2)
    p = np.concatenate([rng.uniform(size=40), rng.uniform(0, 1e-3, 8), [0.02, 0.02, 1.0]])
    assert bh_adjust(p) == pytest.approx(sps.false_discovery_control(p, method="bh"))
    assert bh_adjust([]) == []


def test_verdict_adjusts_across_all_tested_segments(world: World) -> None:
    window = world.resampled(3, lambda rows, prices: prices * np.where(
        rows["color"].isin(CONCEPT_COLORS), 1.10, 1.0))
    verdict = evaluate_segments(world.profile, window, SegmentSettings())
    raw = [s.pvalue for s in verdict.segments]
    assert verdict.tested == len(raw) > 25
    expected = sps.false_discovery_control(raw, method="bh")
    assert [s.adjusted for s in verdict.segments] == pytest.approx(expected)
    settings = SegmentSettings()
    assert [s.flagged for s in verdict.segments] == [
        a <= settings.false_discovery_rate and abs(s.shift) >= settings.min_shift
        for s, a in zip(verdict.segments, expected, strict=True)]


@pytest.mark.parametrize("df", [1, 2, 3, 4, 6, 7, 12])
@pytest.mark.parametrize("x", [0.0, 0.3, 2.0, 7.5, 30.0, 120.0])
def test_chi_square_tail_matches_scipy(df: int, x: float) -> None:
    assert chi2_sf(x, df) == pytest.approx(sps.chi2.sf(x, df), rel=1e-9, abs=1e-300)
    if 1e-3 < sps.chi2.sf(x, df) < 0.5 and df >= 3:  # the upper tail, where Q is ranked
        assert chi2_z(x, df) == pytest.approx(sps.norm.isf(sps.chi2.sf(x, df)), abs=0.06)


@pytest.mark.parametrize("z", [0.0, 0.5, 1.96, 4.0, -3.0, 9.0])
def test_normal_tail_matches_scipy(z: float) -> None:
    assert normal_two_sided(z) == pytest.approx(2.0 * sps.norm.sf(abs(z)), rel=1e-12)


# -- segments and labels ----------------------------------------------------------------------


def test_bands_labels_and_boundaries() -> None:
    carat = SegmentFeature("carat", "numerical", edges=(0.4, 0.7, 1.04))
    assert carat.labels() == ["carat ≤ 0.4", "carat 0.4\u20130.7", "carat 0.7\u20131.04",
                              "carat > 1.04"]
    # A value on an edge belongs to the band below it; NaN and infinities to none.
    values = np.array([0.2, 0.4, 0.41, 0.7, 1.04, 1.05, np.nan, np.inf])
    assert carat.assign(values).tolist() == [0, 0, 1, 1, 2, 3, -1, -1]
    assert carat.band_label(1, 3) == "carat > 0.4"
    assert carat.band_label(0, 3) == "carat (all)"
    # Three significant digits, more only where two edges would read the same, no exponent.
    depth = SegmentFeature("d", "numerical", edges=(61.81, 61.84))
    assert depth.labels()[1] == "d 61.81\u201361.84"
    assert SegmentFeature("d", "numerical", edges=(61.84, 61.86)).labels()[1] == (
        "d 61.8\u201361.9")
    assert SegmentFeature("p", "numerical", edges=(5324.25,)).labels() == ["p ≤ 5324",
                                                                           "p > 5324"]
    assert SegmentFeature("c", "numerical").labels() == ["c (all)"]


def test_categorical_segments_ignore_unknown_and_invalid_codes() -> None:
    color = SegmentFeature("color", "categorical", levels=("D", "E", "F"))
    codes = np.array([0, 1, 2, 3, -1, np.nan, 1.5, 2.0])
    assert color.assign(codes).tolist() == [0, 1, 2, -1, -1, -1, -1, 2]


def test_quantile_bands_merge_ties() -> None:
    X = np.column_stack([np.zeros(100), np.r_[np.ones(80), np.arange(20.0)]])
    layout = layout_from_schema(TINY, X, bands=4)
    assert layout[1].edges == (1.0,)  # the 25/50/75 % quantiles are all 1.0
    assert layout[0].levels == ("a", "b")


# -- mergeable sums ---------------------------------------------------------------------------


def test_sums_of_halves_equal_the_sums_of_the_whole(world: World) -> None:
    layout = world.profile.layout
    idx = np.random.default_rng(5).integers(0, len(world.X), 3000)
    dearer = np.where(world.hold["color"].iloc[idx].isin(CONCEPT_COLORS).to_numpy(), 1.25, 1.0)
    X, p = world.X[idx], world.predictions[idx]
    r = world.prices[idx] * dearer - p
    whole = segment_sums(layout, X, r, p)
    cut = 1000
    merged = (segment_sums(layout, X[:cut], r[:cut], p[:cut])
              + segment_sums(layout, X[cut:], r[cut:], p[cut:]))
    for name, sums in whole.features.items():
        assert merged.features[name].n.tolist() == sums.n.tolist()
        for key in ("positive", "negative", "squares", "predictions"):
            assert getattr(merged.features[name], key) == pytest.approx(getattr(sums, key))
    assert (SegmentSums.empty(layout) + whole).to_dict() == whole.to_dict()
    # Evaluating merged halves is evaluating the whole (the sums differ in the last bits).
    a = evaluate_segments(world.profile, merged, SegmentSettings())
    b = evaluate_segments(world.profile, whole, SegmentSettings())
    assert a.tested == b.tested > 0 and a.locations
    for x, y in zip(a.segments, b.segments, strict=True):
        assert (x.feature, x.segment, x.rows, x.flagged) == (y.feature, y.segment, y.rows,
                                                             y.flagged)
        assert (x.shift, x.bias, x.pvalue, x.adjusted) == pytest.approx(
            (y.shift, y.bias, y.pvalue, y.adjusted), rel=1e-9, abs=1e-300)
    assert [(loc.feature, loc.segments, loc.message) for loc in a.locations] == [
        (loc.feature, loc.segments, loc.message) for loc in b.locations]


def test_sums_are_non_negative_counters_and_round_trip(world: World) -> None:
    predictions = world.predictions[:500].copy()
    predictions[:5] = -50.0  # a regression model may predict below zero
    residuals = world.residuals[:500].copy()
    residuals[0], predictions[1] = np.nan, np.inf  # skipped rows
    sums = segment_sums(world.profile.layout, world.X[:500], residuals, predictions)
    doc = json.loads(json.dumps(sums.to_dict(), allow_nan=False))
    for feature in doc["features"].values():
        assert set(feature) == {"n", "positive", "negative", "squares", "predictions"}
        assert all(v >= 0 for values in feature.values() for v in values)
    carat = sums.features["carat"]
    assert int(carat.n.sum()) == 498
    assert float(carat.total.sum()) == pytest.approx(float(residuals[2:].sum()))
    again = SegmentSums.from_dict(doc)
    assert again.to_dict() == sums.to_dict()


def test_profile_and_verdict_round_trip_through_json(world: World) -> None:
    profile = SegmentProfile.from_dict(json.loads(json.dumps(world.profile.to_dict())))
    assert profile.layout == world.profile.layout
    assert profile.to_dict() == world.profile.to_dict()
    assert profile.labels()["color"] == list(DIAMONDS_SCHEMA.feature("color").levels)
    window = world.resampled(0, lambda rows, prices: prices * np.where(
        rows["color"].isin(CONCEPT_COLORS), 1.25, 1.0))
    verdict = evaluate_segments(profile, window, SegmentSettings())
    assert verdict.locations
    text = json.dumps(verdict.to_dict(), allow_nan=False)
    assert SegmentVerdict.from_dict(json.loads(text)) == verdict


def test_empty_window_tests_nothing(world: World) -> None:
    verdict = evaluate_segments(world.profile, SegmentSums.empty(world.profile.layout),
                                SegmentSettings())
    assert verdict.tested == 0 and verdict.segments == [] and verdict.locations == []
    json.dumps(verdict.to_dict(), allow_nan=False)


# -- behaviour on the diamonds ----------------------------------------------------------------


def test_no_drift_flags_nothing_in_the_large_majority_of_windows(world: World) -> None:
    # Reference and windows from disjoint held-out halves: the reference's own noise counts.
    half = len(world.X) // 2
    profile = build_segment_profile(DIAMONDS_SCHEMA, world.X[:half], world.residuals[:half],
                                    world.predictions[:half])
    rng = np.random.default_rng(7)
    quiet = located = 0
    for _ in range(100):
        idx = rng.integers(half, len(world.X), 1000)
        window = segment_sums(profile.layout, world.X[idx], world.residuals[idx],
                              world.predictions[idx])
        verdict = evaluate_segments(profile, window, SegmentSettings())
        quiet += not verdict.flagged
        located += bool(verdict.locations)
    assert quiet >= 95, quiet  # measured: 99 of 100
    assert located <= 2, located  # measured: 0 of 100


@pytest.mark.parametrize("seed", range(5))
def test_concept_shift_is_located_in_colours_d_e_f(world: World, seed: int) -> None:
    batch = SCENARIOS["concept"].generate(np.random.default_rng(seed),
                                          SimulatedWorld.for_diamonds(world.hold), 1.0, 1000)
    verdict = evaluate_segments(world.profile, world.window(batch.rows, batch.labels),
                                SegmentSettings())
    first = verdict.locations[0]
    assert first.feature == "color"
    assert first.segments == list(CONCEPT_COLORS)
    assert "color D, E, F" in first.message and "above" in first.message
    assert 0.20 <= first.shift <= 0.30
    # Every carat band shifted too (D/E/F diamonds come in all sizes), yet carat is no
    # location: its shifts are the colour shift's echo.
    assert any(s.flagged for s in verdict.segments if s.feature == "carat")
    assert all(loc.feature not in ("carat", "*") for loc in verdict.locations)


@pytest.mark.parametrize("seed", range(5))
def test_unchanged_world_names_no_location(world: World, seed: int) -> None:
    batch = SCENARIOS["none"].generate(np.random.default_rng(100 + seed),
                                       SimulatedWorld.for_diamonds(world.hold), 1.0, 1000)
    verdict = evaluate_segments(world.profile, world.window(batch.rows, batch.labels),
                                SegmentSettings())
    assert verdict.locations == []


def test_a_uniform_shift_is_everywhere(world: World) -> None:
    window = world.resampled(11, lambda rows, prices: prices * 1.10)
    verdict = evaluate_segments(world.profile, window, SegmentSettings(), "price")
    assert len(verdict.flagged) > 10
    (location,) = verdict.locations
    assert location.feature == "*" and location.segments == []
    assert location.shift == pytest.approx(0.10, abs=0.015)
    assert location.message == f"everywhere: price {location.shift * 100:.0f} % above the model"


def test_contiguous_bands_read_as_one_range(world: World) -> None:
    # $300 more for every diamond is 13 % of a small one's price and 4 % of a large one's.
    window = world.resampled(2, lambda rows, prices: prices + 300.0)
    first = evaluate_segments(world.profile, window, SegmentSettings(), "price").locations[0]
    assert first.feature == "carat"
    assert first.segments == world.profile.labels()["carat"][:3]
    assert first.message.startswith("carat ≤ 1.04: price ")
    assert first.message.endswith(" % above the model")


def test_two_separate_shifts_are_both_located(world: World) -> None:
    def reprice(rows: pd.DataFrame, prices: np.ndarray) -> np.ndarray:
        dearer = np.where(rows["color"].isin(CONCEPT_COLORS), 1.25, 1.0)
        return prices * dearer * np.where(rows["clarity"] == "IF", 0.7, 1.0)

    found = 0
    for seed in range(10):
        verdict = evaluate_segments(world.profile, world.resampled(seed, reprice),
                                    SegmentSettings())
        assert (verdict.locations[0].feature, verdict.locations[0].segments) == (
            "color", ["D", "E", "F"])
        found += any(loc.feature == "clarity" and loc.segments == ["IF"]
                     and "below" in loc.message for loc in verdict.locations[1:])
    # IF is ~3 % of rows (~30 per window, often untested or not significant): measured 152
    # of 200 windows name clarity IF, and all 200 name colour D, E, F first.
    assert found >= 6, found


def test_evaluation_imports_neither_scipy_nor_pandas() -> None:
    # Gunicorn workers import this module: numpy and the standard library only.
    code = """
import sys
import numpy as np
from driftkeeper.drift import segments as s
from driftkeeper.drift.segment_verdict import evaluate_segments
from driftkeeper.schema import DIAMONDS_SCHEMA
rng = np.random.default_rng(0)
X = np.column_stack([rng.uniform(0.2, 3, 4000), rng.integers(0, 5, 4000),
                     rng.integers(0, 7, 4000), rng.integers(0, 8, 4000),
                     rng.normal(61, 1, 4000), rng.normal(57, 2, 4000)])
r, p = rng.normal(0, 500, 4000), rng.uniform(300, 9000, 4000)
profile = s.build_segment_profile(DIAMONDS_SCHEMA, X, r, p)
window = s.segment_sums(profile.layout, X[:1000], r[:1000] + 900, p[:1000])
assert evaluate_segments(profile, window, s.SegmentSettings()).locations
print(sorted({m.split(".")[0] for m in sys.modules} & {"scipy", "pandas", "sklearn"}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# -- bad input --------------------------------------------------------------------------------


def test_mismatched_lengths_name_the_argument(world: World) -> None:
    layout = world.profile.layout
    X, r, p = world.X[:10], world.residuals[:10], world.predictions[:10]
    with pytest.raises(ValueError, match="residuals"):
        segment_sums(layout, X, r[:9], p)
    with pytest.raises(ValueError, match="predictions"):
        segment_sums(layout, X, r, np.append(p, 1.0))
    with pytest.raises(ValueError, match="X"):
        segment_sums(layout, X[:, :5], r, p)
    with pytest.raises(ValueError, match="residuals"):
        build_segment_profile(DIAMONDS_SCHEMA, X, r[:3], p)


def test_windows_of_another_layout_are_refused(world: World) -> None:
    other = _tiny([0, 1], [1.0, 2.0], [1.0, -1.0], [10.0, 10.0])
    window = _sums(other, [0, 1], [1.0, 2.0], [1.0, -1.0], [10.0, 10.0])
    with pytest.raises(ValueError, match="window"):
        evaluate_segments(world.profile, window, SegmentSettings())
    with pytest.raises(ValueError, match="cannot add"):
        _ = window + SegmentSums.empty(world.profile.layout)


@pytest.mark.parametrize(("field", "value"), [("bands", 0), ("min_rows", 1),
                                              ("false_discovery_rate", 0.0),
                                              ("false_discovery_rate", 1.5),
                                              ("min_shift", -0.1)])
def test_settings_fail_fast(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        SegmentSettings(**{field: value})

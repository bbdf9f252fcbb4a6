"""Auto thresholds: calibrated from the reference so small windows stay quiet while real
shifts are flagged, under the default dataset rule."""

from __future__ import annotations

import numpy as np
import pytest

from driftkeeper.drift.calibration import NullTable, effective_size
from driftkeeper.drift.evaluate import evaluate_data
from driftkeeper.drift.profile import build_profile
from driftkeeper.drift.settings import DataSettings
from driftkeeper.drift.windows import data_window
from driftkeeper.schema import DIAMONDS_SCHEMA

TRIALS = 200


@pytest.fixture(scope="module")
def profile(encoded):
    return build_profile(DIAMONDS_SCHEMA, encoded, seed=11)


def _rate(profile, encoded, n: int, change, seed: int) -> float:
    rng = np.random.default_rng(seed)
    settings = DataSettings()
    flagged = 0
    for _ in range(TRIALS):
        window = change(encoded[rng.integers(0, len(encoded), n)].copy(), rng)
        verdict = evaluate_data(profile, data_window(profile, window), settings)
        flagged += bool(verdict.drift)
    return flagged / TRIALS


def _unchanged(w, rng):
    return w


def _carat_up(w, rng):
    w[:, DIAMONDS_SCHEMA.index("carat")] *= 1.3
    return w


def _halve_ideal(w, rng):
    cut = DIAMONDS_SCHEMA.index("cut")
    ideal = np.flatnonzero(w[:, cut] == DIAMONDS_SCHEMA.feature("cut").levels.index("Ideal"))
    moved = ideal[::2]
    w[moved, cut] = rng.integers(0, 4, len(moved))
    return w


def _lab_noise(w, rng):
    """The lab's perturbations, drawn per row (one request = one draw)."""
    n = len(w)
    w[:, DIAMONDS_SCHEMA.index("carat")] *= rng.uniform(0.98, 1.02, n)
    w[:, DIAMONDS_SCHEMA.index("depth")] *= rng.uniform(0.99, 1.01, n)
    w[:, DIAMONDS_SCHEMA.index("table")] *= rng.uniform(0.99, 1.01, n)
    return w


def test_no_drift_200_row_window_is_quiet(profile, encoded) -> None:
    assert _rate(profile, encoded, 200, _unchanged, seed=1) <= 0.05


def test_carat_up_30_percent_is_flagged_in_200_rows(profile, encoded) -> None:
    assert _rate(profile, encoded, 200, _carat_up, seed=2) >= 0.95


def test_halved_ideal_share_is_flagged(profile, encoded) -> None:
    assert _rate(profile, encoded, 1000, _halve_ideal, seed=3) >= 0.95


def test_lab_noise_is_not_drift(profile, encoded) -> None:
    assert _rate(profile, encoded, 1000, _lab_noise, seed=4) <= 0.05


def test_lab_mean_rule_is_blind_to_one_drifted_feature(profile, encoded) -> None:
    """Why the default rule is "any": the lab's mean-over-0.15 misses carat x1.3."""
    rng = np.random.default_rng(5)
    window = _carat_up(encoded[rng.integers(0, len(encoded), 1000)].copy(), rng)
    w = data_window(profile, window)
    assert evaluate_data(profile, w, DataSettings(rule="mean")).drift is False
    assert evaluate_data(profile, w, DataSettings(rule="any")).drift is True


def test_threshold_shrinks_with_window_size(profile) -> None:
    table = profile.features["carat"].null["ks"]
    values = [table.threshold(n, 0.001) for n in (50, 200, 1000, 5000, 20000)]
    assert values == sorted(values, reverse=True)
    # KS null quantiles scale like 1/sqrt(n): x4 rows ~ half the threshold.
    assert values[2] / values[3] == pytest.approx(np.sqrt(5), rel=0.25)


def test_null_table_interpolates_levels_and_sizes() -> None:
    table = NullTable(np.array([100.0, 400.0]), np.array([0.9, 0.99]),
                      np.array([[0.2, 0.4], [0.1, 0.2]]))
    assert table.threshold(100, 0.1) == pytest.approx(0.2)
    assert table.threshold(400, 0.01) == pytest.approx(0.2)
    assert table.threshold(200, 0.1) == pytest.approx(np.sqrt(0.2 * 0.1))  # log-log midpoint
    assert table.threshold(10, 0.1) == pytest.approx(0.2)  # held below the grid
    assert table.threshold(1600, 0.1) == pytest.approx(0.05)  # slope extrapolated above
    # Beyond the top level: linear in -log(alpha), with the top levels' slope (0.2 per
    # decade of alpha here), never clamped (that would multiply a wide table's alarms).
    assert table.threshold(100, 1e-6) == pytest.approx(0.4 + 0.2 * 4)
    flat = NullTable(np.array([100.0]), np.array([0.9, 0.99]), np.array([[0.4, 0.3]]))
    assert flat.threshold(100, 1e-6) == pytest.approx(0.3)  # a falling tail is held
    roundtrip = NullTable.from_dict(table.to_dict())
    assert roundtrip.threshold(200, 0.05) == pytest.approx(table.threshold(200, 0.05))


def test_effective_size_accounts_for_a_small_reference() -> None:
    assert effective_size(1000, 1e9) == pytest.approx(1000, rel=1e-6)
    assert effective_size(1000, 1000) == pytest.approx(500)
    assert effective_size(0, 1000) == 0


def test_features_sharing_reference_shares_are_calibrated_as_if_alone() -> None:
    """Continuous columns of one table get equal-frequency bins over the same rows, so the
    same reference shares: they share one set of null draws. Each one's tables must be
    what calibrating it alone on those draws gives, for every registered statistic,
    including Wasserstein, which also depends on each column's own bin widths."""
    from driftkeeper.drift import calibration, stats
    from driftkeeper.drift.profile import numeric_bins

    rng = np.random.default_rng(3)
    columns = [rng.normal(size=4000), rng.exponential(size=4000) * 7, rng.uniform(size=4000)]
    refs = [numeric_bins(c) for c in columns]
    assert all(np.array_equal(r.counts, refs[0].counts) for r in refs)
    methods = {k: m for k, m in stats.METHODS.items() if m.numeric_batch is not None}
    together = calibration.calibrate_members(
        refs[0].counts, {k: (lambda c, m=m: stats.members_scores(m, refs, c))
                         for k, m in methods.items()}, len(refs), np.random.default_rng(0),
        trials=2000)
    for ref, tables in zip(refs, together, strict=True):
        alone = calibration.calibrate(
            ref.counts, {k: (lambda c, m=m, r=ref: m.numeric_batch(r, c))
                         for k, m in methods.items()},
            np.random.default_rng(0), trials=2000)
        assert tables.keys() == alone.keys()
        for name in alone:
            np.testing.assert_allclose(tables[name].values, alone[name].values, rtol=1e-9,
                                       atol=1e-12, err_msg=name)
    wasserstein = [t["wasserstein"].values for t in together]
    assert not np.allclose(wasserstein[0], wasserstein[1])  # each its own widths


def test_a_wide_table_draws_once_per_group_of_shares(monkeypatch) -> None:
    """Fifty continuous columns and one with ties: two sets of draws, not 51."""
    from driftkeeper.drift import calibration
    from driftkeeper.drift.profile import numerical_profiles

    calls = []
    real = calibration.calibrate_members
    monkeypatch.setattr(calibration, "calibrate_members",
                        lambda *a, **kw: calls.append(a[2]) or real(*a, **kw))
    rng = np.random.default_rng(1)
    columns = {f"x{i}": rng.normal(size=3000) * (i + 1) for i in range(50)}
    columns["rooms"] = rng.integers(1, 6, size=3000).astype(float)
    profiles = numerical_profiles(columns, np.random.default_rng(0), 100, trials=300)
    assert list(profiles) == list(columns)
    assert sorted(calls) == [1, 50]


@pytest.mark.parametrize("method", ["ks", "psi", "wasserstein"])
def test_extrapolated_tail_keeps_the_false_alarm_rate(method: str) -> None:
    """A rate ten times below the tabulated ones (5e-5, a 60-feature table's share of the
    default budget), checked against 400,000 null draws (20 exceedances expected): the
    extrapolated threshold is exceeded at most twice as often as promised (the tabulated
    levels themselves, estimated from 20,000 draws, overshoot by up to a third), where
    the old clamp to the top level gave ten times; and it is no more than 1.5x the true
    quantile (not so conservative that it costs real power)."""
    from driftkeeper.drift import calibration, stats
    from driftkeeper.drift.profile import numeric_bins

    rng = np.random.default_rng(5)
    ref = numeric_bins(rng.gamma(2.0, size=5000), 50)
    score = stats.METHODS[method].numeric_batch
    table = calibration.calibrate(ref.counts, {method: lambda c: score(ref, c)},
                                  np.random.default_rng(0), sizes=(500, 1000))[method]
    p = ref.counts / ref.counts.sum()
    null = np.concatenate([score(ref, rng.multinomial(1000, p, size=100_000))
                           for _ in range(4)])
    alpha, expected = 5e-5, 20
    threshold = table.threshold(1000, alpha)
    assert int((null > threshold).sum()) <= 2 * expected, threshold
    clamped = table.threshold(1000, 1 - calibration.LEVELS[-1])
    assert int((null > clamped).sum()) >= 5 * expected  # what the clamp promised instead
    assert threshold <= 1.5 * np.quantile(null, 1 - alpha), threshold

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
    assert table.threshold(100, 1e-6) == pytest.approx(0.4)  # clamped to the top level
    roundtrip = NullTable.from_dict(table.to_dict())
    assert roundtrip.threshold(200, 0.05) == pytest.approx(table.threshold(200, 0.05))


def test_effective_size_accounts_for_a_small_reference() -> None:
    assert effective_size(1000, 1e9) == pytest.approx(1000, rel=1e-6)
    assert effective_size(1000, 1000) == pytest.approx(500)
    assert effective_size(0, 1000) == 0

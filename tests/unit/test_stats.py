"""Known-answer tests of the statistics: exact forms equal scipy, binned forms stay within
their stated bounds, identical samples score 0, and nothing is ever inf or NaN."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from driftkeeper.drift import stats
from driftkeeper.drift.profile import numeric_bins
from driftkeeper.drift.significance import kolmogorov_sf, ks_two_sample_sf

SEEDS = [0, 1, 2, 3, 4]


def _samples(seed: int, shift: float = 0.0, n_ref: int = 5000, n_cur: int = 700):
    rng = np.random.default_rng(seed)
    return rng.gamma(2.0, 1.0, n_ref), rng.gamma(2.0, 1.0, n_cur) + shift


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_ks_exact_equals_scipy(seed: int, shift: float) -> None:
    ref, cur = _samples(seed, shift)
    expected = sps.ks_2samp(ref, cur, method="asymp")
    got = stats.ks_exact(ref, cur)
    assert got.score == pytest.approx(expected.statistic, abs=1e-12)
    assert got.pvalue == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


def test_ks_exact_with_ties_equals_scipy(diamonds) -> None:
    carat = diamonds["carat"].to_numpy()
    rng = np.random.default_rng(7)
    cur = rng.choice(carat, 500) * 1.1
    assert stats.ks_exact(carat, cur).score == pytest.approx(
        sps.ks_2samp(carat, cur).statistic, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_wasserstein_exact_equals_scipy_normalised(seed: int) -> None:
    ref, cur = _samples(seed, 0.5)
    expected = sps.wasserstein_distance(ref, cur) / np.std(ref)
    assert stats.wasserstein_exact(ref, cur).score == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_jensenshannon_equals_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.integers(1, 1000, 7).astype(float)
    cur = rng.integers(0, 100, 7).astype(float)
    expected = jensenshannon(ref / ref.sum(), cur / cur.sum(), base=2)
    assert float(stats.jensenshannon_scores(ref, cur)) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_chisquare_equals_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.integers(100, 1000, 5).astype(float)
    cur = rng.integers(10, 100, 5).astype(float)
    window = stats.CategoricalCounts(cur)
    result = stats.METHODS["chisquare"].categorical_window(ref, window)
    expected = sps.chisquare(cur, ref / ref.sum() * cur.sum())
    assert result.score * cur.sum() == pytest.approx(expected.statistic, rel=1e-10)
    assert result.pvalue == pytest.approx(expected.pvalue, rel=1e-8)


def _psi_reference(ref: np.ndarray, cur: np.ndarray, edges: np.ndarray) -> float:
    """PSI written out with numpy.histogram, independent of the engine's binning code."""
    inner = edges[1:-1]
    full = np.concatenate([[-np.inf], inner, [np.inf]])
    r, _ = np.histogram(ref, full)
    c, _ = np.histogram(cur, full)
    k = len(r)
    p = (r + 0.5) / (r.sum() + 0.5 * k)
    q = (c + 0.5) / (c.sum() + 0.5 * k)
    return float(np.sum((q - p) * np.log(q / p)))


@pytest.mark.parametrize("seed", SEEDS)
def test_psi_equals_numpy_histogram(seed: int) -> None:
    ref, cur = _samples(seed, 0.4)
    bins = numeric_bins(ref)
    # The decile groups' boundaries, as values: the upper edge of each group's last bin.
    starts = bins.psi_groups
    group_edges = np.concatenate([[bins.edges[0]], bins.edges[starts[1:] - 1], [bins.edges[-1]]])
    got = float(stats.psi_numeric_binned_scores(bins, bins.count(cur).counts))
    # numpy.histogram bins are [a, b); ours are (a, b]: continuous data has no ties at edges.
    assert got == pytest.approx(_psi_reference(ref, cur, group_edges), rel=1e-10)


@pytest.mark.parametrize("name", ["ks", "wasserstein", "psi"])
def test_identical_numeric_samples_score_zero(name: str) -> None:
    ref, _ = _samples(0)
    bins = numeric_bins(ref)
    method = stats.METHODS[name]
    assert method.numeric_window(bins, bins.count(ref)).score == pytest.approx(0.0, abs=1e-12)
    if method.numeric_exact is not None:
        assert method.numeric_exact(ref, ref.copy()).score == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", ["jensenshannon", "psi", "chisquare"])
def test_identical_categorical_samples_score_zero(name: str) -> None:
    counts = np.array([10.0, 200.0, 35.0, 0.0, 7.0])
    result = stats.METHODS[name].categorical_window(counts, stats.CategoricalCounts(counts))
    assert result.score == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", ["jensenshannon", "psi", "chisquare"])
def test_missing_and_unseen_categories_stay_finite(name: str) -> None:
    """The lab's KL sum returned inf when a category was absent from the current sample."""
    ref = np.array([500.0, 300.0, 200.0])
    absent = stats.CategoricalCounts(np.array([0.0, 60.0, 40.0]))
    only_unseen = stats.CategoricalCounts(np.array([0.0, 0.0, 0.0]), unseen=25)
    for window in (absent, only_unseen):
        result = stats.METHODS[name].categorical_window(ref, window)
        assert np.isfinite(result.score)
        assert result.score > 0
        if result.pvalue is not None:
            assert 0.0 <= result.pvalue <= 1.0


def test_jensenshannon_is_bounded_by_one() -> None:
    ref = np.array([100.0, 0.0])
    disjoint = stats.CategoricalCounts(np.array([0.0, 100.0]))
    assert stats.METHODS["jensenshannon"].categorical_window(ref, disjoint).score == (
        pytest.approx(1.0))


def test_out_of_range_values_count_as_drift() -> None:
    ref = np.linspace(0, 1, 1001)
    bins = numeric_bins(ref)
    window = bins.count(np.full(300, 5.0))
    assert window.counts[-1] == 300
    assert stats.ks_binned(bins, window).score == pytest.approx(1.0)
    # Wasserstein's tail uses the exact overflow sum: 4 units beyond the maximum.
    assert stats.wasserstein_binned(bins, window).score == pytest.approx(
        stats.wasserstein_exact(ref, np.full(300, 5.0)).score, rel=0.02)


def test_invalid_values_are_counted_not_scored() -> None:
    bins = numeric_bins(np.linspace(0, 1, 101))
    window = bins.count(np.array([0.5, np.nan, np.inf, -np.inf, 0.2]))
    assert window.invalid == 3
    assert window.n == 2


@pytest.mark.parametrize("seed", range(40))
def test_binned_ks_within_stated_bound_of_exact(diamonds, seed: int) -> None:
    """D_binned <= D_exact <= D_binned + max_k min(p_k, q_k), on real tied data too."""
    rng = np.random.default_rng(seed)
    column = ["carat", "depth", "table"][seed % 3]
    ref = diamonds[column].to_numpy()
    factor = [1.0, 1.02, 1.1, 1.3][seed % 4]
    cur = rng.choice(ref, int(rng.integers(50, 3000))) * factor
    bins = numeric_bins(ref)
    counts = bins.count(cur).counts
    binned = float(stats.ks_binned_scores(bins, counts))
    exact = stats.ks_exact(ref, cur).score
    bound = stats.ks_error_bound(bins, counts)
    assert binned <= exact + 1e-12
    assert exact <= binned + bound + 1e-12


def test_windows_merge_like_one_window() -> None:
    """Counts from several workers add up to the counts of all their rows together."""
    rng = np.random.default_rng(3)
    ref = rng.normal(size=4000)
    bins = numeric_bins(ref)
    parts = [rng.normal(0.2, 1, n) for n in (120, 333, 47)]
    merged = bins.count(parts[0]) + bins.count(parts[1]) + bins.count(parts[2])
    whole = bins.count(np.concatenate(parts))
    np.testing.assert_array_equal(merged.counts, whole.counts)
    assert merged.over_sum == pytest.approx(whole.over_sum)
    assert stats.ks_binned(bins, merged).score == stats.ks_binned(bins, whole).score


def test_registry_names_and_kinds() -> None:
    assert set(stats.methods_for_kind("numerical")) == {"ks", "wasserstein", "psi"}
    assert set(stats.methods_for_kind("categorical")) == {"jensenshannon", "psi", "chisquare"}
    with pytest.raises(KeyError, match="does not apply"):
        stats.method_for("ks", "categorical")
    with pytest.raises(KeyError, match="unknown drift method"):
        stats.method_for("kl", "numerical")


@pytest.mark.parametrize("x", [0.05, 0.2, 0.3, 0.5, 0.8, 1.0, 1.36, 1.63, 2.0, 3.0, 5.0])
def test_kolmogorov_tail_equals_scipy(x: float) -> None:
    assert kolmogorov_sf(x) == pytest.approx(sps.kstwobign.sf(x), rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("en", [200, 500, 1000, 5000])
def test_binned_ks_pvalue_is_close_to_scipy_and_never_smaller(en: int) -> None:
    """The pod's KS p-value (no scipy) against scipy's finite-size distribution."""
    for d in np.linspace(0.005, 0.2, 40):
        ours = ks_two_sample_sf(float(d), 2 * en, 2 * en)  # effective size en
        exact = float(sps.kstwo.sf(d, en))
        assert exact - 1e-12 <= ours <= exact + 0.02

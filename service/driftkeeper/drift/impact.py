"""Impact per feature: how much one feature's drift moves the model's predictions.

A drift score says a feature's distribution moved; it does not say whether the model cares.
A significant drift of depth may move no price at all, while a drift of carat that
scores the same moves them all. So, per feature, a fixed reference sample of held-out rows is scored
twice: with the feature's column set to values of the *reference* distribution, and with the
same rows set to values of the *current window's* distribution. The relative difference is
the impact ("carat moved predictions +17 %").

Everything works from binned windows (:mod:`.windows`): the operator only has summed
counters, never raw rows. Pure numpy, deterministic (same inputs, same output) and one
vectorised ``predict`` call for all features.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from . import stats
from .profile import CategoricalProfile, FeatureProfile, NumericalProfile, ReferenceProfile
from .windows import DataWindow, FeatureCounts

SAMPLE_ROWS = 500
"""Rows of the reference sample: the sample's own noise on an impact shrinks as
1/sqrt(rows), and 500 rows x 2 copies x 6 features is still one fast predict call."""


@dataclass(frozen=True)
class Impact:
    """A feature's effect on the predictions, relative to the reference predictions.

    ``shift`` is signed (the mean prediction rose or fell); ``change`` is the mean absolute
    per-row change, so a drift that moves some predictions up and others down still shows.
    """

    shift: float  # (mean(p_swapped) - mean(p_ref)) / |mean(p_ref)|
    change: float  # mean(|p_swapped - p_ref|) / mean(|p_ref|), what a policy's minImpact reads

    def to_dict(self) -> dict[str, float]:
        return {"shift": self.shift, "change": self.change}


def reference_sample(X_hold: np.ndarray, rows: int = SAMPLE_ROWS, seed: int = 0) -> np.ndarray:
    """A seeded subsample of held-out encoded rows (all of them if fewer), NaN-free only.

    Stored in the profile at training time, so every evaluation scores the same rows and
    impacts of successive windows compare."""
    if rows < 1:
        raise ValueError(f"a reference sample needs at least one row, not {rows}")
    X = np.asarray(X_hold, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"expected an encoded matrix (rows x features), got shape {X.shape}")
    X = X[np.isfinite(X).all(axis=1)]
    if len(X) == 0:
        raise ValueError("no complete (NaN-free) rows to sample")
    if len(X) <= rows:
        return X.copy()
    keep = np.random.default_rng(seed).choice(len(X), size=rows, replace=False)
    return X[np.sort(keep)]


def _quantile_grid(m: int) -> np.ndarray:
    return (np.arange(m) + 0.5) / m


def _numeric_values(bins: stats.NumericBins, counts: stats.NumericCounts,
                    m: int) -> np.ndarray:
    """The window's inverse CDF at the midpoint grid: linear inside reference bins (the
    window's values are only known up to their bin), the mean out-of-range value outside."""
    c = np.asarray(counts.counts, dtype=np.float64)
    edges = bins.edges
    if len(c) != len(edges) + 1:
        raise ValueError(f"window has {len(c)} bins, the reference {len(edges) + 1}")
    # Shares, not counts: a window and its multiples give the very same values.
    share = c / c.sum()
    cum = np.cumsum(c) / c.sum()
    target = _quantile_grid(m)
    b = np.searchsorted(cum, target, side="left")  # bin holding each target: cum[b-1] < t
    b = np.minimum(b, len(c) - 1)  # float rounding at the very top
    below = np.where(b > 0, cum[np.maximum(b - 1, 0)], 0.0)
    frac = (target - below) / np.where(share[b] > 0, share[b], 1.0)
    inner = np.clip(b, 1, len(edges) - 1)
    lo, hi = edges[inner - 1], edges[inner]
    values = lo + np.clip(frac, 0.0, 1.0) * (hi - lo)
    # Keep values strictly inside (lo, hi] so they re-bin where they came from (bin 1 holds e_0).
    values = np.where((values <= lo) & (inner > 1), np.nextafter(lo, np.inf), values)
    under = counts.under_sum / c[0] if c[0] > 0 else edges[0]
    over = counts.over_sum / c[-1] if c[-1] > 0 else edges[-1]
    values = np.where(b == 0, under, values)
    return np.where(b == len(c) - 1, over, values)


def _categorical_values(counts: stats.CategoricalCounts, n_levels: int, m: int) -> np.ndarray:
    """Level codes in proportion to the window's counts (largest remainder, ties to the
    lower code), sorted; unseen categories have no code a model could score and are left out."""
    c = np.asarray(counts.counts, dtype=np.float64)
    if len(c) != n_levels:
        raise ValueError(f"window has {len(c)} levels, the reference {n_levels}")
    quota = m * c / c.sum()
    alloc = np.floor(quota).astype(np.int64)
    short = m - int(alloc.sum())
    alloc[np.argsort(-(quota - alloc), kind="stable")[:short]] += 1
    return np.repeat(np.arange(n_levels, dtype=np.float64), alloc)


def _usable(counts: FeatureCounts) -> float:
    """Window rows that yield replacement values (unseen and invalid ones do not)."""
    return float(np.sum(counts.counts))


def window_values(feature_profile: FeatureProfile, counts: FeatureCounts, m: int) -> np.ndarray:
    """``m`` replacement values, in ascending order, drawn from a window's binned counts.

    Numerical: the window's inverse CDF at the quantiles (i + 0.5) / m, interpolated
    linearly inside reference bins; the under/overflow bins give their mean value
    (``under_sum / count``). Categorical: level codes allocated in proportion to the counts.
    Re-binning the values gives the allocation back, so nothing but the within-bin position
    is invented. Raises ValueError for an empty window (no usable rows).
    """
    if m < 1:
        raise ValueError(f"need at least one value, not {m}")
    if _usable(counts) <= 0:
        raise ValueError(f"{feature_profile.name}: the window is empty (no usable rows)")
    if isinstance(feature_profile, NumericalProfile):
        if not isinstance(counts, stats.NumericCounts):
            raise TypeError(f"{feature_profile.name}: numerical feature needs NumericCounts")
        return _numeric_values(feature_profile.bins, counts, m)
    if not isinstance(counts, stats.CategoricalCounts):
        raise TypeError(f"{feature_profile.name}: categorical feature needs CategoricalCounts")
    return _categorical_values(counts, len(feature_profile.levels), m)


def reference_counts(feature_profile: FeatureProfile) -> FeatureCounts:
    """The reference itself as a window: what "no drift" looks like in binned form."""
    if isinstance(feature_profile, CategoricalProfile):
        return stats.CategoricalCounts(np.asarray(feature_profile.counts, dtype=np.float64))
    return stats.NumericCounts(np.asarray(feature_profile.bins.counts, dtype=np.float64))


def _selected(profile: ReferenceProfile, window: DataWindow,
              features: Iterable[str] | None) -> list[str]:
    if features is None:
        return [name for name in profile.schema.names
                if name in window.features and _usable(window.features[name]) > 0]
    names = list(dict.fromkeys(features))
    for name in names:
        if name not in profile.features or name not in window.features:
            raise ValueError(f"{name}: not a feature of this profile and window")
        if _usable(window.features[name]) <= 0:
            raise ValueError(f"{name}: the window is empty (no usable rows)")
    return names


def feature_impacts(predict: Callable[[np.ndarray], np.ndarray], sample: np.ndarray,
                    profile: ReferenceProfile, window: DataWindow,
                    features: Iterable[str] | None = None, seed: int = 0) -> dict[str, Impact]:
    """The impact of each feature's current distribution on the predictions.

    For feature j, the sample's column j is replaced twice, row for row in one seeded
    permutation: by the reference's binned distribution (``p_ref``) and by the window's
    (``p_swapped``). This is a *marginal-swap* estimate: the replacement values are
    independent of the row's other columns, so it answers "what if only this feature's
    distribution had moved", not "what did the joint shift do"; interactions with the other
    features are averaged over the reference sample. Comparing against the reference's own
    swap (not the unmodified rows) cancels what the swap itself does (breaking carat's
    correlation with clarity, flattening ties inside a bin), so a window that matches the
    reference has impact 0 exactly. Row i gets the same quantile of both distributions,
    which makes ``change`` the per-row effect of moving that quantile.

    ``features`` None means every feature with a non-empty window; a requested feature
    with an empty window raises ValueError naming it. All copies go to one ``predict``
    call: at most ``2 * len(features) * len(sample)`` rows (rows whose value did not move
    are not scored twice).
    """
    X = np.asarray(sample, dtype=np.float64)
    n_cols = len(profile.schema.features)
    if X.ndim != 2 or X.shape[1] != n_cols or len(X) == 0:
        raise ValueError(f"the sample must be a non-empty (rows x {n_cols}) encoded matrix, "
                         f"got shape {X.shape}")
    names = _selected(profile, window, features)
    if not names:
        return {}
    m = len(X)
    blocks, changed = [], []
    for name in names:
        j = profile.schema.index(name)
        prof = profile.features[name]
        # Seeded by (seed, column), so a feature's impact is the same whatever else is asked.
        order = np.random.default_rng([seed, j]).permutation(m)
        old = window_values(prof, reference_counts(prof), m)[order]
        new = window_values(prof, window.features[name], m)[order]
        # Rows whose value did not move keep p_ref instead of being scored again (most rows
        # of a categorical whose shares barely moved).
        moved = new != old
        base, swapped = X.copy(), X[moved]
        base[:, j] = old
        swapped[:, j] = new[moved]
        blocks += [base, swapped]
        changed.append(moved)
    rows = np.concatenate(blocks)
    predictions = np.asarray(predict(rows), dtype=np.float64).reshape(-1)
    if predictions.shape != (len(rows),) or not np.all(np.isfinite(predictions)):
        raise ValueError("predict must return one finite prediction per row")
    out: dict[str, Impact] = {}
    start = 0
    for name, moved in zip(names, changed, strict=True):
        p_ref = predictions[start:start + m]
        p_new = p_ref.copy()
        p_new[moved] = predictions[start + m:start + m + int(moved.sum())]
        start += m + int(moved.sum())
        level, scale = abs(float(p_ref.mean())), float(np.abs(p_ref).mean())
        if level == 0.0 or scale == 0.0:
            raise ValueError(f"{name}: reference predictions average 0, a relative impact "
                             "is undefined")
        out[name] = Impact(shift=float(p_new.mean() - p_ref.mean()) / level,
                           change=float(np.abs(p_new - p_ref).mean()) / scale)
    return out


def _percent(x: float, sign: str = "+") -> str:
    """Percent with one decimal below 10 % and none above; never "-0.0"."""
    pct = round(100.0 * x, 1)
    if abs(pct) >= 10.0:
        pct = float(round(100.0 * x))
    pct = pct + 0.0  # -0.0 -> 0.0
    return f"{pct:{sign}.{1 if abs(pct) < 10.0 else 0}f} %"


def describe(name: str, impact: Impact) -> str:
    """One line for a report or an event, e.g. "carat moved predictions +17 %".

    When rows moved much more than the mean did (some up, some down), the mean absolute
    change is added, since that is what a policy's minImpact compares."""
    text = f"{name} moved predictions {_percent(impact.shift)}"
    if impact.change >= 0.01 and impact.change >= 2.0 * abs(impact.shift):
        text += f" (±{_percent(impact.change, '')} per row)"
    return text

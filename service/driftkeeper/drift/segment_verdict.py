"""Where concept drift lives: the verdict over a window's segment sums (see
``segments.py`` for the segments, the sums and the reasoning)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .segments import (
    FeatureSums,
    SegmentFeature,
    SegmentProfile,
    SegmentSettings,
    SegmentSums,
    check_sums,
    offsets,
)
from .significance import bh_adjust, chi2_sf, chi2_z, normal_two_sided


@dataclass(frozen=True)
class SegmentResult:
    """One tested segment.

    ``shift`` is the mean residual's change (window minus reference, in this segment) over
    the window's mean |prediction| in it: +0.24 reads "price 24 % above the model";
    ``bias`` is the same change in target units. ``rmse_ratio`` is window RMSE over
    reference RMSE minus 1 (None when the reference RMSE is 0).
    """

    feature: str
    segment: str
    rows: int
    shift: float
    bias: float
    rmse_ratio: float | None
    pvalue: float  # two-sided large-sample Welch z test of the mean residual shift
    adjusted: float  # Benjamini-Hochberg across all tested segments
    flagged: bool  # adjusted <= false_discovery_rate and |shift| >= min_shift


@dataclass(frozen=True)
class Location:
    """Where drift lives: flagged segments of one feature that shift the same way.

    ``shift`` pools them (excess residual dollars over predicted dollars); ``heterogeneity``
    is the feature's Cochran's Q (net of the echoes of the locations before it) and
    ``pvalue`` its chi-square p-value, both None for ``*`` (drift everywhere)."""

    feature: str
    segments: list[str]
    shift: float
    message: str
    heterogeneity: float | None = None
    pvalue: float | None = None


@dataclass(frozen=True)
class SegmentVerdict:
    segments: list[SegmentResult]  # the tested segments, in layout order
    locations: list[Location]  # strongest first
    tested: int

    @property
    def flagged(self) -> list[SegmentResult]:
        return [s for s in self.segments if s.flagged]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SegmentVerdict:
        return cls([SegmentResult(**s) for s in d["segments"]],
                   [Location(**loc) for loc in d["locations"]], int(d["tested"]))


@dataclass(frozen=True)
class _Test:
    """A tested segment with what pooling needs: its excess residual dollars, their
    variance and its predicted dollars in the window."""

    feature: SegmentFeature
    index: int  # within the feature
    slot: int  # global id (layout order), the row and column of the profile's overlap
    rows: int
    bias: float
    variance: float  # of ``bias``
    scale: float  # window sum of |prediction|
    rmse_ratio: float | None
    pvalue: float

    @property
    def shift(self) -> float:
        return self.rows * self.bias / self.scale

    @property
    def shift_variance(self) -> float:
        return self.variance * (self.rows / self.scale) ** 2


def _moments(n: int, total: float, squares: float) -> tuple[float, float]:
    mean = total / n
    return mean, max(squares - n * mean * mean, 0.0) / (n - 1)


def _test(feat: SegmentFeature, i: int, slot: int, ref: FeatureSums, cur: FeatureSums,
          min_rows: int) -> _Test | None:
    n0, n1 = int(ref.n[i]), int(cur.n[i])
    scale = float(cur.predictions[i])
    if min(n0, n1) < min_rows or scale <= 0.0:
        return None
    mean0, var0 = _moments(n0, float(ref.total[i]), float(ref.squares[i]))
    mean1, var1 = _moments(n1, float(cur.total[i]), float(cur.squares[i]))
    bias = mean1 - mean0
    variance = var1 / n1 + var0 / n0
    if variance > 0.0:
        pvalue = normal_two_sided(bias / math.sqrt(variance))
    else:
        pvalue = 1.0 if bias == 0.0 else 0.0
    ref_ms = float(ref.squares[i]) / n0
    ratio = math.sqrt(float(cur.squares[i]) / n1 / ref_ms) - 1.0 if ref_ms > 0 else None
    return _Test(feat, i, slot, n1, bias, variance, scale, ratio, pvalue)


def evaluate_segments(profile: SegmentProfile, window: SegmentSums,
                      settings: SegmentSettings, target: str = "target") -> SegmentVerdict:
    """Test every segment's residual shift, correct for multiplicity, and localise.

    A segment is tested when it has ``min_rows`` rows in both the window and the reference;
    it is flagged when its BH-adjusted p-value is at most ``false_discovery_rate`` and its
    |shift| at least ``min_shift``. Features are then examined greedily, strongest first:
    among features with a flagged segment, the next is the one whose Cochran's Q over its
    tested segments' relative shifts, net of the echoes of the features already chosen (see
    :func:`_net_shifts`), has the largest Wilson-Hilferty z, provided its p-value is at most
    ``false_discovery_rate`` / (features with two or more tested segments). Its *hits* are
    its flagged segments whose net shift keeps the sign, reaches ``min_shift`` and is
    significant at ``false_discovery_rate`` on its own. It becomes a location (one per sign
    of its hits; its net shifts are recorded as its effect) only when some tested segment
    is not a hit: drift on every segment of a feature is drift everywhere. Flagged segments
    with no location give one ``*`` location when their feature's pooled shift reaches
    ``min_shift``. Sentences name the ``target`` ("color D, E, F: price 24 % above the
    model").
    """
    check_sums(profile.layout, window, "window")
    start = offsets(profile.layout)
    tests = [t for k, feat in enumerate(profile.layout) for i in range(feat.size)
             if (t := _test(feat, i, start[k] + i, profile.reference.features[feat.name],
                            window.features[feat.name], settings.min_rows)) is not None]
    adjusted = bh_adjust([t.pvalue for t in tests])
    flagged = [a <= settings.false_discovery_rate and abs(t.shift) >= settings.min_shift
               for t, a in zip(tests, adjusted, strict=True)]
    results = [SegmentResult(t.feature.name, t.feature.labels()[t.index], t.rows, t.shift,
                             t.bias, t.rmse_ratio, t.pvalue, a, f)
               for t, a, f in zip(tests, adjusted, flagged, strict=True)]
    locations = _locate(profile, tests, flagged, settings, target)
    return SegmentVerdict(results, locations, len(tests))


def _pooled(group: Sequence[_Test]) -> tuple[float, float]:
    """Pooled relative shift of segments (excess dollars over predicted dollars), and its z."""
    excess = sum(t.rows * t.bias for t in group)
    variance = sum(t.rows * t.rows * t.variance for t in group)
    shift = excess / sum(t.scale for t in group)
    z = excess / math.sqrt(variance) if variance > 0 else math.copysign(math.inf, excess)
    return shift, z


def _cochran_q(shifts: np.ndarray, variances: np.ndarray) -> tuple[float, float, float]:
    """Cochran's Q of shifts around their inverse-variance mean, that mean and its variance."""
    weights = 1.0 / np.maximum(variances, 1e-300)
    pooled = float(np.sum(weights * shifts) / np.sum(weights))
    return float(np.sum(weights * (shifts - pooled) ** 2)), pooled, float(1.0 / weights.sum())


@dataclass
class _Effects:
    """Relative shifts already attributed to chosen features, by global segment id."""

    shift: np.ndarray
    variance: np.ndarray
    chosen: list[tuple[int, int]]  # global id ranges of the chosen features


def _net_shifts(group: Sequence[_Test], effects: _Effects,
                overlap: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """A feature's segment shifts minus the echoes of the chosen features, with variances.

    If colour level ``a`` shifted by ``e[a]`` and holds ``w[a, b]`` of carat band ``b``'s
    predicted dollars, the colour shift alone moves band ``b`` by ``sum_a w[a, b] * e[a]``:
    subtracting it leaves what colour does not explain. The echo's own variance is added
    (ignoring its covariance with the band's shift, which only makes this conservative).
    """
    shifts = np.array([t.shift for t in group])
    variances = np.array([t.shift_variance for t in group])
    if overlap is None:
        return shifts, variances
    slots = [t.slot for t in group]
    for lo, hi in effects.chosen:
        share = overlap[lo:hi][:, slots]
        total = share.sum(axis=0)
        w = np.divide(share, total, out=np.zeros_like(share), where=total > 0)
        shifts = shifts - w.T @ effects.shift[lo:hi]
        variances = variances + (w * w).T @ effects.variance[lo:hi]
    return shifts, variances


def _locate(profile: SegmentProfile, tests: Sequence[_Test], flagged: Sequence[bool],
            settings: SegmentSettings, target: str) -> list[Location]:
    by_feature: dict[str, list[tuple[_Test, bool]]] = {}
    for t, f in zip(tests, flagged, strict=True):
        by_feature.setdefault(t.feature.name, []).append((t, f))
    testable = {name: items for name, items in by_feature.items() if len(items) >= 2}
    alpha = settings.false_discovery_rate / max(len(testable), 1)
    remaining = {name: items for name, items in testable.items() if any(f for _, f in items)}
    start = offsets(profile.layout)
    effects = _Effects(np.zeros(start[-1]), np.zeros(start[-1]), [])
    locations: list[Location] = []
    while remaining:
        best: tuple[float, str, float, float, np.ndarray, np.ndarray] | None = None
        for name, items in remaining.items():
            shifts, variances = _net_shifts([t for t, _ in items], effects, profile.overlap)
            q, _, _ = _cochran_q(shifts, variances)
            z, pvalue = chi2_z(q, len(items) - 1), chi2_sf(q, len(items) - 1)
            if pvalue <= alpha and (best is None or z > best[0]):
                best = (z, name, q, pvalue, shifts, variances)
        if best is None:
            break
        _, name, q, pvalue, shifts, variances = best
        items = remaining.pop(name)
        hits = [t for (t, f), net, v in zip(items, shifts, variances, strict=True)
                if f and _stands_out(t.shift, net, v, settings)]
        if hits and len(hits) < len(items):
            _attribute(effects, [t for t, _ in items], shifts, variances)
            locations += _locations(hits, q, pvalue, target)
    if not locations and any(flagged):
        return _everywhere(tests, flagged, settings.min_shift, target)
    return locations


def _stands_out(shift: float, net: float, variance: float, settings: SegmentSettings) -> bool:
    """A flagged segment is no echo when its net shift keeps the sign, reaches ``min_shift``
    and is itself significant at ``false_discovery_rate`` (a net shift is a raw one for
    the first feature chosen, so this only prunes echoes from later ones)."""
    if net * shift <= 0 or abs(net) < settings.min_shift:
        return False
    if variance <= 0.0:
        return True
    return normal_two_sided(net / math.sqrt(variance)) <= settings.false_discovery_rate


def _attribute(effects: _Effects, group: Sequence[_Test], shifts: np.ndarray,
               variances: np.ndarray) -> None:
    """Record a chosen feature's net shifts; its untested segments get their pooled mean."""
    feat = group[0].feature
    lo = group[0].slot - group[0].index
    _, pooled, pooled_variance = _cochran_q(shifts, variances)
    effects.shift[lo:lo + feat.size] = pooled
    effects.variance[lo:lo + feat.size] = pooled_variance
    for t, s, v in zip(group, shifts, variances, strict=True):
        effects.shift[t.slot], effects.variance[t.slot] = s, v
    effects.chosen.append((lo, lo + feat.size))


def _locations(hits: Sequence[_Test], q: float, pvalue: float,
               target: str) -> list[Location]:
    """A chosen feature's flagged segments, one location per sign, the stronger first."""
    out = []
    for sign in (1.0, -1.0):
        group = [t for t in hits if math.copysign(1.0, t.shift) == sign]
        if group:
            shift, z = _pooled(group)
            labels = [t.feature.labels()[t.index] for t in group]
            out.append((abs(z), Location(group[0].feature.name, labels, shift,
                                         _message(group, shift, target), q, pvalue)))
    return [loc for _, loc in sorted(out, key=lambda item: item[0], reverse=True)]


def _everywhere(tests: Sequence[_Test], flagged: Sequence[bool],
                min_shift: float, target: str) -> list[Location]:
    """Drift along no feature in particular, pooled over the feature with most flagged
    segments (every feature's tested segments cover nearly the same rows); nothing when
    that pooled shift is under ``min_shift``."""
    counts: dict[str, int] = {}
    for t, f in zip(tests, flagged, strict=True):
        counts[t.feature.name] = counts.get(t.feature.name, 0) + int(f)
    name = max(counts, key=lambda k: counts[k])
    shift, _ = _pooled([t for t in tests if t.feature.name == name])
    if abs(shift) < min_shift:
        return []
    return [Location("*", [], shift, f"everywhere: {_against_model(shift, target)}")]


def _against_model(shift: float, target: str) -> str:
    percent = abs(shift) * 100.0
    amount = f"{percent:.0f}" if percent >= 9.5 else f"{percent:.1f}"
    return f"{target} {amount} % {'above' if shift >= 0 else 'below'} the model"


def _message(group: Sequence[_Test], shift: float, target: str) -> str:
    """The sentence: levels listed after the feature ("color D, E, F: price ..."),
    contiguous bands merged into one range ("carat 0.4-1.04: price ...")."""
    feat = group[0].feature
    if feat.kind == "categorical":
        where = f"{feat.name} {', '.join(feat.levels[t.index] for t in group)}"
    else:
        runs: list[list[int]] = []
        for i in sorted(t.index for t in group):
            if runs and i == runs[-1][1] + 1:
                runs[-1][1] = i
            else:
                runs.append([i, i])
        where = ", ".join(feat.band_label(a, b) for a, b in runs)
    return f"{where}: {_against_model(shift, target)}"

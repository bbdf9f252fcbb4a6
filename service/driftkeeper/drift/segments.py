"""Where concept drift lives: the residual shift per segment, and the features it localises in.

A concept verdict says the model's residuals moved; this module says *where*. Every feature
is cut into segments (one per category level, ``bands`` reference-quantile bands per
numerical feature), and each segment's mean residual in the window is tested against the
same segment's held-out mean residual (a large-sample Welch z test), with a
Benjamini-Hochberg correction across all segments.

Flagged segments alone would mislead: when D/E/F diamonds become 25 % dearer every carat
band, cut and clarity level also shows a positive shift, because D/E/F diamonds are spread
over them. So a feature is a *location* only when its segments disagree (Cochran's Q over
their relative shifts is significant) and some of its tested segments are not flagged; its
flagged segments, grouped by sign, are where the drift lives ("color D, E, F: prices 25 %
above the model"). Features are chosen strongest first, and a later feature's shifts are
first netted of the echoes of those already chosen (how much of each carat band's price
lies in D/E/F is known from the held-out rows), so "carat <= 1.04" does not come second.
When segments are flagged but no feature localises, the one location is ``*``
("everywhere: prices 10 % above the model"), if that pooled shift reaches ``min_shift``.

Windows are sums only (rows, positive and negative residual sums, squares, |prediction|
sums per segment), so worker and replica windows add up with ``+``, and every sum is a
non-negative counter. numpy and the standard library only: this runs in gunicorn workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from ..schema import FeatureSchema

DEFAULT_BANDS = 4
"""Quantile bands per numerical feature: enough to tell small from large diamonds, few
enough that a 1,000-row window still puts ~250 rows in each."""

SUMS = ("n", "positive", "negative", "squares", "predictions")
"""The per-segment sums of a window, in their JSON order."""

EN_DASH = "\u2013"
"""Between the two ends of a band's label, as typeset ranges are ("carat 0.4\u20130.7")."""

SegmentKind = Literal["numerical", "categorical"]


@dataclass(frozen=True)
class SegmentSettings:
    """Segment-localisation settings.

    ``min_rows`` applies to both the window and the reference segment (a mean of fewer
    heavy-tailed residuals is not worth a z test); ``false_discovery_rate`` is the
    Benjamini-Hochberg level across all tested segments and, Bonferroni-split over the
    features, the level of each feature's heterogeneity test; ``min_shift`` is the smallest
    |relative shift| worth reporting, so a huge window cannot flag a one-percent wobble.
    ``bands`` is read when the profile is built (:func:`build_segment_profile`) and
    ``enabled`` by the caller: :func:`evaluate_segments` reads neither.
    """

    enabled: bool = True
    bands: int = DEFAULT_BANDS
    min_rows: int = 30
    false_discovery_rate: float = 0.01
    min_shift: float = 0.05

    def __post_init__(self) -> None:
        if self.bands < 1:
            raise ValueError(f"bands must be at least 1, got {self.bands}")
        if self.min_rows < 2:
            raise ValueError(f"min_rows must be at least 2 (a variance), got {self.min_rows}")
        if not 0.0 < self.false_discovery_rate < 1.0:
            raise ValueError("false_discovery_rate must be in (0, 1), got "
                             f"{self.false_discovery_rate}")
        if not self.min_shift >= 0.0:
            raise ValueError(f"min_shift must be non-negative, got {self.min_shift}")


# -- layout: which segments exist and what they are called -----------------------------------


@dataclass(frozen=True)
class SegmentFeature:
    """One feature's segments. Numerical band ``i`` of interior edges ``e`` holds the values
    ``e[i-1] < v <= e[i]`` (``searchsorted(e, v, side="left")``): the first band is
    ``<= e[0]``, the last ``> e[-1]``. Categorical segment ``i`` is level code ``i``; codes
    outside ``0..len(levels)-1``, fractional codes, NaN and infinities belong to no
    segment."""

    name: str
    kind: SegmentKind
    edges: tuple[float, ...] = ()
    levels: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return len(self.edges) + 1 if self.kind == "numerical" else len(self.levels)

    def labels(self) -> list[str]:
        """Readable names: the level for categoricals, a range for bands ("carat 0.4-0.7")."""
        if self.kind == "categorical":
            return list(self.levels)
        return [self.band_label(i, i) for i in range(self.size)]

    def band_label(self, first: int, last: int) -> str:
        """The range covered by bands ``first..last`` (contiguous), e.g. "carat > 1.04"."""
        if not self.edges:
            return f"{self.name} (all)"
        text = _edge_texts(self.edges)
        if first == 0 and last == len(self.edges):
            return f"{self.name} (all)"
        if first == 0:
            return f"{self.name} ≤ {text[last]}"
        if last == len(self.edges):
            return f"{self.name} > {text[first - 1]}"
        return f"{self.name} {text[first - 1]}{EN_DASH}{text[last]}"

    def assign(self, column: np.ndarray) -> np.ndarray:
        """The segment of each value, -1 where it belongs to none."""
        col = np.asarray(column, dtype=np.float64)
        out = np.full(len(col), -1, dtype=np.int64)
        finite = np.isfinite(col)
        if self.kind == "numerical":
            out[finite] = np.searchsorted(np.asarray(self.edges), col[finite], side="left")
        else:
            ok = finite & (col >= 0) & (col < len(self.levels))
            ok[ok] = col[ok] == np.floor(col[ok])
            out[ok] = col[ok].astype(np.int64)
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "numerical":
            out["edges"] = list(self.edges)
        else:
            out["levels"] = list(self.levels)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SegmentFeature:
        return cls(d["name"], d["kind"], tuple(float(e) for e in d.get("edges", ())),
                   tuple(d.get("levels", ())))


def _number(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _edge_texts(edges: Sequence[float]) -> list[str]:
    """Edges to 3 significant digits (trailing zeros dropped, no exponent), with more
    digits only where two edges would otherwise read the same."""
    for extra in range(8):
        texts = []
        for e in edges:
            magnitude = math.floor(math.log10(abs(e))) if e != 0 else 0
            texts.append(_number(e, max(0, 2 - magnitude + extra)))
        if len(set(texts)) == len(texts):
            return texts
    return [repr(float(e)) for e in edges]


Layout = tuple[SegmentFeature, ...]


def layout_from_schema(schema: FeatureSchema, X: np.ndarray,
                       bands: int = DEFAULT_BANDS) -> Layout:
    """Segments of every schema feature: its levels, or ``bands`` quantile bands of the
    finite values in ``X`` (interior edges; tied quantiles merge bands)."""
    if bands < 1:
        raise ValueError(f"bands must be at least 1, got {bands}")
    X = _matrix(X, len(schema.features))
    out = []
    for j, feat in enumerate(schema.features):
        if feat.kind == "categorical":
            out.append(SegmentFeature(feat.name, "categorical", levels=tuple(feat.levels)))
            continue
        col = X[:, j][np.isfinite(X[:, j])]
        edges: tuple[float, ...] = ()
        if len(col) and bands > 1:
            inner = np.quantile(col, np.linspace(0.0, 1.0, bands + 1)[1:-1])
            edges = tuple(float(e) for e in np.unique(inner))
        out.append(SegmentFeature(feat.name, "numerical", edges=edges))
    return tuple(out)


# -- window sums ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSums:
    """One feature's per-segment sums; every entry is a non-negative counter.

    ``positive`` and ``negative`` are the sums of the positive residuals and of the absolute
    negative ones (the signed sum is ``positive - negative``); ``predictions`` sums
    |prediction|, the scale a shift is relative to.
    """

    n: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    squares: np.ndarray
    predictions: np.ndarray

    @property
    def total(self) -> np.ndarray:
        """Signed sum of residuals per segment."""
        return self.positive - self.negative

    def __add__(self, other: FeatureSums) -> FeatureSums:
        if len(self.n) != len(other.n):
            raise ValueError(f"cannot add sums of {len(self.n)} and {len(other.n)} segments")
        return FeatureSums(*(getattr(self, k) + getattr(other, k) for k in SUMS))

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        out: dict[str, list[float] | list[int]] = {"n": self.n.astype(int).tolist()}
        out.update({k: getattr(self, k).astype(float).tolist() for k in SUMS[1:]})
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[float]]) -> FeatureSums:
        arrays = [np.asarray(d["n"], dtype=np.int64)]
        arrays += [np.asarray(d[k], dtype=np.float64) for k in SUMS[1:]]
        if len({len(a) for a in arrays}) != 1:
            raise ValueError("segment sums of one feature must all have the same length")
        return cls(*arrays)

    @classmethod
    def zeros(cls, size: int) -> FeatureSums:
        return cls(np.zeros(size, dtype=np.int64),
                   *(np.zeros(size, dtype=np.float64) for _ in SUMS[1:]))


@dataclass(frozen=True)
class SegmentSums:
    """Per-feature, per-segment residual sums of one window; ``+`` merges windows."""

    features: dict[str, FeatureSums]

    def __add__(self, other: SegmentSums) -> SegmentSums:
        if self.features.keys() != other.features.keys():
            raise ValueError(f"cannot add sums of features {sorted(self.features)} and "
                             f"{sorted(other.features)}")
        return SegmentSums({k: v + other.features[k] for k, v in self.features.items()})

    def to_dict(self) -> dict[str, Any]:
        return {"features": {k: v.to_dict() for k, v in self.features.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SegmentSums:
        return cls({k: FeatureSums.from_dict(v) for k, v in d["features"].items()})

    @classmethod
    def empty(cls, layout: Iterable[SegmentFeature]) -> SegmentSums:
        return cls({f.name: FeatureSums.zeros(f.size) for f in layout})


def _matrix(X: np.ndarray, columns: int) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != columns:
        raise ValueError(f"X: expected an encoded matrix of {columns} columns, got shape "
                         f"{X.shape}")
    return X


def _rows(layout: Sequence[SegmentFeature], X: np.ndarray, residuals: np.ndarray,
          predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked inputs, restricted to rows with a finite residual and prediction."""
    X = _matrix(X, len(layout))
    r = np.asarray(residuals, dtype=np.float64).reshape(-1)
    p = np.asarray(predictions, dtype=np.float64).reshape(-1)
    for name, values in (("residuals", r), ("predictions", p)):
        if len(values) != len(X):
            raise ValueError(f"{name}: {len(values)} values for {len(X)} rows of X")
    keep = np.isfinite(r) & np.isfinite(p)
    return X[keep], r[keep], p[keep]


def segment_sums(layout: Sequence[SegmentFeature], X: np.ndarray, residuals: np.ndarray,
                 predictions: np.ndarray) -> SegmentSums:
    """Sum residuals (actual - predicted) and predictions per segment of every feature.

    ``X`` is encoded (rows x layout features, schema order). Rows whose residual or
    prediction is not finite are skipped; a row with a missing or unknown value in one
    feature is skipped in that feature only.
    """
    X, r, p = _rows(layout, X, residuals, predictions)
    weights = (np.maximum(r, 0.0), np.maximum(-r, 0.0), r * r, np.abs(p))
    out: dict[str, FeatureSums] = {}
    for j, feat in enumerate(layout):
        seg = feat.assign(X[:, j])
        ok = seg >= 0
        n = np.bincount(seg[ok], minlength=feat.size).astype(np.int64)
        sums = (np.bincount(seg[ok], weights=w[ok], minlength=feat.size) for w in weights)
        out[feat.name] = FeatureSums(n, *sums)
    return SegmentSums(out)


# -- the reference profile -------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentProfile:
    """Segments and held-out residual sums, built at training time and stored as JSON with
    the reference profile: the edges are stored, so segment ids and labels never move.

    ``overlap[i, j]`` is the held-out |prediction| sum of rows in both segment ``i`` and
    segment ``j`` (global ids: segments numbered in layout order). It says how much of carat
    band ``j``'s price lies in colour ``i``, which is what lets :func:`evaluate_segments`
    recognise a carat shift as an echo of a colour shift. None: no echo removal.
    """

    layout: Layout
    reference: SegmentSums
    overlap: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"layout": [f.to_dict() for f in self.layout],
                "reference": self.reference.to_dict(),
                "overlap": None if self.overlap is None else self.overlap.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SegmentProfile:
        layout = tuple(SegmentFeature.from_dict(f) for f in d["layout"])
        reference = SegmentSums.from_dict(d["reference"])
        _check_sums(layout, reference, "reference")
        overlap = None
        if d.get("overlap") is not None:
            overlap = np.asarray(d["overlap"], dtype=np.float64)
            size = sum(f.size for f in layout)
            if overlap.shape != (size, size):
                raise ValueError(f"overlap: expected a {size}x{size} matrix, got shape "
                                 f"{overlap.shape}")
        return cls(layout, reference, overlap)

    def labels(self) -> dict[str, list[str]]:
        """Segment labels by feature, in segment-id order (what counters are labelled with)."""
        return {f.name: f.labels() for f in self.layout}


def build_segment_profile(schema: FeatureSchema, X_hold: np.ndarray, residuals: np.ndarray,
                          predictions: np.ndarray,
                          bands: int = DEFAULT_BANDS) -> SegmentProfile:
    """Segment the held-out rows (bands from their own quantiles) and sum their residuals.

    Held-out rows, not training rows: the model has fitted the latter, so their residuals
    would make every later window look biased."""
    layout = layout_from_schema(schema, X_hold, bands)
    sums = segment_sums(layout, X_hold, residuals, predictions)
    return SegmentProfile(layout, sums, segment_overlap(layout, X_hold, residuals, predictions))


def _offsets(layout: Sequence[SegmentFeature]) -> list[int]:
    """Global id of each feature's first segment, plus the total."""
    return [0, *np.cumsum([f.size for f in layout]).tolist()]


def segment_overlap(layout: Sequence[SegmentFeature], X: np.ndarray, residuals: np.ndarray,
                    predictions: np.ndarray) -> np.ndarray:
    """|prediction| sums of the rows two segments share (global ids), over the rows
    :func:`segment_sums` counts. A feature's own block is diagonal: its segments' sums."""
    X, _, p = _rows(layout, X, residuals, predictions)
    start = _offsets(layout)
    segments = [f.assign(X[:, j]) for j, f in enumerate(layout)]
    weight = np.abs(p)
    out = np.zeros((start[-1], start[-1]))
    for a, fa in enumerate(layout):
        for b, fb in enumerate(layout):
            ok = (segments[a] >= 0) & (segments[b] >= 0)
            cell = np.bincount(segments[a][ok] * fb.size + segments[b][ok], weights=weight[ok],
                               minlength=fa.size * fb.size)
            out[start[a]:start[a + 1], start[b]:start[b + 1]] = cell.reshape(fa.size, fb.size)
    return out


def _check_sums(layout: Layout, sums: SegmentSums, what: str) -> None:
    for feat in layout:
        got = sums.features.get(feat.name)
        if got is None or len(got.n) != feat.size:
            size = None if got is None else len(got.n)
            raise ValueError(f"{what}: feature {feat.name} needs {feat.size} segments, "
                             f"got {size}")


# -- statistics (stdlib only) -----------------------------------------------------------------


def normal_two_sided(z: float) -> float:
    """Two-sided standard normal tail probability P(|Z| >= |z|)."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def chi2_sf(x: float, df: int) -> float:
    """Exact chi-square survival function for an integer ``df`` >= 1 (closed forms: a
    Poisson sum for even df, erfc plus a series for odd df)."""
    if df < 1:
        raise ValueError(f"df must be at least 1, got {df}")
    if x <= 0.0:
        return 1.0
    half = x / 2.0
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for j in range(1, df // 2):
            term *= half / j
            total += term
        return min(1.0, math.exp(-half) * total)
    root = math.sqrt(x)
    term, total = root, 0.0
    for j in range(1, (df + 1) // 2):
        total += term
        term *= x / (2 * j + 1)
    density = math.exp(-half) / math.sqrt(2.0 * math.pi)
    return min(1.0, math.erfc(root / math.sqrt(2.0)) + 2.0 * density * total)


def chi2_z(x: float, df: int) -> float:
    """Wilson-Hilferty normal equivalent of a chi-square statistic: ranks statistics of
    different df on one scale, and never underflows the way a p-value does."""
    c = 2.0 / (9.0 * df)
    return ((max(x, 0.0) / df) ** (1.0 / 3.0) - (1.0 - c)) / math.sqrt(c)


def bh_adjust(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (step-up, monotone, capped at 1)."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()


# -- the verdict ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentResult:
    """One tested segment.

    ``shift`` is the mean residual's change (window minus reference, in this segment) over
    the window's mean |prediction| in it: +0.24 reads "prices 24 % above the model";
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
                      settings: SegmentSettings) -> SegmentVerdict:
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
    ``min_shift``.
    """
    _check_sums(profile.layout, window, "window")
    start = _offsets(profile.layout)
    tests = [t for k, feat in enumerate(profile.layout) for i in range(feat.size)
             if (t := _test(feat, i, start[k] + i, profile.reference.features[feat.name],
                            window.features[feat.name], settings.min_rows)) is not None]
    adjusted = bh_adjust([t.pvalue for t in tests])
    flagged = [a <= settings.false_discovery_rate and abs(t.shift) >= settings.min_shift
               for t, a in zip(tests, adjusted, strict=True)]
    results = [SegmentResult(t.feature.name, t.feature.labels()[t.index], t.rows, t.shift,
                             t.bias, t.rmse_ratio, t.pvalue, a, f)
               for t, a, f in zip(tests, adjusted, flagged, strict=True)]
    locations = _locate(profile, tests, flagged, settings)
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
            settings: SegmentSettings) -> list[Location]:
    by_feature: dict[str, list[tuple[_Test, bool]]] = {}
    for t, f in zip(tests, flagged, strict=True):
        by_feature.setdefault(t.feature.name, []).append((t, f))
    testable = {name: items for name, items in by_feature.items() if len(items) >= 2}
    alpha = settings.false_discovery_rate / max(len(testable), 1)
    remaining = {name: items for name, items in testable.items() if any(f for _, f in items)}
    start = _offsets(profile.layout)
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
            locations += _locations(hits, q, pvalue)
    if not locations and any(flagged):
        return _everywhere(tests, flagged, settings.min_shift)
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


def _locations(hits: Sequence[_Test], q: float, pvalue: float) -> list[Location]:
    """A chosen feature's flagged segments, one location per sign, the stronger first."""
    out = []
    for sign in (1.0, -1.0):
        group = [t for t in hits if math.copysign(1.0, t.shift) == sign]
        if group:
            shift, z = _pooled(group)
            labels = [t.feature.labels()[t.index] for t in group]
            out.append((abs(z), Location(group[0].feature.name, labels, shift,
                                         _message(group, shift), q, pvalue)))
    return [loc for _, loc in sorted(out, key=lambda item: item[0], reverse=True)]


def _everywhere(tests: Sequence[_Test], flagged: Sequence[bool],
                min_shift: float) -> list[Location]:
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
    return [Location("*", [], shift, f"everywhere: {_prices(shift)}")]


def _prices(shift: float) -> str:
    percent = abs(shift) * 100.0
    amount = f"{percent:.0f}" if percent >= 9.5 else f"{percent:.1f}"
    return f"prices {amount} % {'above' if shift >= 0 else 'below'} the model"


def _message(group: Sequence[_Test], shift: float) -> str:
    """The sentence: levels listed after the feature ("color D, E, F: prices ..."),
    contiguous bands merged into one range ("carat 0.4-1.04: prices ...")."""
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
    return f"{where}: {_prices(shift)}"

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
flagged segments, grouped by sign, are where the drift lives ("color D, E, F: price 25 %
above the model"). Features are chosen strongest first, and a later feature's shifts are
first netted of the echoes of those already chosen (how much of each carat band's price
lies in D/E/F is known from the held-out rows), so "carat <= 1.04" does not come second.
When segments are flagged but no feature localises, the one location is ``*``
("everywhere: price 10 % above the model"), if that pooled shift reaches ``min_shift``.

Windows are sums only (rows, positive and negative residual sums, squares, |prediction|
sums per segment), so worker and replica windows add up with ``+``, and every sum is a
non-negative counter. numpy and the standard library only: this runs in gunicorn workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..schema import FeatureSchema

DEFAULT_BANDS = 4
"""Quantile bands per numerical feature: enough to tell small from large diamonds, few
enough that a 1,000-row window still puts ~250 rows in each."""

MAX_SEGMENTS = 20
"""Segments of one categorical feature at most: its 19 most frequent levels in the
reference, and the rest pooled into one "other" segment. Each segment costs five counter
series per pod, and a feature may have 1,000 levels; a level too rare to be among the 19
also rarely holds the ``min_rows`` a segment's test needs."""

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
    segment. A capped feature (more than ``MAX_SEGMENTS`` levels) says, per level code,
    which segment it is in (``members``); ``levels`` are then the segments' names, the last
    "other (N levels)" pooling the ``pooled`` rare levels."""

    name: str
    kind: SegmentKind
    edges: tuple[float, ...] = ()
    levels: tuple[str, ...] = ()
    members: tuple[int, ...] = ()  # level code -> segment (capped features only)
    pooled: int = 0  # levels pooled into the last segment

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
            codes = len(self.members) if self.members else len(self.levels)
            ok = finite & (col >= 0) & (col < codes)
            ok[ok] = col[ok] == np.floor(col[ok])
            out[ok] = col[ok].astype(np.int64)
            if self.members:
                out[ok] = np.asarray(self.members, dtype=np.int64)[out[ok]]
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "numerical":
            out["edges"] = list(self.edges)
        else:
            out["levels"] = list(self.levels)
        if self.members:
            out["members"] = list(self.members)
            out["pooled"] = self.pooled
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SegmentFeature:
        return cls(d["name"], d["kind"], tuple(float(e) for e in d.get("edges", ())),
                   tuple(d.get("levels", ())), tuple(int(m) for m in d.get("members", ())),
                   int(d.get("pooled", 0)))


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


def segment_matrix(X: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """What segments are assigned from: the encoded features, and for a classifier of
    K >= 3 classes the label (class index) as one more column (``labels``; None for any
    other model)."""
    if labels is None:
        return X
    return np.column_stack([np.asarray(X, dtype=np.float64),
                            np.asarray(labels, dtype=np.float64)])


def layout_from_schema(schema: FeatureSchema, X: np.ndarray,
                       bands: int = DEFAULT_BANDS) -> Layout:
    """Segments of every schema feature: its levels, or ``bands`` quantile bands of the
    finite values in ``X`` (interior edges; tied quantiles merge bands). A classifier of
    K >= 3 classes also has one segment per class that happened (``X``'s last column,
    :func:`segment_matrix`): where concept drift lives may be "the rows of one class"."""
    if bands < 1:
        raise ValueError(f"bands must be at least 1, got {bands}")
    per_class = schema.target.n_classes >= 3
    X = _matrix(X, len(schema.features) + per_class)
    out = []
    for j, feat in enumerate(schema.features):
        if feat.kind == "categorical":
            out.append(_categorical(feat.name, tuple(feat.levels), X[:, j]))
            continue
        col = X[:, j][np.isfinite(X[:, j])]
        edges: tuple[float, ...] = ()
        if len(col) and bands > 1:
            inner = np.quantile(col, np.linspace(0.0, 1.0, bands + 1)[1:-1])
            edges = tuple(float(e) for e in np.unique(inner))
        out.append(SegmentFeature(feat.name, "numerical", edges=edges))
    if per_class:
        out.append(_categorical(schema.target.name, schema.target.classes, X[:, -1]))
    return tuple(out)


def _categorical(name: str, levels: tuple[str, ...], column: np.ndarray,
                 cap: int = MAX_SEGMENTS) -> SegmentFeature:
    """One segment per level, or, beyond ``cap`` levels, the ``cap - 1`` most frequent in
    ``column`` (in level order) and one segment pooling the rest."""
    if len(levels) <= cap:
        return SegmentFeature(name, "categorical", levels=levels)
    col = column[np.isfinite(column)]
    col = col[(col >= 0) & (col < len(levels)) & (col == np.floor(col))].astype(np.int64)
    counts = np.bincount(col, minlength=len(levels))
    order = np.argsort(-counts, kind="stable")  # most frequent first, ties by level order
    kept = sorted(order[:cap - 1].tolist())
    segment = {code: i for i, code in enumerate(kept)}
    pooled = len(levels) - len(kept)
    members = tuple(segment.get(code, cap - 1) for code in range(len(levels)))
    labels = (*(levels[c] for c in kept), f"other ({pooled} levels)")
    return SegmentFeature(name, "categorical", levels=labels, members=members, pooled=pooled)


def capped(layout: Iterable[SegmentFeature]) -> dict[str, int]:
    """Features whose rare levels are pooled, and how many levels each pools."""
    return {f.name: f.pooled for f in layout if f.pooled}


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
    return sums_by_segment(layout, segment_ids(layout, X), residuals,
                           predictions)


def segment_ids(layout: Sequence[SegmentFeature], X: np.ndarray) -> np.ndarray:
    """Each row's segment per layout feature (rows x features; -1: none). Assigned once
    per row when it is counted, and reused by every window the row is in."""
    X = _matrix(X, len(layout))
    out = np.empty(X.shape, dtype=np.int64)
    for j, feat in enumerate(layout):
        out[:, j] = feat.assign(X[:, j])
    return out


def sums_by_segment(layout: Sequence[SegmentFeature], ids: np.ndarray, residuals: np.ndarray,
                    predictions: np.ndarray) -> SegmentSums:
    """:func:`segment_sums` of rows whose segments are already assigned (``segment_ids``)."""
    ids, r, p = _rows(layout, ids, residuals, predictions)
    weights = (np.maximum(r, 0.0), np.maximum(-r, 0.0), r * r, np.abs(p))
    out: dict[str, FeatureSums] = {}
    for j, feat in enumerate(layout):
        seg = ids[:, j].astype(np.int64)
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
        check_sums(layout, reference, "reference")
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
    """Segment the held-out rows (bands from their own quantiles) and sum their residuals
    (``X_hold`` from :func:`segment_matrix`: a multiclass model's rows with their labels).

    Held-out rows, not training rows: the model has fitted the latter, so their residuals
    would make every later window look biased."""
    layout = layout_from_schema(schema, X_hold, bands)
    sums = segment_sums(layout, X_hold, residuals, predictions)
    return SegmentProfile(layout, sums, segment_overlap(layout, X_hold, residuals, predictions))


def offsets(layout: Sequence[SegmentFeature]) -> list[int]:
    """Global id of each feature's first segment, plus the total."""
    return [0, *np.cumsum([f.size for f in layout]).tolist()]


def segment_overlap(layout: Sequence[SegmentFeature], X: np.ndarray, residuals: np.ndarray,
                    predictions: np.ndarray) -> np.ndarray:
    """|prediction| sums of the rows two segments share (global ids), over the rows
    :func:`segment_sums` counts. A feature's own block is diagonal: its segments' sums."""
    X, _, p = _rows(layout, X, residuals, predictions)
    start = offsets(layout)
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


def check_sums(layout: Layout, sums: SegmentSums, what: str) -> None:
    for feat in layout:
        got = sums.features.get(feat.name)
        if got is None or len(got.n) != feat.size:
            size = None if got is None else len(got.n)
            raise ValueError(f"{what}: feature {feat.name} needs {feat.size} segments, "
                             f"got {size}")

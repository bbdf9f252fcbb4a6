"""Cumulative, mergeable counts of what a pod's windows saw: the fleet's raw material.

The pod's evaluator counts every row once, as it arrives in the workers' rings: inputs into
the serving version's reference bins, labelled rows scored by the serving version into
residual bins with their sums. The counts only grow, so they are Prometheus counters:
``increase()`` over a range, or the difference of two scrapes, is a window, and windows of
any number of workers and replicas add up exactly (the operator's fleet-level evaluation).

Counting starts from zero for each serving version (its bins differ from its parent's), and
only the serving version's counts are kept and exported: the label set stays bounded
however many promotions happen. Counting here rather than in the request path keeps the
request path free of counter updates.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..contract import names
from ..contract.rings import InputRows
from ..drift.probability import correct, log_losses, segment_scales
from ..drift.profile import NumericalProfile, ReferenceProfile
from ..drift.segments import SegmentSums, segment_ids, segment_matrix, sums_by_segment
from ..drift.stats import NumericBins
from ..files import write_atomic
from .recent import (
    CORRECT,
    ESTIMATE,
    LOG_LOSS,
    SEGMENTS,
    Derivation,
    Estimator,
    NewRows,
    RecentRows,
)

FORMAT = 6  # 2: prediction counts; 3: estimated squared errors; 4: segment sums;
# 5: a classifier's summed log loss and correct count; 6: a multiclass model's class sums
READABLE = (4, 5, 6)  # older files lack a classifier's sums (its counts then restart)


@dataclass
class FeatureTally:
    """Counts per bin (numerical: under, K reference bins, over; categorical: per level),
    plus, for numericals, the summed distance of out-of-range values from the range ends
    (the binned Wasserstein needs where they fell; distances keep the counters positive)."""

    counts: np.ndarray
    numeric: bool
    unseen: int = 0  # categorical codes the schema does not know
    under_distance: float = 0.0
    over_distance: float = 0.0


@dataclass
class Tally:
    """Everything counted for one serving version since ``started``."""

    model_version: str
    started: float
    features: dict[str, FeatureTally]
    residual_counts: np.ndarray
    residual_positive: float = 0.0  # sum of positive residuals
    residual_negative: float = 0.0  # sum of |negative residuals|
    residual_squares: float = 0.0
    data_rows: int = 0
    concept_rows: int = 0
    dropped_rows: int = 0  # rows overwritten in a ring before they could be counted
    positions: dict[str, list[int]] = field(default_factory=dict)  # ring -> [inode, head]
    # This version's predictions per held-out prediction bin (empty: no prediction profile).
    prediction_counts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    prediction_rows: int = 0
    # The loss model's estimated squared errors of this version's rows (performance).
    estimate_sum: float = 0.0
    estimate_rows: int = 0
    # Labelled rows' residual sums per segment (None: the version has no segment reference).
    segments: SegmentSums | None = None
    # A classifier's labelled rows: summed log loss and rows correctly classified (None: a
    # regression, or a file written before they were counted).
    log_loss_sum: float | None = None
    correct: int | None = None
    # A multiclass model's labelled rows per class that happened and summed probability of
    # each class (one-vs-rest calibration; None: another model, or an older file).
    class_rows: np.ndarray | None = None
    class_probabilities: np.ndarray | None = None
    class_names: tuple[str, ...] = ()  # their labels on /metrics
    # A multiclass model's predicted probability of each class per held-out bin of it
    # (each class's prediction drift; None: another model, or an older file).
    class_prediction_counts: dict[str, np.ndarray] | None = None

    @classmethod
    def empty(cls, profile: ReferenceProfile, version: str, started: float) -> Tally:
        features = {}
        for name, prof in profile.features.items():
            if isinstance(prof, NumericalProfile):
                features[name] = FeatureTally(np.zeros(len(prof.bins.edges) + 1), True)
            else:
                features[name] = FeatureTally(np.zeros(len(prof.levels)), False)
        residual_bins = 0 if profile.residuals is None else len(profile.residuals.bins.edges) + 1
        prediction_bins = (0 if profile.predictions is None
                           else len(profile.predictions.bins.edges) + 1)
        return cls(version, started, features, np.zeros(residual_bins),
                   prediction_counts=np.zeros(prediction_bins),
                   segments=(None if profile.segments is None
                             else SegmentSums.empty(profile.segments.layout)),
                   log_loss_sum=0.0 if profile.is_classifier else None,
                   correct=0 if profile.is_classifier else None,
                   class_rows=np.zeros(k) if (k := profile.n_classes) >= 3 else None,
                   class_probabilities=np.zeros(k) if k >= 3 else None,
                   class_names=profile.schema.target.classes if k >= 3 else (),
                   class_prediction_counts=None if profile.class_predictions is None else {
                       c: np.zeros(len(p.bins.edges) + 1)
                       for c, p in profile.class_predictions.items()})

    def add_inputs(self, profile: ReferenceProfile, encoded: np.ndarray) -> None:
        """Count encoded input rows (rows x schema features)."""
        for j, feat in enumerate(profile.schema.features):
            prof, tally = profile.features[feat.name], self.features[feat.name]
            col = encoded[:, j]
            col = col[np.isfinite(col)]  # validation lets nothing else through
            if isinstance(prof, NumericalProfile):
                edges = prof.bins.edges
                idx = prof.bins.bin_index(col)
                tally.counts += np.bincount(idx, minlength=len(tally.counts))
                tally.under_distance += float((edges[0] - col[idx == 0]).sum())
                tally.over_distance += float((col[idx == len(edges)] - edges[-1]).sum())
            else:
                codes = col.astype(np.int64)
                known = (codes >= 0) & (codes < len(tally.counts))
                tally.counts += np.bincount(codes[known], minlength=len(tally.counts))
                tally.unseen += int((~known).sum())
        self.data_rows += len(encoded)

    def add_predictions(self, profile: ReferenceProfile, predictions: np.ndarray,
                        probabilities: np.ndarray | None = None) -> None:
        """Count this version's predictions into its held-out prediction bins (and a
        multiclass model's probabilities of each class into that class's bins)."""
        finite = np.isfinite(predictions)
        p = predictions[finite]
        if profile.predictions is None or not len(p):
            return
        self.prediction_counts += _bin_counts(profile.predictions.bins, p,
                                              len(self.prediction_counts))
        self.prediction_rows += len(p)
        counts, by_class = self.class_prediction_counts, profile.class_predictions
        if counts is None or by_class is None or probabilities is None:
            return
        each = np.asarray(probabilities, dtype=np.float64)[finite]
        for k, c in enumerate(profile.schema.target.classes):
            column = each[:, k]
            counts[c] += _bin_counts(by_class[c].bins, column[np.isfinite(column)],
                                     len(counts[c]))

    def add_estimates(self, estimates: np.ndarray) -> None:
        """Add the loss model's estimates of this version's rows (a sum and a count)."""
        e = estimates[np.isfinite(estimates)]
        self.estimate_sum += float(np.maximum(e, 0.0).sum())
        self.estimate_rows += len(e)

    def add_segments(self, profile: ReferenceProfile, X: np.ndarray, residuals: np.ndarray,
                     predictions: np.ndarray, labels: np.ndarray | None = None) -> None:
        """Add labelled rows (encoded; a multiclass model's with their class indices) to
        their segments' residual sums."""
        if profile.segments is not None:
            self.add_segment_ids(profile, segment_ids(profile.segments.layout,
                                                      segment_matrix(X, labels)),
                                 residuals, predictions)

    def add_segment_ids(self, profile: ReferenceProfile, ids: np.ndarray,
                        residuals: np.ndarray, predictions: np.ndarray) -> None:
        """:meth:`add_segments` of rows whose segments are already assigned (the monitor
        assigns them once per row, ``recent.py``)."""
        if self.segments is None or profile.segments is None or not len(ids):
            return
        self.segments = self.segments + sums_by_segment(
            profile.segments.layout, ids, residuals,
            segment_scales(profile.n_classes, predictions))

    def add_residuals(self, profile: ReferenceProfile, residuals: np.ndarray,
                      losses: np.ndarray | None = None,
                      hits: np.ndarray | None = None,
                      labels: np.ndarray | None = None,
                      probabilities: np.ndarray | None = None) -> None:
        """Add labelled rows' residuals (and a classifier's per-row log losses and correct
        flags, computed from binary residuals when not given)."""
        finite = np.isfinite(residuals)
        r = residuals[finite]
        if profile.residuals is None or not len(r):
            return
        self.residual_counts += _bin_counts(profile.residuals.bins, r, len(self.residual_counts))
        self.residual_positive += float(r[r > 0].sum())
        self.residual_negative += float(-r[r < 0].sum())
        self.residual_squares += float((r * r).sum())
        if self.log_loss_sum is not None and self.correct is not None:
            self.log_loss_sum += float((log_losses(r) if losses is None
                                        else losses[finite]).sum())
            self.correct += int((correct(r) if hits is None else hits[finite] > 0).sum())
        if (self.class_rows is not None and self.class_probabilities is not None
                and labels is not None and probabilities is not None):
            known = np.asarray(labels, dtype=np.float64)[finite]
            p = np.asarray(probabilities, dtype=np.float64)[finite]
            ok = np.isfinite(known) & np.isfinite(p).all(axis=1)
            self.class_rows += np.bincount(known[ok].astype(np.intp),
                                           minlength=len(self.class_rows))
            self.class_probabilities += p[ok].sum(axis=0)
        self.concept_rows += len(r)

    def count(self, derivation: Derivation, new: NewRows) -> bool:
        """Count one ring's new rows (their derived columns reused, not recomputed) and
        move its position on; returns whether anything changed."""
        changed = (self.positions.get(new.ring) != [new.inode, new.head]
                   or new.dropped > 0 or len(new.rows) > 0)
        self.positions[new.ring] = [new.inode, new.head]
        self.dropped_rows += new.dropped
        rows, profile = new.rows, derivation.profile
        if not len(rows):
            return changed
        if new.prefix == InputRows.prefix:
            layout = derivation.inputs
            self.add_inputs(profile, layout.features(rows))
            served = rows[layout.versions(rows) == derivation.number]
            self.add_predictions(profile, layout.predictions(served),
                                 layout.probabilities(served))
            self.add_estimates(served[:, layout.width + ESTIMATE])
        else:
            labels = derivation.feedback
            served = rows[labels.versions(rows) == derivation.number]
            residuals, extra = labels.residuals(served), served[:, labels.width:]
            self.add_residuals(profile, residuals, extra[:, LOG_LOSS], extra[:, CORRECT],
                               labels.labels(served), labels.probabilities(served))
            self.add_segment_ids(profile, extra[:, SEGMENTS:], residuals,
                              labels.predictions(served))
        return True

    # -- persistence: the evaluator writes it, every worker exports it ------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "model_version": self.model_version, "started": self.started,
            "features": {n: {"counts": t.counts.astype(int).tolist(), "numeric": t.numeric,
                             "unseen": t.unseen,
                             "under_distance": t.under_distance,
                             "over_distance": t.over_distance}
                         for n, t in self.features.items()},
            "residuals": {"counts": self.residual_counts.astype(int).tolist(),
                          "positive": self.residual_positive,
                          "negative": self.residual_negative,
                          "squares": self.residual_squares,
                          "log_loss": self.log_loss_sum, "correct": self.correct,
                          "class_rows": _listed(self.class_rows),
                          "class_probabilities": _listed(self.class_probabilities),
                          "class_names": list(self.class_names)},
            "rows": {"data": self.data_rows, "concept": self.concept_rows,
                     "dropped": self.dropped_rows, "prediction": self.prediction_rows},
            "positions": self.positions,
            "predictions": self.prediction_counts.astype(int).tolist(),
            "estimates": {"sum": self.estimate_sum, "rows": self.estimate_rows},
            "segments": None if self.segments is None else self.segments.to_dict(),
            "class_predictions": None if self.class_prediction_counts is None else {
                c: v.astype(int).tolist() for c, v in self.class_prediction_counts.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tally:
        if d.get("format") not in READABLE:
            raise ValueError(f"tally format {d.get('format')} is not one of {READABLE}")
        features = {n: FeatureTally(np.asarray(f["counts"], dtype=np.float64), f["numeric"],
                                    f["unseen"], f["under_distance"], f["over_distance"])
                    for n, f in d["features"].items()}
        r = d["residuals"]
        return cls(d["model_version"], d["started"], features,
                   np.asarray(r["counts"], dtype=np.float64), r["positive"], r["negative"],
                   r["squares"], d["rows"]["data"], d["rows"]["concept"],
                   d["rows"]["dropped"], {k: list(v) for k, v in d["positions"].items()},
                   np.asarray(d["predictions"], dtype=np.float64), d["rows"]["prediction"],
                   float(d["estimates"]["sum"]), int(d["estimates"]["rows"]),
                   SegmentSums.from_dict(d["segments"]) if d.get("segments") else None,
                   None if r.get("log_loss") is None else float(r["log_loss"]),
                   None if r.get("correct") is None else int(r["correct"]),
                   _array(r.get("class_rows")), _array(r.get("class_probabilities")),
                   tuple(r.get("class_names") or ()),
                   None if d.get("class_predictions") is None else {
                       c: np.asarray(v, dtype=np.float64)
                       for c, v in d["class_predictions"].items()})

    def save(self, path: Path) -> None:
        """Atomically: counts and ring positions always change together (not fsynced: the
        pod's state directory does not outlive the pod)."""
        write_atomic(path, json.dumps(self.to_dict(), separators=(",", ":")), durable=False)


def _listed(values: np.ndarray | None) -> list[float] | None:
    return None if values is None else values.tolist()


def _array(values: list[float] | None) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.float64)


def _bin_counts(bins: NumericBins, values: np.ndarray, size: int) -> np.ndarray:
    """Finite values counted per bin (under, K reference bins, over)."""
    return np.bincount(bins.bin_index(values), minlength=size)


def load_tally(path: Path) -> Tally | None:
    try:
        return Tally.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def update_tally(tally: Tally | None, profile: ReferenceProfile, version: str,
                 version_number: int, windows_dir: Path, now: float,
                 estimate: Estimator | None = None, recent: RecentRows | None = None,
                 sizes: Mapping[str, int] | None = None) -> tuple[Tally, bool]:
    """Count the rows that arrived in the rings since the last update.

    ``estimate(X, predictions)`` gives the loss model's per-row estimates (None: the
    version has no loss model); they are summed for the serving version's rows. ``recent``
    (the monitor's copy of the rings' newest rows) reads the rings and derives each row's
    values once; it keeps ``sizes[prefix]`` rows of each ring for the next evaluation.

    A new serving version restarts the counts (its bins differ) but not the ring positions:
    rows are counted once, under the version serving when they are counted. Returns the
    tally and whether anything changed.
    """
    changed = False
    if (tally is None or tally.model_version != version
            or (profile.is_classifier and tally.log_loss_sum is None)
            or (profile.n_classes >= 3 and tally.class_rows is None)
            or (profile.class_predictions is not None
                and tally.class_prediction_counts is None)):
        # A new version, or a classifier's counts from a file without its sums (formats 4
        # and 5): start from zero, so every counter covers the same rows.
        positions = tally.positions if tally is not None else {}
        tally = Tally.empty(profile, version, now)
        tally.positions = positions
        changed = True
    derivation = Derivation(profile, version, version_number, estimate)
    seen = set()
    for new in (RecentRows() if recent is None else recent).update(
            windows_dir, derivation, tally.positions, sizes or {}):
        seen.add(new.ring)
        changed = tally.count(derivation, new) or changed
    for gone in set(tally.positions) - seen:  # pruned rings of dead workers
        del tally.positions[gone]
        changed = True
    return tally, changed


def _family(family: names.Family, documentation: str
            ) -> CounterMetricFamily | GaugeMetricFamily:
    """An empty family with the contract's name and labels."""
    kind = CounterMetricFamily if family.counter else GaugeMetricFamily
    return kind(family.name, documentation, labels=list(family.labels))


def tally_metrics(tally: Tally) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """The tally as Prometheus counters, every series labelled with the serving version."""
    v = tally.model_version
    bins = _family(
        names.FEATURE_BIN,
        "Rows per reference bin and feature since this version began serving (mergeable: sum by "
        "(feature, bin) of increase() over replicas is the window's histogram). Numerical bins: 0 "
        "under the reference range, 1..K reference quantile bins, K+1 over it; categorical bins: "
        "level codes, -1 unseen.")
    outside = _family(
        names.FEATURE_OUTSIDE,
        "Summed distance of out-of-range values from the reference range's ends, by feature and "
        "side.")
    for name, t in tally.features.items():
        for b, c in enumerate(t.counts.tolist()):
            bins.add_metric([name, str(b), v], c)
        if t.unseen:
            bins.add_metric([name, str(names.UNSEEN_BIN), v], float(t.unseen))
        if t.numeric:
            outside.add_metric([name, names.UNDER, v], t.under_distance)
            outside.add_metric([name, names.OVER, v], t.over_distance)
    yield bins
    yield outside
    residual_bins = _family(
        names.RESIDUAL_BIN,
        "Labelled rows scored by this version per held-out residual bin (0 under, 1..K, K+1 over).")
    for b, c in enumerate(tally.residual_counts.tolist()):
        residual_bins.add_metric([str(b), v], c)
    yield residual_bins
    sums = _family(
        names.RESIDUAL_SUM,
        "Summed residuals (actual - predicted) of labelled rows, by sign (negative: absolute).")
    sums.add_metric([names.POSITIVE, v], tally.residual_positive)
    sums.add_metric([names.NEGATIVE, v], tally.residual_negative)
    yield sums
    squares = _family(
        names.RESIDUAL_SQUARES,
        "Summed squared residuals of labelled rows.")
    squares.add_metric([v], tally.residual_squares)
    yield squares
    if tally.log_loss_sum is not None and tally.correct is not None:  # a classifier
        log_loss = _family(
            names.RESIDUAL_LOG_LOSS,
            "A classifier's summed log loss of labelled rows, -log P(the class that happened) "
            "each (divided by window_rows{kind=\"concept\"}: the window's log loss).")
        log_loss.add_metric([v], tally.log_loss_sum)
        yield log_loss
        right = _family(
            names.RESIDUAL_CORRECT,
            "A classifier's labelled rows whose predicted class (the most probable; binary: "
            "classes[1] when p > 0.5) was right.")
        right.add_metric([v], float(tally.correct))
        yield right
    if tally.class_rows is not None and tally.class_probabilities is not None:
        yield from _class_metrics(tally, v)
    rows = _family(
        names.WINDOW_ROWS,
        "Rows counted into the windows' counters, by kind (data: inputs; concept: labelled rows "
        "scored by this version).")
    rows.add_metric([names.DATA, v], float(tally.data_rows))
    rows.add_metric([names.CONCEPT, v], float(tally.concept_rows))
    if tally.estimate_rows:
        rows.add_metric([names.PERFORMANCE, v], float(tally.estimate_rows))
        estimates = _family(
            names.ESTIMATED_SQUARED_ERROR,
            "Summed squared errors of this version's predictions as the loss model estimates them "
            "before labels (divided by window_rows{kind=\"performance\"}: the window's estimated "
            "MSE).")
        estimates.add_metric([v], tally.estimate_sum)
        yield estimates
    if len(tally.prediction_counts):
        rows.add_metric([names.PREDICTION, v], float(tally.prediction_rows))
        predictions = _family(
            names.PREDICTION_BIN,
            "This version's predictions per bin of its held-out predictions (0 under, 1..K, K+1 "
            "over): the prediction window's histogram, mergeable like the features'.")
        for b, c in enumerate(tally.prediction_counts.tolist()):
            predictions.add_metric([str(b), v], c)
        yield predictions
        if tally.class_prediction_counts is not None:
            by_class = _family(
                names.CLASS_PREDICTION_BIN,
                "A multiclass model's predicted probability of each class per bin of its "
                "held-out probabilities of that class (0 under, 1..K, K+1 over): each "
                "class's prediction window.")
            for name, counts in tally.class_prediction_counts.items():
                for b, c in enumerate(counts.tolist()):
                    by_class.add_metric([name, str(b), v], c)
            yield by_class
    yield rows
    if tally.segments is not None:
        yield from _segment_metrics(tally.segments, v)
    dropped = _family(
        names.DROPPED_ROWS,
        "Rows overwritten in a worker's ring before they were counted (raise the ring capacity if "
        "this grows).")
    dropped.add_metric([v], float(tally.dropped_rows))
    yield dropped
    started = _family(
        names.COUNTERS_START,
        "When the window counters of this version started from zero (a change means a reset).")
    started.add_metric([v], tally.started)
    yield started


def _class_metrics(tally: Tally, v: str) -> Iterator[CounterMetricFamily]:
    """A multiclass model's one-vs-rest calibration sums, by class name."""
    assert tally.class_rows is not None and tally.class_probabilities is not None
    rows = _family(names.CLASS_ROWS, "A multiclass model's labelled rows by the class that "
                   "happened (the observed rate of each class is these over "
                   "window_rows{kind=\"concept\"}).")
    probability = _family(names.CLASS_PROBABILITY, "A multiclass model's summed probability "
                          "of each class over its labelled rows (over the same count: the "
                          "predicted rate; observed minus predicted is its calibration).")
    for name, n, p in zip(tally.class_names, tally.class_rows.tolist(),
                          tally.class_probabilities.tolist(), strict=True):
        rows.add_metric([name, v], n)
        probability.add_metric([name, v], p)
    yield rows
    yield probability


def _segment_metrics(sums: SegmentSums, version: str) -> Iterator[CounterMetricFamily]:
    """Labelled rows' residual sums per segment (segment: its number in the version's
    layout, as GET /reference lists it): what the operator locates concept drift with."""
    families = {
        "n": _family(
            names.SEGMENT_ROWS,
            "Labelled rows scored by this version, per feature segment (category level, or "
            "quantile band of a numerical feature)."),
        "squares": _family(
            names.SEGMENT_RESIDUAL_SQUARES,
            "Summed squared residuals per feature segment."),
        "predictions": _family(
            names.SEGMENT_PREDICTIONS,
            "Summed |prediction| per feature segment (what a segment's shift is relative to)."),
    }
    residuals = _family(
        names.SEGMENT_RESIDUAL_SUM,
        "Summed residuals per feature segment, by sign (negative: absolute).")
    for name, f in sums.features.items():
        for i in range(len(f.n)):
            segment = str(i)
            for key, family in families.items():
                family.add_metric([name, segment, version], float(getattr(f, key)[i]))
            residuals.add_metric([name, segment, names.POSITIVE, version], float(f.positive[i]))
            residuals.add_metric([name, segment, names.NEGATIVE, version], float(f.negative[i]))
    yield from families.values()
    yield residuals

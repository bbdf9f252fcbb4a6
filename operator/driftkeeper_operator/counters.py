"""A replica's window counters, read from its /metrics, and windows made from them.

Every model pod exports cumulative counters of what its windows saw (``serving/tally.py``):
rows per reference bin and feature, labelled rows per residual bin, residual sums (and a
classifier's summed log loss and correct rows; a multiclass model's rows and summed
probability per class). The
difference of two readings of one replica is that replica's window between them, and the
windows of all replicas add up (the drift engine's mergeable windows), so the operator
judges the whole Deployment as one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from driftkeeper.contract import names
from driftkeeper.contract.text import read_samples
from driftkeeper.drift import stats
from driftkeeper.drift.performance import EstimateWindow
from driftkeeper.drift.profile import NumericalProfile, ReferenceProfile
from driftkeeper.drift.segments import SUMS, FeatureSums, SegmentSums
from driftkeeper.drift.windows import DataWindow, ResidualWindow


@dataclass(frozen=True)
class Counters:
    """One replica's cumulative counters at one moment (or a difference of two readings)."""

    version: str | None  # the model version the window counters belong to
    started: float | None  # when they started from zero
    features: dict[str, np.ndarray] = field(default_factory=dict)  # feature -> count by bin
    unseen: dict[str, float] = field(default_factory=dict)  # categorical codes not in schema
    outside: dict[str, tuple[float, float]] = field(default_factory=dict)  # under, over
    residual_bins: np.ndarray = field(default_factory=lambda: np.zeros(0))
    residual_positive: float = 0.0
    residual_negative: float = 0.0
    residual_squares: float = 0.0
    data_rows: float = 0.0
    concept_rows: float = 0.0
    labels: float = 0.0  # every labelled row the replica accepted (driftkeeper_feedback_total)
    prediction_bins: np.ndarray = field(default_factory=lambda: np.zeros(0))
    prediction_rows: float = 0.0
    estimate_sum: float = 0.0  # the loss model's summed squared-error estimates
    estimate_rows: float = 0.0
    # Labelled rows' sums per segment: (feature, sum name) -> value by segment number.
    segments: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    # A classifier's summed log loss and correct rows (None: not exported, a regression).
    log_loss_sum: float | None = None
    correct: float | None = None
    # A multiclass model's class name -> (labelled rows of that class, summed probability
    # of it): one-vs-rest calibration (None: not exported, another model).
    classes: dict[str, tuple[float, float]] | None = None
    # A multiclass model's probability of each class, counted per bin: class -> by bin.
    class_prediction_bins: dict[str, np.ndarray] = field(default_factory=dict)

    def same_series(self, other: Counters) -> bool:
        """Both readings continue the same counters (no promotion, no restart between)."""
        return self.version == other.version and self.started == other.started

    def rows(self, kind: str) -> float:
        return self.data_rows if kind == "data" else self.concept_rows

    def minus(self, older: Counters | None) -> Counters:
        """What was counted since ``older``; everything, if it belongs to other counters
        (they were reset in between: a promotion or a restart)."""
        if older is None or not self.same_series(older):
            return self
        zero = (0.0, 0.0)
        return Counters(
            self.version, self.started,
            {f: _sub(b, older.features.get(f)) for f, b in self.features.items()},
            {f: max(u - older.unseen.get(f, 0.0), 0.0) for f, u in self.unseen.items()},
            {f: (u - older.outside.get(f, zero)[0], o - older.outside.get(f, zero)[1])
             for f, (u, o) in self.outside.items()},
            _sub(self.residual_bins, older.residual_bins),
            self.residual_positive - older.residual_positive,
            self.residual_negative - older.residual_negative,
            self.residual_squares - older.residual_squares,
            self.data_rows - older.data_rows, self.concept_rows - older.concept_rows,
            self.labels - older.labels, _sub(self.prediction_bins, older.prediction_bins),
            self.prediction_rows - older.prediction_rows,
            max(self.estimate_sum - older.estimate_sum, 0.0),
            max(self.estimate_rows - older.estimate_rows, 0.0),
            {k: _sub(v, older.segments.get(k)) for k, v in self.segments.items()},
            _since(self.log_loss_sum, older.log_loss_sum), _since(self.correct, older.correct),
            _classes_since(self.classes, older.classes),
            {c: _sub(b, older.class_prediction_bins.get(c))
             for c, b in self.class_prediction_bins.items()})


def _classes_since(new: dict[str, tuple[float, float]] | None,
                   old: dict[str, tuple[float, float]] | None
                   ) -> dict[str, tuple[float, float]] | None:
    """Each class's increase, unknown unless both readings have every class."""
    if new is None or old is None or set(new) != set(old):
        return None
    return {c: (max(n - old[c][0], 0.0), max(p - old[c][1], 0.0))
            for c, (n, p) in new.items()}


def _since(new: float | None, old: float | None) -> float | None:
    """A counter's increase, unknown (None) unless both readings have it."""
    return None if new is None or old is None else max(new - old, 0.0)


def _sum(values: list[float | None]) -> float | None:
    """A sum over replicas, unknown (None) unless every replica has it."""
    return None if not values or any(v is None for v in values) else sum(values)  # type: ignore[misc]


def _add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray:
    a = np.zeros(0) if a is None else a
    b = np.zeros(0) if b is None else b
    out = np.zeros(max(len(a), len(b)))
    out[:len(a)] += a
    out[:len(b)] += b
    return out


def _sub(new: np.ndarray, old: np.ndarray | None) -> np.ndarray:
    return np.maximum(_add(new, None if old is None else -old)[:len(new)], 0.0)


def bins_array(bins: dict[int, float]) -> np.ndarray:
    """Counts keyed by bin number as a dense array indexed by bin."""
    out = np.zeros(max(bins, default=-1) + 1)
    for b, c in bins.items():
        out[b] = c
    return out


_READ = frozenset(f.sample for f in names.WINDOW_FAMILIES)
_SEGMENT_FIELDS = {f.sample: key for f, key in names.SEGMENT_SUMS.items()}


def parse_counters(text: str) -> Counters:
    """A replica's counters from its Prometheus text exposition (the decoder of
    ``serving/tally.py``'s ``tally_metrics``). Raises ValueError on unreadable text."""
    features: dict[str, dict[int, float]] = defaultdict(dict)
    unseen: dict[str, float] = {}
    outside: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    residual_bins: dict[int, float] = {}
    prediction_bins: dict[int, float] = {}
    sums = {names.POSITIVE: 0.0, names.NEGATIVE: 0.0}
    rows: dict[str, float] = {}
    version = started = None
    squares = labels = estimates = 0.0
    log_loss = correct = None
    classes: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    class_predictions: dict[str, dict[int, float]] = defaultdict(dict)
    segments: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for name, lab, value in read_samples(text, _READ):
        if name == names.FEATURE_BIN.sample:
            b = int(lab[names.BIN])
            if b == names.UNSEEN_BIN:
                unseen[lab[names.FEATURE]] = value
            else:
                features[lab[names.FEATURE]][b] = value
        elif name == names.FEATURE_OUTSIDE.sample:
            outside[lab[names.FEATURE]][0 if lab[names.SIDE] == names.UNDER else 1] = value
        elif name == names.RESIDUAL_BIN.sample:
            residual_bins[int(lab[names.BIN])] = value
        elif name == names.RESIDUAL_SUM.sample:
            sums[lab[names.SIGN]] = value
        elif name == names.RESIDUAL_SQUARES.sample:
            squares = value
        elif name == names.RESIDUAL_LOG_LOSS.sample:
            log_loss = value
        elif name == names.RESIDUAL_CORRECT.sample:
            correct = value
        elif name == names.CLASS_ROWS.sample:
            classes[lab[names.CLASS]][0] = value
        elif name == names.CLASS_PROBABILITY.sample:
            classes[lab[names.CLASS]][1] = value
        elif name == names.CLASS_PREDICTION_BIN.sample:
            class_predictions[lab[names.CLASS]][int(lab[names.BIN])] = value
        elif name == names.PREDICTION_BIN.sample:
            prediction_bins[int(lab[names.BIN])] = value
        elif name == names.ESTIMATED_SQUARED_ERROR.sample:
            estimates = value
        elif name in _SEGMENT_FIELDS:
            segments[(lab[names.FEATURE], _SEGMENT_FIELDS[name])][int(lab[names.SEGMENT])] = value
        elif name == names.SEGMENT_RESIDUAL_SUM.sample:
            segments[(lab[names.FEATURE], lab[names.SIGN])][int(lab[names.SEGMENT])] = value
        elif name == names.WINDOW_ROWS.sample:
            version = lab[names.VERSION]
            rows[lab[names.KIND]] = value
        elif name == names.COUNTERS_START.sample:
            started = value
        elif name == names.FEEDBACK.sample:
            labels = value
    return Counters(version, started, {f: bins_array(b) for f, b in features.items()}, unseen,
                    {f: (u, o) for f, (u, o) in outside.items()}, bins_array(residual_bins),
                    sums[names.POSITIVE], sums[names.NEGATIVE], squares,
                    rows.get(names.DATA, 0.0), rows.get(names.CONCEPT, 0.0), labels,
                    bins_array(prediction_bins), rows.get(names.PREDICTION, 0.0), estimates,
                    rows.get(names.PERFORMANCE, 0.0),
                    {k: bins_array(v) for k, v in segments.items()}, log_loss, correct,
                    {c: (n, p) for c, (n, p) in classes.items()} if classes else None,
                    {c: bins_array(b) for c, b in class_predictions.items()})


def total(parts: list[Counters]) -> Counters:
    """The sum of several replicas' windows (of the same model version)."""
    features: dict[str, np.ndarray] = {}
    unseen: dict[str, float] = defaultdict(float)
    outside: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    residual_bins = prediction_bins = np.zeros(0)
    segments: dict[tuple[str, str], np.ndarray] = {}
    class_predictions: dict[str, np.ndarray] = {}
    for p in parts:
        for c, b in p.class_prediction_bins.items():
            class_predictions[c] = _add(class_predictions.get(c), b)
        for k, v in p.segments.items():
            segments[k] = _add(segments.get(k), v)
        for f, bins in p.features.items():
            features[f] = _add(features.get(f), bins)
        for f, u in p.unseen.items():
            unseen[f] += u
        for f, (u, o) in p.outside.items():
            outside[f][0] += u
            outside[f][1] += o
        residual_bins = _add(residual_bins, p.residual_bins)
        prediction_bins = _add(prediction_bins, p.prediction_bins)
    version = parts[0].version if parts else None
    return Counters(version, None, features, dict(unseen),
                    {f: (u, o) for f, (u, o) in outside.items()}, residual_bins,
                    sum(p.residual_positive for p in parts),
                    sum(p.residual_negative for p in parts),
                    sum(p.residual_squares for p in parts), sum(p.data_rows for p in parts),
                    sum(p.concept_rows for p in parts), sum(p.labels for p in parts),
                    prediction_bins, sum(p.prediction_rows for p in parts),
                    sum(p.estimate_sum for p in parts), sum(p.estimate_rows for p in parts),
                    segments, _sum([p.log_loss_sum for p in parts]),
                    _sum([p.correct for p in parts]), _classes_total(parts),
                    class_predictions)


def _classes_total(parts: list[Counters]) -> dict[str, tuple[float, float]] | None:
    """Every class's sums over replicas, unknown unless every replica has them."""
    if not parts or any(p.classes is None for p in parts):
        return None
    out: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for p in parts:
        assert p.classes is not None
        for c, (n, q) in p.classes.items():
            out[c][0] += n
            out[c][1] += q
    return {c: (n, q) for c, (n, q) in out.items()}


def _dense(bins: np.ndarray | None, size: int) -> np.ndarray:
    """Counts by bin, exactly ``size`` long (bins the profile does not have are dropped)."""
    out = np.zeros(size)
    if bins is not None:
        n = min(size, len(bins))
        out[:n] = bins[:n]
    return out


def data_window_of(profile: ReferenceProfile, counts: Counters) -> DataWindow:
    """The drift engine's data window from summed counters."""
    features: dict[str, stats.NumericCounts | stats.CategoricalCounts] = {}
    for name, prof in profile.features.items():
        bins = counts.features.get(name)
        if isinstance(prof, NumericalProfile):
            edges = prof.bins.edges
            dense = _dense(bins, len(edges) + 1)
            under, over = counts.outside.get(name, (0.0, 0.0))
            # The counters hold distances beyond the range ends; the window wants sums.
            features[name] = stats.NumericCounts(
                dense, under_sum=float(dense[0] * edges[0] - under),
                over_sum=float(dense[-1] * edges[-1] + over))
        else:
            features[name] = stats.CategoricalCounts(_dense(bins, len(prof.levels)),
                                                     unseen=int(counts.unseen.get(name, 0.0)))
    return DataWindow(features, round(counts.data_rows))


def residual_window_of(profile: ReferenceProfile, counts: Counters) -> ResidualWindow:
    """The drift engine's labelled window from summed counters (a classifier's log loss
    and correct rows, and a multiclass model's class sums, when every replica exported
    them)."""
    if profile.residuals is None:
        raise ValueError("the reference profile has no held-out residuals")
    dense = _dense(counts.residual_bins, len(profile.residuals.bins.edges) + 1)
    classifier = profile.is_classifier
    classes = profile.schema.target.classes
    known = (profile.n_classes >= 3 and counts.classes is not None
             and set(counts.classes) == set(classes))
    return ResidualWindow(stats.NumericCounts(dense), round(dense.sum()),
                          counts.residual_positive - counts.residual_negative,
                          counts.residual_squares,
                          counts.log_loss_sum if classifier else None,
                          None if not classifier or counts.correct is None
                          else round(counts.correct),
                          np.array([counts.classes[c][0] for c in classes]) if known else None,
                          np.array([counts.classes[c][1] for c in classes]) if known else None)


def class_prediction_windows_of(profile: ReferenceProfile, counts: Counters
                                ) -> dict[str, stats.NumericCounts] | None:
    """The fleet's window of each class's probability (None: not a multiclass profile)."""
    if profile.class_predictions is None:
        return None
    return {c: stats.NumericCounts(_dense(counts.class_prediction_bins.get(c),
                                          len(p.bins.edges) + 1))
            for c, p in profile.class_predictions.items()}


def prediction_window_of(profile: ReferenceProfile,
                         counts: Counters) -> stats.NumericCounts | None:
    """The fleet's prediction window from summed counters (None: the version has no
    prediction reference)."""
    if profile.predictions is None:
        return None
    return stats.NumericCounts(_dense(counts.prediction_bins,
                                      len(profile.predictions.bins.edges) + 1))


def estimate_window_of(profile: ReferenceProfile, counts: Counters) -> EstimateWindow | None:
    """The fleet's estimated-performance window from summed counters (None: the version
    has no loss model)."""
    if profile.performance is None:
        return None
    return EstimateWindow(round(counts.estimate_rows), counts.estimate_sum)


def segment_window_of(profile: ReferenceProfile, counts: Counters) -> SegmentSums | None:
    """The fleet's labelled rows per segment from summed counters (None: the version has no
    segment reference)."""
    if profile.segments is None:
        return None
    features = {}
    for feat in profile.segments.layout:
        arrays = [_dense(counts.segments.get((feat.name, key)), feat.size) for key in SUMS]
        features[feat.name] = FeatureSums(np.rint(arrays[0]).astype(np.int64), *arrays[1:])
    return SegmentSums(features)

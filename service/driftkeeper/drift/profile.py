"""The reference profile: everything the monitor needs to know about a model's reference data.

Built once per model version at training time (never per evaluation): quantile bins and
counts of numerical features, level counts of categoricals, the held-out residual
distribution, and calibrated null tables for ``auto`` thresholds. Stored as JSON next to the
model, so it is readable, diffable and loads without pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..schema import FeatureSchema
from . import calibration, stats
from .calibration import NullTable
from .performance import PerformanceProfile, build_performance_profile
from .probability import correct, log_losses, segment_scales
from .segments import SegmentProfile, build_segment_profile, segment_matrix

PROFILE_FORMAT = 3
"""Bumped whenever the stored profile changes shape; older profiles need a retrain."""

DEFAULT_BINS = 100
"""Quantile bins per numerical feature: the KS error bound in binned mode is about 1/bins."""

PSI_GROUPS = 10

PREDICTION = "prediction"
"""The name the prediction profile and its verdict go by."""


@dataclass(frozen=True)
class NumericalProfile:
    name: str
    bins: stats.NumericBins
    mean: float
    null: dict[str, NullTable]
    values: np.ndarray | None = None  # raw sorted reference, kept in memory only (exact mode)
    kind: str = "numerical"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "edges": self.bins.edges.tolist(),
                "counts": self.bins.counts.astype(int).tolist(), "std": self.bins.std,
                "mean": self.mean, "psi_groups": self.bins.psi_groups.astype(int).tolist(),
                "null": {m: t.to_dict() for m, t in self.null.items()}}

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> NumericalProfile:
        bins = stats.NumericBins(edges=np.asarray(d["edges"], dtype=np.float64),
                                 counts=np.asarray(d["counts"], dtype=np.float64),
                                 std=float(d["std"]),
                                 psi_groups=np.asarray(d["psi_groups"], dtype=np.int64))
        return cls(name, bins, float(d["mean"]),
                   {m: NullTable.from_dict(t) for m, t in d["null"].items()})


@dataclass(frozen=True)
class CategoricalProfile:
    name: str
    levels: tuple[str, ...]
    counts: np.ndarray
    null: dict[str, NullTable]
    kind: str = "categorical"

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "levels": list(self.levels),
                "counts": self.counts.astype(int).tolist(),
                "null": {m: t.to_dict() for m, t in self.null.items()}}

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> CategoricalProfile:
        return cls(name, tuple(d["levels"]), np.asarray(d["counts"], dtype=np.float64),
                   {m: NullTable.from_dict(t) for m, t in d["null"].items()})


@dataclass(frozen=True)
class ResidualProfile:
    """Held-out residuals (actual - predicted) measured at training time: the yardstick of
    concept drift. Training rows would not do: the model has fitted them."""

    bins: stats.NumericBins
    n: int
    rmse: float
    mean: float
    null: dict[str, NullTable]
    # A classifier's held-out log loss and accuracy (drift/probability.py); None for a
    # regression.
    log_loss: float | None = None
    accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"edges": self.bins.edges.tolist(), "counts": self.bins.counts.astype(int).tolist(),
               "std": self.bins.std, "psi_groups": self.bins.psi_groups.astype(int).tolist(),
               "n": self.n, "rmse": self.rmse, "mean": self.mean,
               "null": {m: t.to_dict() for m, t in self.null.items()}}
        if self.log_loss is not None:
            out.update(log_loss=self.log_loss, accuracy=self.accuracy)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResidualProfile:
        bins = stats.NumericBins(edges=np.asarray(d["edges"], dtype=np.float64),
                                 counts=np.asarray(d["counts"], dtype=np.float64),
                                 std=float(d["std"]),
                                 psi_groups=np.asarray(d["psi_groups"], dtype=np.int64))
        return cls(bins, int(d["n"]), float(d["rmse"]), float(d["mean"]),
                   {m: NullTable.from_dict(t) for m, t in d["null"].items()},
                   d.get("log_loss"), d.get("accuracy"))


FeatureProfile = NumericalProfile | CategoricalProfile


@dataclass(frozen=True)
class ReferenceProfile:
    """Per-feature reference summaries plus the residual reference, in schema order.

    ``predictions`` profiles the model's predictions on held-out rows: the yardstick of
    prediction drift (None for profiles written before it existed: no prediction verdict)."""

    schema: FeatureSchema
    features: dict[str, FeatureProfile]
    n_reference: int
    residuals: ResidualProfile | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    predictions: NumericalProfile | None = None
    performance: PerformanceProfile | None = None  # None: no loss model, no estimates
    # Held-out encoded rows the impact of a feature's drift is measured on (drift/impact.py).
    sample: np.ndarray | None = None
    # Held-out residuals per segment (drift/segments.py): where concept drift lives.
    segments: SegmentProfile | None = None
    # A multiclass model's held-out probability of each class, by class name: each is a
    # yardstick of prediction drift beside ``predictions`` (their one-number summary).
    class_predictions: dict[str, NumericalProfile] | None = None

    @property
    def is_classifier(self) -> bool:
        """A classifier's version, as its schema's target says: its residuals are y - p,
        and its windows also sum log loss and correct rows."""
        return self.schema.target.is_classification

    @property
    def n_classes(self) -> int:
        """The classifier's number of classes (0 for a regression): 2 keeps binary
        residuals y - p, 3 or more the one-number forms of ``probability.py``."""
        return self.schema.target.n_classes

    def to_dict(self) -> dict[str, Any]:
        return {"format": PROFILE_FORMAT, "schema": self.schema.to_dict(),
                "n_reference": self.n_reference,
                "features": {n: f.to_dict() for n, f in self.features.items()},
                "residuals": self.residuals.to_dict() if self.residuals else None,
                "predictions": self.predictions.to_dict() if self.predictions else None,
                "performance": self.performance.to_dict() if self.performance else None,
                "sample": None if self.sample is None else self.sample.tolist(),
                "segments": self.segments.to_dict() if self.segments else None,
                "class_predictions": None if self.class_predictions is None else {
                    c: p.to_dict() for c, p in self.class_predictions.items()},
                "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReferenceProfile:
        if d.get("format") != PROFILE_FORMAT:
            raise ValueError(f"reference profile format {d.get('format')} is not the "
                             f"supported {PROFILE_FORMAT}; retrain the model")
        features: dict[str, FeatureProfile] = {}
        for name, fd in d["features"].items():
            features[name] = (NumericalProfile.from_dict(name, fd) if fd["kind"] == "numerical"
                              else CategoricalProfile.from_dict(name, fd))
        residuals = ResidualProfile.from_dict(d["residuals"]) if d.get("residuals") else None
        predictions = (NumericalProfile.from_dict(PREDICTION, d["predictions"])
                       if d.get("predictions") else None)
        performance = (PerformanceProfile.from_dict(d["performance"])
                       if d.get("performance") else None)
        sample = (np.asarray(d["sample"], dtype=np.float64).reshape(-1, len(features))
                  if d.get("sample") else None)
        segments = SegmentProfile.from_dict(d["segments"]) if d.get("segments") else None
        by_class = ({c: NumericalProfile.from_dict(c, p)
                     for c, p in d["class_predictions"].items()}
                    if d.get("class_predictions") else None)
        return cls(FeatureSchema.from_dict(d["schema"]), features, int(d["n_reference"]),
                   residuals, d.get("meta", {}), predictions, performance, sample, segments,
                   by_class)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), separators=(",", ":")))

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        return cls.from_dict(json.loads(Path(path).read_text()))


def numeric_bins(values: np.ndarray, n_bins: int = DEFAULT_BINS) -> stats.NumericBins:
    """Distinct reference quantiles as edges (ties merge bins), with counts and PSI groups."""
    values = np.asarray(values, dtype=np.float64)
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, n_bins + 1)))
    if len(edges) == 1:  # a constant feature: one bin holding everything
        edges = np.array([edges[0], edges[0]])
    bins = stats.NumericBins(edges=edges, counts=np.zeros(len(edges) + 1), std=0.0,
                             psi_groups=np.array([0]))
    counts = bins.count(values).counts
    cum = np.cumsum(counts) / counts.sum()
    # PSI groups: start a new group each time the cumulative share passes a decile.
    starts = np.searchsorted(cum, np.linspace(0, 1, PSI_GROUPS + 1)[1:-1], side="left") + 1
    groups = np.unique(np.concatenate([[0], starts[starts < len(counts)]]))
    return stats.NumericBins(edges=edges, counts=counts, std=float(np.std(values)),
                             psi_groups=groups.astype(np.int64))


def _categorical_statistics(counts: np.ndarray) -> dict[str, Any]:
    return {name: (lambda c, f=m.categorical_batch: f(counts, c))
            for name, m in stats.METHODS.items() if m.categorical_batch is not None}


def build_profile(schema: FeatureSchema, reference: np.ndarray,
                  residuals: np.ndarray | None = None, *, n_bins: int = DEFAULT_BINS,
                  seed: int = 0, trials: int = calibration.TRIALS,
                  keep_values: bool = False,
                  predictions: np.ndarray | None = None,
                  estimates: np.ndarray | None = None,
                  sample: np.ndarray | None = None,
                  heldout: np.ndarray | None = None,
                  measures: tuple[np.ndarray, np.ndarray] | None = None,
                  heldout_labels: np.ndarray | None = None,
                  probabilities: np.ndarray | None = None) -> ReferenceProfile:
    """Profile an encoded reference matrix (rows x schema features), held-out residuals,
    the model's held-out predictions and the loss model's estimates on the same rows
    (``heldout``: those rows, encoded, which give the residuals per segment; ``measures``:
    their log losses and correct flags, which a multiclass residual does not give;
    ``heldout_labels``: their class indices, which a multiclass model's segments need;
    ``probabilities``: a multiclass model's (rows, K) held-out probabilities).

    ``keep_values`` keeps the sorted raw numerics in memory for exact-mode statistics.
    """
    rng = np.random.default_rng(seed)
    numerical = {feat.name: reference[:, j] for j, feat in enumerate(schema.features)
                 if feat.kind == "numerical"}
    calibrated = numerical_profiles(numerical, rng, n_bins, trials, keep_values)
    features: dict[str, FeatureProfile] = {}
    for j, feat in enumerate(schema.features):
        if feat.kind == "numerical":
            features[feat.name] = calibrated[feat.name]
        else:
            counts = stats.count_categories(reference[:, j], len(feat.levels)).counts
            null = calibration.calibrate(counts, _categorical_statistics(counts), rng,
                                         trials=trials)
            features[feat.name] = CategoricalProfile(feat.name, feat.levels, counts, null)
    residual_profile = None
    if residuals is not None:
        residual_profile = build_residual_profile(residuals, rng, n_bins, trials,
                                                  schema.target.is_classification, measures,
                                                  log_loss_test=schema.target.n_classes >= 3)
    prediction_profile = None
    if predictions is not None:
        prediction_profile = numerical_profile(PREDICTION, np.asarray(predictions, np.float64),
                                               rng, n_bins, trials, keep_values)
    by_class = None
    if probabilities is not None and schema.target.n_classes >= 3:
        p = np.asarray(probabilities, dtype=np.float64).reshape(-1, schema.target.n_classes)
        by_class = numerical_profiles({c: p[:, k] for k, c in enumerate(schema.target.classes)},
                                      rng, n_bins, trials, keep_values)
    performance = None
    if estimates is not None and residuals is not None:
        performance = build_performance_profile(estimates, residuals, rng, trials)
    segments = None
    if heldout is not None and residuals is not None and predictions is not None:
        segments = build_segment_profile(
            schema, segment_matrix(heldout, heldout_labels if schema.target.n_classes >= 3
                                   else None),
            residuals, segment_scales(schema.target.n_classes, predictions))
    return ReferenceProfile(schema, features, len(reference), residual_profile,
                            meta={"bins": n_bins, "calibration_trials": trials, "seed": seed},
                            predictions=prediction_profile, performance=performance,
                            sample=None if sample is None else np.asarray(sample, np.float64),
                            segments=segments, class_predictions=by_class)


def numerical_profile(name: str, values: np.ndarray, rng: np.random.Generator, n_bins: int,
                      trials: int, keep_values: bool = False) -> NumericalProfile:
    """Bins, mean and calibrated null tables of one numerical column (a feature, or the
    model's predictions)."""
    return numerical_profiles({name: values}, rng, n_bins, trials, keep_values)[name]


def numerical_profiles(columns: dict[str, np.ndarray], rng: np.random.Generator, n_bins: int,
                       trials: int, keep_values: bool = False) -> dict[str, NumericalProfile]:
    """``numerical_profile`` of several columns, calibrated together wherever their binned
    reference shares are the same (continuous columns of one table: equal-frequency bins
    over the same rows), which is most of a wide table: one set of null draws per group,
    not per column."""
    binned: dict[str, tuple[np.ndarray, stats.NumericBins]] = {}
    groups: dict[bytes, list[str]] = {}
    for name, values in columns.items():
        col = values[np.isfinite(values)]
        bins = numeric_bins(col, n_bins)
        binned[name] = (col, bins)
        key = bins.counts.astype(np.float64).tobytes() + b"|" + bins.psi_groups.tobytes()
        groups.setdefault(key, []).append(name)
    profiles: dict[str, NumericalProfile] = {}
    for names in groups.values():  # in the columns' order of first appearance
        refs = [binned[name][1] for name in names]
        statistics = {method: (lambda c, m=m, r=refs: stats.members_scores(m, r, c))
                      for method, m in stats.METHODS.items() if m.numeric_batch is not None}
        nulls = calibration.calibrate_members(refs[0].counts, statistics, len(names), rng,
                                              trials=trials)
        for name, null in zip(names, nulls, strict=True):
            col, bins = binned[name]
            profiles[name] = NumericalProfile(name, bins, float(col.mean()), null,
                                              values=np.sort(col) if keep_values else None)
    return {name: profiles[name] for name in columns}


def build_residual_profile(residuals: np.ndarray, rng: np.random.Generator,
                           n_bins: int = DEFAULT_BINS,
                           trials: int = calibration.TRIALS,
                           classification: bool = False,
                           measures: tuple[np.ndarray, np.ndarray] | None = None,
                           log_loss_test: bool = False) -> ResidualProfile:
    """Bins, moments and null tables of held-out residuals (and a classifier's log loss
    and accuracy: from ``measures``, the rows' log losses and correct flags, for a
    classifier of K >= 3 classes, whose residual alone does not give them).

    The residual KS null comes from multinomial draws like the features'; the RMSE ratio and
    the bias come from a bootstrap of the residuals themselves, because their spread depends
    on the heavy tails (diamond residuals have kurtosis ~20) that bins would flatten.
    """
    r = np.asarray(residuals, dtype=np.float64)
    losses, hits = (measures if measures is not None else
                    (log_losses(r), correct(r)) if classification else (None, None))
    bins = numeric_bins(r, n_bins)
    null = calibration.calibrate(bins.counts, {"ks": lambda c: stats.ks_binned_scores(bins, c)},
                                 rng, trials=trials)
    null.update(_bootstrap_rmse_bias(r, rng, max(trials // 10, 500)))
    if log_loss_test and losses is not None:
        null["log_loss"] = _bootstrap_log_loss(np.asarray(losses, dtype=np.float64), rng,
                                               max(trials // 10, 500))
    return ResidualProfile(bins=bins, n=len(r), rmse=float(np.sqrt(np.mean(r**2))),
                           mean=float(r.mean()), null=null,
                           log_loss=float(losses.mean()) if losses is not None else None,
                           accuracy=float(hits.mean()) if hits is not None else None)


def _bootstrap_log_loss(losses: np.ndarray, rng: np.random.Generator, trials: int,
                        chunk_cells: int = 4_000_000) -> NullTable:
    """Null quantiles of the relative log-loss increase by window size (a multiclass
    model's own concept test), by the same two-sample bootstrap as the RMSE's."""
    ref_n = len(losses)
    rows = []
    for n in calibration.SIZES:
        ratios = []
        per_chunk = max(chunk_cells // (n + ref_n), 1)
        for start in range(0, trials, per_chunk):
            k = min(per_chunk, trials - start)
            cur = losses[rng.integers(0, ref_n, size=(k, n))].mean(axis=1)
            ref = losses[rng.integers(0, ref_n, size=(k, ref_n))].mean(axis=1)
            ratios.append(cur / np.maximum(ref, 1e-12) - 1.0)
        rows.append(np.quantile(np.concatenate(ratios), calibration.LEVELS))
    return NullTable(np.asarray(calibration.SIZES, dtype=np.float64),
                     np.asarray(calibration.LEVELS), np.vstack(rows))


def _bootstrap_rmse_bias(r: np.ndarray, rng: np.random.Generator, trials: int,
                         chunk_cells: int = 4_000_000) -> dict[str, NullTable]:
    """Null quantiles of the relative RMSE increase and of |mean shift| by window size.

    Two-sample bootstrap: each trial resamples a reference of the reference's own size *and*
    a window, so the reference's sampling noise is in the null too. That matters after a
    retrain on a thousand fresh labels, when the reference itself is small and heavy-tailed;
    these tables are therefore looked up at the window size itself, not an effective size.
    """
    squares = r * r
    ref_n = len(r)
    ratio_rows, bias_rows = [], []
    for n in calibration.SIZES:
        ratios, biases = [], []
        per_chunk = max(chunk_cells // (n + ref_n), 1)
        for start in range(0, trials, per_chunk):
            k = min(per_chunk, trials - start)
            cur = rng.integers(0, ref_n, size=(k, n))
            ref = rng.integers(0, ref_n, size=(k, ref_n))
            ratios.append(np.sqrt(squares[cur].mean(axis=1) / squares[ref].mean(axis=1)) - 1.0)
            biases.append(np.abs(r[cur].mean(axis=1) - r[ref].mean(axis=1)))
        ratio_rows.append(np.quantile(np.concatenate(ratios), calibration.LEVELS))
        bias_rows.append(np.quantile(np.concatenate(biases), calibration.LEVELS))
    sizes = np.asarray(calibration.SIZES, dtype=np.float64)
    levels = np.asarray(calibration.LEVELS)
    return {"rmse": NullTable(sizes, levels, np.vstack(ratio_rows)),
            "bias": NullTable(sizes, levels, np.vstack(bias_rows))}

"""The drift report: one JSON shape for ``GET /drift``, ``driftkeeper drift --json`` and the
Prometheus gauges.

``drift`` is ``None`` (JSON ``null``) while a window holds fewer than ``min_samples`` rows:
"insufficient data" is a verdict of its own, not "no drift".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .segment_verdict import SegmentVerdict


@dataclass(frozen=True)
class FeatureVerdict:
    method: str
    score: float | None
    threshold: float
    drift: bool | None
    samples: int
    threshold_source: str  # "auto" (calibrated), "floor" (practical minimum) or "policy"
    pvalue: float | None = None
    unseen: int = 0
    invalid: int = 0
    error_bound: float | None = None  # binned KS only: bound on exact - binned
    # How much this feature's drift moves the predictions (drifted features, when the
    # model is at hand): signed relative change of the mean prediction, and the mean
    # absolute per-row change that a policy's minImpact compares.
    impact_shift: float | None = None
    impact: float | None = None


@dataclass(frozen=True)
class DataVerdict:
    """The dataset verdict. ``statistic`` and ``threshold`` are what the ``rule`` judged
    (``drift`` is ``statistic`` over ``threshold``); ``score`` is always the mean
    per-feature score (the lab's ``data_drift`` gauge), whatever the rule."""

    score: float | None  # mean of per-feature scores
    threshold: float  # threshold on `statistic`
    drift: bool | None
    samples: int
    min_samples: int
    rule: str
    share: float | None  # share of features that drifted
    share_threshold: float
    false_alarm_rate: float
    drifted_features: list[str]
    features: dict[str, FeatureVerdict]
    statistic: float | None = None  # the value the rule judged (see STATISTICS)
    statistic_name: str = "mean_score"
    mean_threshold: float | None = None  # the policy's threshold on `score` (rule "mean")
    # Drifted by their statistic but moving predictions less than minImpact: not counted.
    low_impact: list[str] = field(default_factory=list)
    min_impact: float = 0.0


# What each dataset rule judges: the statistic's name, and what it is.
STATISTICS = {
    "any": ("max_feature_ratio", "the largest feature score over its own threshold (drift "
            "above 1: a feature over its threshold)"),
    "share": ("drifted_share", "the share of features over their thresholds"),
    "mean": ("mean_score", "the mean per-feature score"),
}


@dataclass(frozen=True)
class ResidualTest:
    score: float | None
    threshold: float
    drift: bool | None


@dataclass(frozen=True)
class ConceptVerdict:
    score: float | None  # (rmse - rmse_reference) / rmse_reference, the lab's `concept_drift`
    threshold: float
    drift: bool | None
    samples: int
    min_samples: int
    rmse: float | None
    rmse_reference: float
    bias: float | None  # mean residual now minus the held-out mean residual
    residual_ks: ResidualTest
    bias_test: ResidualTest
    reasons: list[str] = field(default_factory=list)  # which tests fired: rmse, residual_ks, bias
    threshold_source: str = "auto"
    # Where the residuals moved, by segment (only when concept drift is detected).
    segments: SegmentVerdict | None = None
    # A classifier's measures (drift/probability.py; absent for a regression): the
    # window's log loss and accuracy beside the held-out ones (None when the window's
    # source does not carry them, as the fleet's counters), and calibration-in-the-large,
    # the window's observed rate of classes[1] minus its mean predicted probability.
    log_loss: float | None = None
    log_loss_reference: float | None = None
    accuracy: float | None = None
    accuracy_reference: float | None = None
    calibration: float | None = None
    # A multiclass model's one-vs-rest calibration: each class's observed rate minus its
    # mean predicted probability (None where the window does not carry the class sums).
    class_calibration: dict[str, float] | None = None
    # A multiclass model's relative log-loss increase over held-out, tested like the RMSE.
    log_loss_test: ResidualTest | None = None


CLASSIFIER_FIELDS = ("log_loss", "log_loss_reference", "accuracy", "accuracy_reference",
                     "calibration", "class_calibration", "log_loss_test")
"""Concept fields only a classifier's report carries: a regression's keeps its shape."""


@dataclass(frozen=True)
class PerformanceVerdict:
    """The window's RMSE estimated before labels (``score``: its relative change over the
    held-out RMSE; drift when it exceeds ``threshold``)."""

    score: float | None
    threshold: float
    drift: bool | None
    samples: int
    min_samples: int
    rmse_estimated: float | None
    rmse_reference: float
    threshold_source: str = "auto"


@dataclass(frozen=True)
class DriftReport:
    data: DataVerdict
    concept: ConceptVerdict | None = None
    model_version: str | None = None
    evaluated_at: float | None = None
    mode: str = "binned"
    # The model's predictions against its held-out predictions (None: not monitored, or a
    # model trained before prediction profiles existed).
    prediction: FeatureVerdict | None = None
    # The RMSE estimated from the inputs alone (None: not monitored, or no loss model).
    performance: PerformanceVerdict | None = None
    # A multiclass model's probability of each class against its held-out distribution
    # (``prediction`` is then the test furthest over its threshold, these included).
    class_predictions: dict[str, FeatureVerdict] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for optional in ("concept", "prediction", "performance", "class_predictions"):
            if out[optional] is None:
                del out[optional]
        concept = out.get("concept")
        if concept is not None and concept["log_loss_reference"] is None:
            for name in CLASSIFIER_FIELDS:
                del concept[name]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DriftReport:
        data = dict(d["data"])
        data["features"] = {k: FeatureVerdict(**v) for k, v in data["features"].items()}
        concept = None
        if d.get("concept"):
            c = dict(d["concept"])
            c["residual_ks"] = ResidualTest(**c["residual_ks"])
            c["bias_test"] = ResidualTest(**c["bias_test"])
            if c.get("segments"):
                c["segments"] = SegmentVerdict.from_dict(c["segments"])
            if c.get("log_loss_test"):
                c["log_loss_test"] = ResidualTest(**c["log_loss_test"])
            concept = ConceptVerdict(**c)
        prediction = FeatureVerdict(**d["prediction"]) if d.get("prediction") else None
        performance = (PerformanceVerdict(**d["performance"]) if d.get("performance")
                       else None)
        by_class = ({c: FeatureVerdict(**v) for c, v in d["class_predictions"].items()}
                    if d.get("class_predictions") else None)
        return cls(DataVerdict(**data), concept, d.get("model_version"), d.get("evaluated_at"),
                   d.get("mode", "binned"), prediction, performance, by_class)

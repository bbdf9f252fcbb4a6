"""What the monitor compares against: methods, thresholds, sample minimums, verdict rule.

These are the engine's own typed settings; a DriftPolicy document is translated into them
(see ``driftkeeper.policy``), and the CLI builds them from flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..schema import FeatureSchema
from .segments import SegmentSettings
from .stats import DEFAULT_METHOD, method_for

Threshold = float | Literal["auto"]
Rule = Literal["any", "share", "mean"]
RULES: tuple[str, ...] = ("any", "share", "mean")


@dataclass(frozen=True)
class FeatureRule:
    """Statistic and threshold for one feature (``auto`` = calibrated from the reference)."""

    method: str | None = None  # None = the default method for the feature's kind
    threshold: Threshold = "auto"
    min_score: float | None = None  # floor of an auto threshold; None = the method's floor


@dataclass(frozen=True)
class DataSettings:
    """Data-drift settings.

    The dataset verdict ``rule``:

    * ``any`` (default) — drift when any feature exceeds its own threshold. With ``auto``
      thresholds each feature is tested at ``false_alarm_rate / n_features`` (Bonferroni), so
      the whole window false-alarms at most ``false_alarm_rate`` of the time while one clearly
      drifted feature is enough to flag.
    * ``share`` — drift when the share of drifted features reaches ``share_threshold``.
    * ``mean`` — the lab's rule: drift when the mean per-feature score exceeds ``threshold``.
      Kept for compatibility; it dilutes one drifted feature among stable ones.
    """

    min_samples: int = 200
    rule: Rule = "any"
    threshold: float = 0.15
    share_threshold: float = 0.5
    false_alarm_rate: float = 0.01
    features: dict[str, FeatureRule] = field(default_factory=dict)
    # A drifted feature counts (rules any and share) only if it moves the predictions by at
    # least this much (mean absolute relative change, drift/impact.py); 0 = off. Features
    # whose impact cannot be measured (no model at hand, no sample) always count.
    min_impact: float = 0.0
    default_methods: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_METHOD))

    def rule_for(self, schema: FeatureSchema, name: str) -> FeatureRule:
        """The rule for a feature, its method resolved (kind default, ``auto`` threshold)."""
        default = self.default_methods[schema.feature(name).kind]
        rule = self.features.get(name, FeatureRule())
        return FeatureRule(rule.method or default, rule.threshold, rule.min_score)

    def validate(self, schema: FeatureSchema) -> None:
        """Raise ``ValueError`` naming the setting that does not fit the schema."""
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {self.rule!r}")
        for name in self.features:
            if name not in schema.names:
                raise ValueError(f"features.{name}: not a model feature ({schema.names})")
            try:
                method_for(self.rule_for(schema, name).method, schema.feature(name).kind)
            except KeyError as exc:
                raise ValueError(f"features.{name}.method: {exc.args[0]}") from None


@dataclass(frozen=True)
class ConceptSettings:
    """Concept-drift settings: the relative RMSE increase over the held-out RMSE, plus a KS
    test of the residual distribution and a test of the mean residual (bias), which catch a
    shift the RMSE alone would hide.

    ``threshold: auto`` (default) is the larger of ``min_score`` — the lab's 0.15 — and the
    RMSE ratio that an unchanged world exceeds with probability ``false_alarm_rate / 3``
    (bootstrapped from the held-out residuals). Diamond residuals are heavy-tailed, so with
    500 labelled rows a fixed 0.15 alone would false-alarm ~8% of the time.
    """

    min_samples: int = 200
    threshold: Threshold = "auto"
    min_score: float = 0.15
    residual_threshold: Threshold = "auto"
    bias_threshold: Threshold = "auto"
    # Floor of an auto bias threshold, as a fraction of the held-out RMSE (the same 0.15 as
    # the RMSE test's floor): a mean error that moved by a few dollars is real but not worth
    # a retrain (the lab's per-request carat noise biases a diamond model by ~4 % of its
    # RMSE, up to 14 % in a 1,000-row window: carats near 1.00 fall below the one-carat
    # price step more often than they rise above it).
    bias_min_score: float = 0.15
    false_alarm_rate: float = 0.01
    # Where concept drift lives, once it is detected (drift/segments.py).
    segments: SegmentSettings = field(default_factory=SegmentSettings)


@dataclass(frozen=True)
class PredictionSettings:
    """Prediction-drift settings: the model's predictions in the input window against its
    predictions on held-out rows at training time. One test, so ``auto`` calibrates it at
    ``false_alarm_rate`` itself; ``min_score`` is its floor (None: the method's own).

    Predictions move only when the inputs move in a way the model responds to, so this
    catches the shifts that change prices and ignores those that do not."""

    enabled: bool = True
    method: str = "ks"
    threshold: Threshold = "auto"
    min_score: float | None = 0.05
    min_samples: int = 200
    false_alarm_rate: float = 0.01


@dataclass(frozen=True)
class PerformanceSettings:
    """Estimated-performance settings: the window's RMSE estimated by the loss model
    (before labels) against the held-out RMSE. ``auto`` calibrates the threshold at
    ``false_alarm_rate`` from the held-out estimates; ``min_score`` is its floor (the
    smallest estimated RMSE increase worth acting on). Only increases count."""

    enabled: bool = True
    threshold: Threshold = "auto"
    min_score: float = 0.1
    min_samples: int = 200
    false_alarm_rate: float = 0.01


@dataclass(frozen=True)
class MonitorSettings:
    data: DataSettings = field(default_factory=DataSettings)
    concept: ConceptSettings = field(default_factory=ConceptSettings)
    prediction: PredictionSettings = field(default_factory=PredictionSettings)
    performance: PerformanceSettings = field(default_factory=PerformanceSettings)

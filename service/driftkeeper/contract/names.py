"""The window counters' metric and label names, as the pods export them.

A counter family is registered under its base name and exposed with ``_total`` added
(the OpenMetrics rule prometheus-client follows): :attr:`Family.sample` is the name that
appears in the text and in PromQL, :attr:`Family.name` the one a collector registers.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Family:
    """One metric family: its registered name, its labels, and whether it is a counter."""

    name: str
    labels: tuple[str, ...]
    counter: bool = True
    sample: str = field(init=False)  # its samples' name in the exposition and in PromQL

    def __post_init__(self) -> None:
        object.__setattr__(self, "sample", f"{self.name}_total" if self.counter else self.name)


# Label names and values the readers match on.
VERSION = "model_version"
FEATURE = "feature"
BIN = "bin"
SIDE = "side"
UNDER, OVER = "under", "over"
SIGN = "sign"
POSITIVE, NEGATIVE = "positive", "negative"
KIND = "kind"
SEGMENT = "segment"
CLASS = "class"  # a multiclass model's class name (at most 50: model/train.py MAX_CLASSES)
UNSEEN_BIN = -1  # a categorical feature's codes the schema does not know

# kind= values of WINDOW_ROWS
DATA, CONCEPT, PREDICTION, PERFORMANCE = "data", "concept", "prediction", "performance"

FEATURE_BIN = Family("driftkeeper_feature_bin", (FEATURE, BIN, VERSION))
FEATURE_OUTSIDE = Family("driftkeeper_feature_outside_distance", (FEATURE, SIDE, VERSION))
RESIDUAL_BIN = Family("driftkeeper_residual_bin", (BIN, VERSION))
RESIDUAL_SUM = Family("driftkeeper_residual_sum", (SIGN, VERSION))
RESIDUAL_SQUARES = Family("driftkeeper_residual_squares", (VERSION,))
RESIDUAL_LOG_LOSS = Family("driftkeeper_residual_log_loss", (VERSION,))
RESIDUAL_CORRECT = Family("driftkeeper_residual_correct", (VERSION,))
CLASS_ROWS = Family("driftkeeper_class_rows", (CLASS, VERSION))
CLASS_PROBABILITY = Family("driftkeeper_class_probability", (CLASS, VERSION))
CLASS_PREDICTION_BIN = Family("driftkeeper_class_prediction_bin", (CLASS, BIN, VERSION))
WINDOW_ROWS = Family("driftkeeper_window_rows", (KIND, VERSION))
ESTIMATED_SQUARED_ERROR = Family("driftkeeper_estimated_squared_error", (VERSION,))
PREDICTION_BIN = Family("driftkeeper_prediction_bin", (BIN, VERSION))
SEGMENT_ROWS = Family("driftkeeper_segment_rows", (FEATURE, SEGMENT, VERSION))
SEGMENT_RESIDUAL_SQUARES = Family("driftkeeper_segment_residual_squares",
                                  (FEATURE, SEGMENT, VERSION))
SEGMENT_PREDICTIONS = Family("driftkeeper_segment_predictions", (FEATURE, SEGMENT, VERSION))
SEGMENT_RESIDUAL_SUM = Family("driftkeeper_segment_residual_sum",
                              (FEATURE, SEGMENT, SIGN, VERSION))
DROPPED_ROWS = Family("driftkeeper_window_dropped_rows", (VERSION,))
COUNTERS_START = Family("driftkeeper_counters_start_timestamp_seconds", (VERSION,),
                        counter=False)
FEEDBACK = Family("driftkeeper_feedback", ())  # every labelled row a worker accepted

SEGMENT_SUMS = {SEGMENT_ROWS: "n", SEGMENT_RESIDUAL_SQUARES: "squares",
                SEGMENT_PREDICTIONS: "predictions"}
"""The per-segment families and the SegmentSums field each fills (SEGMENT_RESIDUAL_SUM
fills ``positive`` and ``negative`` by its sign label)."""

WINDOW_FAMILIES = (FEATURE_BIN, FEATURE_OUTSIDE, RESIDUAL_BIN, RESIDUAL_SUM, RESIDUAL_SQUARES,
                   RESIDUAL_LOG_LOSS, RESIDUAL_CORRECT, CLASS_ROWS, CLASS_PROBABILITY,
                   CLASS_PREDICTION_BIN,
                   WINDOW_ROWS, ESTIMATED_SQUARED_ERROR,
                   PREDICTION_BIN, SEGMENT_ROWS, SEGMENT_RESIDUAL_SQUARES,
                   SEGMENT_PREDICTIONS, SEGMENT_RESIDUAL_SUM, DROPPED_ROWS, COUNTERS_START,
                   FEEDBACK)
"""Every family a fleet reader needs from a pod's /metrics."""

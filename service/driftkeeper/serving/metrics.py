"""Prometheus metrics, in prometheus-client's multiprocess mode.

Counters and histograms are per worker and summed by ``MultiProcessCollector`` at scrape
time. Drift gauges are not per worker at all: the pod's one evaluator writes a report and
:class:`ReportCollector` turns it into gauges on every scrape, so four workers still export
one ``data_drift`` series, never four. ``PROMETHEUS_MULTIPROC_DIR`` must be set before this
module is imported (``driftkeeper serve`` does it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..contract import names
from .tally import load_tally, tally_metrics

# No model_version label on the request counters: one series per pod, however many
# promotions (driftkeeper_model_info says which version serves).
PREDICTIONS = Counter("driftkeeper_predictions", "Rows predicted.")
FEEDBACK = Counter(names.FEEDBACK.name, "Labelled feedback rows accepted.")
REQUEST_SECONDS = Histogram(
    "driftkeeper_request_duration_seconds", "Time spent handling a request, by endpoint.",
    ["endpoint"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
INVALID_INPUTS = Counter("driftkeeper_invalid_inputs",
                         "Requests rejected as invalid input, by endpoint and reason.",
                         ["endpoint", "reason"])
UNSEEN_CATEGORIES = Counter("driftkeeper_unseen_categories",
                            "Rows rejected for a category the model never saw.", ["feature"])
MODEL_INFO = Gauge("driftkeeper_model_info", "The model version each worker serves (1).",
                   ["version", "kind"], multiprocess_mode="liveall")
RELOADS = Counter("driftkeeper_model_reloads", "Hot reloads of the model, by outcome.",
                  ["outcome"])
POLICY_ERRORS = Counter("driftkeeper_policy_errors",
                        "Policy file reloads rejected as invalid (the previous policy stays).")
BACKGROUND_ERRORS = Counter("driftkeeper_background_errors",
                            "Failed steps of a worker's background loop (reload, prune, count, "
                            "evaluate, tick); /healthz says which keep failing.", ["loop"])
BACKGROUND_LAST_CLEAN = Gauge("driftkeeper_background_last_clean_tick_timestamp_seconds",
                              "When a worker's background loop (model reload, feedback prune) "
                              "last ticked without an error (the newest of the live workers).",
                              multiprocess_mode="livemax")
MONITOR_LAST_CLEAN = Gauge("driftkeeper_monitor_last_clean_tick_timestamp_seconds",
                           "When the pod's monitor process (counting, evaluating) last ticked "
                           "without an error.", multiprocess_mode="max")
MONITOR_RESTARTS = Counter("driftkeeper_monitor_restarts",
                           "Times the pod's monitor process started again (it exited, or "
                           "stopped ticking and was restarted by `serve` or the kubelet).")


def _verdict_value(drift: bool | None) -> float:
    """1 drift, 0 no drift, -1 insufficient data (a NaN would break alert rules)."""
    return -1.0 if drift is None else float(drift)


class ReportCollector(Collector):
    """Exports the latest drift report (a JSON file) as gauges at scrape time."""

    def __init__(self, report_path: Path) -> None:
        self.report_path = report_path

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            report: dict[str, Any] = json.loads(self.report_path.read_text())
        except (OSError, ValueError):
            return
        yield from report_metrics(report)


class TallyCollector(Collector):
    """Exports the pod's window counters (``tally.json``, see ``tally.py``) at scrape time."""

    def __init__(self, tally_path: Path) -> None:
        self.tally_path = tally_path

    def collect(self) -> Iterator[Metric]:
        tally = load_tally(self.tally_path)
        if tally is not None:
            yield from tally_metrics(tally)


def _gauge(name: str, doc: str, value: float | None, labels: dict[str, str] | None = None
           ) -> GaugeMetricFamily | None:
    if value is None:
        return None
    g = GaugeMetricFamily(name, doc, labels=list(labels) if labels else None)
    g.add_metric(list(labels.values()) if labels else [], float(value))
    return g


def report_metrics(report: dict[str, Any]) -> Iterator[GaugeMetricFamily]:
    """Gauges for one drift report (the shape of ``DriftReport.to_dict``)."""
    data = report["data"]
    concept, performance = report.get("concept"), report.get("performance")
    singles = [
        _gauge("data_drift", "Data drift score: mean of per-feature drift scores.", data["score"]),
        _gauge("driftkeeper_data_drift_share", "Share of features whose drift exceeds "
               "their threshold.", data.get("share")),
        _gauge("driftkeeper_last_evaluation_timestamp_seconds",
               "Unix time of the latest drift evaluation.", report.get("evaluated_at")),
    ]
    if concept:
        singles += [
            _gauge("concept_drift", "Concept drift score: relative RMSE increase over the "
                   "held-out RMSE.", concept["score"]),
            _gauge("driftkeeper_concept_rmse", "RMSE on the labelled window.", concept["rmse"]),
            _gauge("driftkeeper_concept_rmse_reference", "Held-out RMSE at training time.",
                   concept["rmse_reference"]),
            _gauge("driftkeeper_concept_bias", "Mean residual shift against the held-out mean.",
                   concept["bias"]),
            _gauge("driftkeeper_residual_drift", "KS statistic between current and held-out "
                   "residuals.", concept["residual_ks"]["score"]),
        ]
    if performance:
        singles += [
            _gauge("driftkeeper_estimated_rmse", "RMSE of the input window as the loss model "
                   "estimates it before labels.", performance["rmse_estimated"]),
        ]
    yield from (g for g in singles if g is not None)
    info = GaugeMetricFamily("driftkeeper_drift_report_info", "The model version and policy "
                             "the latest drift report was evaluated with (1).",
                             labels=["model_version", "policy"])
    info.add_metric([str(report.get("model_version")), str(report.get("policy"))], 1.0)
    yield info

    prediction = report.get("prediction")
    kinds = ([("data", data)] + ([("concept", concept)] if concept else [])
             + ([("prediction", prediction)] if prediction else [])
             + ([("performance", performance)] if performance else []))
    # The statistic each verdict judged and its threshold: under rule "any" that is the
    # largest feature score over its own threshold (against 1), not the mean score.
    statistic = GaugeMetricFamily("driftkeeper_drift_statistic", "The statistic each drift "
                                  "verdict judged (data: by the policy's rule, named in "
                                  "`statistic`; concept: the RMSE increase; prediction: its "
                                  "method's score; performance: the estimated RMSE "
                                  "increase), by kind.",
                                  labels=["kind", "statistic"])
    threshold = GaugeMetricFamily("driftkeeper_drift_threshold", "Threshold of the judged "
                                  "statistic, by kind.", labels=["kind"])
    detected = GaugeMetricFamily("driftkeeper_drift_detected", "Drift verdict by kind: 1 drift, "
                                 "0 none, -1 insufficient data.", labels=["kind"])
    samples = GaugeMetricFamily("driftkeeper_window_samples", "Rows in the evaluated window, by "
                                "kind.", labels=["kind"])
    judged = {"data": (data.get("statistic_name", "mean_score"), data.get("statistic")),
              "concept": ("rmse_increase", concept["score"] if concept else None),
              "prediction": ((prediction["method"], prediction["score"]) if prediction
                             else ("", None)),
              "performance": ("estimated_rmse_increase",
                              performance["score"] if performance else None)}
    for kind, block in kinds:
        name, value = judged[kind]
        if value is not None:
            statistic.add_metric([kind, name], value)
        threshold.add_metric([kind], block["threshold"])
        detected.add_metric([kind], _verdict_value(block["drift"]))
        samples.add_metric([kind], block["samples"])
    yield from (statistic, threshold, detected, samples)
    if concept:
        tests = GaugeMetricFamily("driftkeeper_concept_test_detected", "Which concept tests "
                                  "fired: 1 yes, 0 no, -1 insufficient data.", labels=["test"])
        tests.add_metric(["rmse"], _verdict_value(None if concept["drift"] is None
                                                  else "rmse" in concept["reasons"]))
        tests.add_metric(["residual_ks"], _verdict_value(concept["residual_ks"]["drift"]))
        tests.add_metric(["bias"], _verdict_value(concept["bias_test"]["drift"]))
        yield tests
        # Each test's own statistic and threshold: a verdict says which test fired and
        # on what (the RMSE increase is not what the bias test compares).
        scores = GaugeMetricFamily("driftkeeper_concept_test_score", "Statistic of each "
                                   "concept test: RMSE increase, residual KS, |mean residual "
                                   "shift|.", labels=["test"])
        limits = GaugeMetricFamily("driftkeeper_concept_test_threshold", "Threshold of each "
                                   "concept test.", labels=["test"])
        for test, block in (("rmse", concept), ("residual_ks", concept["residual_ks"]),
                            ("bias", concept["bias_test"])):
            if block["score"] is not None:
                scores.add_metric([test], block["score"])
            limits.add_metric([test], block["threshold"])
        yield from (scores, limits)
        located = (concept.get("segments") or {}).get("locations") or []
        if located:
            # Bounded labels only: one series per located segment (segments per feature are
            # capped in the layout). The sentence ("color D, E, F: price 24 % above the
            # model") is in /drift and the policy's status, never a label.
            where = GaugeMetricFamily("driftkeeper_concept_location", "Where concept drift "
                                      "lives: each located segment with its location's "
                                      "residual shift relative to the predictions (0.24 = "
                                      "24 % above the model), while concept drift is "
                                      "detected.", labels=["feature", "segment"])
            for loc in located:
                for segment in loc["segments"] or ["*"]:
                    where.add_metric([loc["feature"], segment], loc["shift"])
            yield where

    score = GaugeMetricFamily("driftkeeper_feature_drift", "Drift score per feature.",
                              labels=["feature", "method"])
    fthreshold = GaugeMetricFamily("driftkeeper_feature_drift_threshold",
                                   "Drift threshold per feature.", labels=["feature", "method"])
    fdetected = GaugeMetricFamily("driftkeeper_feature_drift_detected", "Drift verdict per "
                                  "feature: 1 drift, 0 none, -1 insufficient data.",
                                  labels=["feature"])
    impact = GaugeMetricFamily("driftkeeper_feature_impact", "How much a drifted feature "
                               "moves the predictions: mean absolute change (what minImpact "
                               "compares) and signed change of the mean prediction, relative "
                               "to the mean prediction.", labels=["feature", "measure"])
    for name, f in data["features"].items():
        if f["score"] is not None:
            score.add_metric([name, f["method"]], f["score"])
        fthreshold.add_metric([name, f["method"]], f["threshold"])
        fdetected.add_metric([name], _verdict_value(f["drift"]))
        if f.get("impact") is not None:
            impact.add_metric([name, "change"], f["impact"])
            impact.add_metric([name, "shift"], f["impact_shift"])
    yield from (score, fthreshold, fdetected, impact)


class ServingWorkers(Collector):
    """The multiprocess metrics, where ``driftkeeper_model_info`` keeps only the versions
    workers serve now: a worker's replaced versions stay in its file at 0 (multiprocess
    gauges cannot be removed) and would otherwise add a series per promotion."""

    def __init__(self) -> None:
        self._inner = multiprocess.MultiProcessCollector(None)

    def collect(self) -> Iterator[Metric]:
        for family in self._inner.collect():
            if family.name == "driftkeeper_model_info":
                family.samples = [s for s in family.samples if s.value == 1.0]
            yield family


def render(report_path: Path, tally_path: Path) -> bytes:
    """The /metrics body: a fresh registry per scrape, as the multiprocess docs require."""
    registry = CollectorRegistry()
    registry.register(ServingWorkers())
    registry.register(ReportCollector(report_path))
    registry.register(TallyCollector(tally_path))
    return generate_latest(registry)


def mark_process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (gunicorn's child_exit hook calls this)."""
    multiprocess.mark_process_dead(pid)

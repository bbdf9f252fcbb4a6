"""Generate the Grafana dashboard and the Prometheus alert rules, for the chart and compose.

One definition, written in code (the dashboard with grafana-foundation-sdk, pinned to the
Grafana 11.6 schema), four files:

* ``charts/driftkeeper/files/dashboard.json`` and ``files/alerts.yaml`` (the chart's
  dashboard ConfigMap and PrometheusRule);
* ``deploy/compose/grafana/dashboards/driftkeeper.json`` and
  ``deploy/compose/prometheus/alerts.yml`` (the compose setup's provisioned files).

Usage: ``python scripts/generate_monitoring.py`` (writes) or ``--check`` (exit 1 when a
committed file differs; a test runs this). Series are selected by the constant label
``driftkeeper``: ``model`` for the model pods, ``operator`` for the policy metrics (the
chart's ServiceMonitors add it by relabeling, compose's scrape jobs as a static label), so
``job`` is free to name each release (the Prometheus Operator's default: the Service's
name). Each alert links its runbook (``docs/runbooks.md``, one section per alert): the
chart puts its ``monitoring.prometheusRule.runbookBaseUrl`` in place of ``RUNBOOK_BASE``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

ROOT = Path(__file__).resolve().parents[1]
CHART_FILES = ROOT / "charts" / "driftkeeper" / "files"
COMPOSE = ROOT / "deploy" / "compose"

MODEL_JOB = 'driftkeeper="model"'
POLICY_JOB = 'driftkeeper="operator"'
RUNBOOK_BASE = "__RUNBOOK_BASE_URL__"
"""Replaced by the chart's value (and by DEFAULT_RUNBOOKS in the compose rules)."""
DEFAULT_RUNBOOKS = "https://github.com/driftkeeper/driftkeeper/blob/main/docs/runbooks.md"
MODEL = f'{MODEL_JOB}, namespace="$namespace", service="$service"'
POLICY = f'{POLICY_JOB}, namespace="$namespace", policy="$policy"'
BY_POLICY = "max by (namespace, policy)"
BY_SERVICE = "max by (namespace, service)"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")


# -- alert rules -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """A rule as a query (the series it looks at) and a condition on it, so tests can
    evaluate the query on real data even when the alert does not fire."""

    name: str
    query: str
    condition: str
    duration: str
    severity: str
    summary: str
    description: str

    @property
    def expr(self) -> str:
        return f"{self.query} {self.condition}"

    def rule(self) -> dict[str, Any]:
        return {"alert": self.name, "expr": self.expr, "for": self.duration,
                "labels": {"severity": self.severity},
                "annotations": {"summary": self.summary, "description": self.description,
                                "runbook_url": f"{RUNBOOK_BASE}#{self.name.lower()}"}}


ALERTS = [
    Alert("DriftkeeperDataDrift",
          f'{BY_POLICY} (driftkeeper_policy_drift_detected{{{POLICY_JOB}, kind="data"}})',
          "== 1", "5m", "warning",
          "Data drift on {{ $labels.namespace }}/{{ $labels.policy }}",
          "The inputs of the model behind DriftPolicy {{ $labels.policy }} drifted from its "
          "training reference (kubectl describe dp {{ $labels.policy }})."),
    Alert("DriftkeeperConceptDrift",
          f'{BY_POLICY} (driftkeeper_policy_drift_detected{{{POLICY_JOB}, kind="concept"}})',
          "== 1", "5m", "warning",
          "Concept drift on {{ $labels.namespace }}/{{ $labels.policy }}",
          "The model's error on labelled feedback rose above its held-out error "
          "(DriftPolicy {{ $labels.policy }})."),
    Alert("DriftkeeperPredictionDrift",
          f'{BY_POLICY} (driftkeeper_policy_drift_detected{{{POLICY_JOB}, kind="prediction"}})',
          "== 1", "5m", "warning",
          "Prediction drift on {{ $labels.namespace }}/{{ $labels.policy }}",
          "The predictions of the model behind DriftPolicy {{ $labels.policy }} moved away "
          "from its predictions on held-out data: the inputs shifted in a way the model "
          "responds to (no labels needed to see it)."),
    Alert("DriftkeeperPerformanceDrift",
          f'{BY_POLICY} (driftkeeper_policy_drift_detected{{{POLICY_JOB}, kind="performance"}})',
          "== 1", "5m", "warning",
          "Estimated performance dropped on {{ $labels.namespace }}/{{ $labels.policy }}",
          "The RMSE of the model behind DriftPolicy {{ $labels.policy }}, estimated from its "
          "inputs before any label, rose above its held-out RMSE: traffic moved towards rows "
          "the model gets wrong."),
    Alert("DriftkeeperRetrainFailed",
          f'{BY_POLICY} (increase(driftkeeper_policy_retrains_total'
          f'{{{POLICY_JOB}, outcome="failed"}}[30m]))',
          "> 0", "0m", "warning",
          "A retrain failed on {{ $labels.namespace }}/{{ $labels.policy }}",
          "A retraining Job of DriftPolicy {{ $labels.policy }} failed; the serving model "
          "is unchanged (status.lastRetrain says why)."),
    Alert("DriftkeeperRetrainBudgetSpent",
          f'{BY_POLICY} (driftkeeper_policy_phase{{{POLICY_JOB}, phase="Degraded"}})',
          "== 1", "0m", "critical",
          "Retraining stopped on {{ $labels.namespace }}/{{ $labels.policy }}",
          "DriftPolicy {{ $labels.policy }} spent its failure budget (maxFailures): no "
          "retrain starts until its spec changes."),
    Alert("DriftkeeperModelServiceDown",
          f"{BY_SERVICE} (up{{{MODEL_JOB}}})",
          "== 0", "2m", "critical",
          "The model service {{ $labels.namespace }}/{{ $labels.service }} is down",
          "No replica of {{ $labels.service }} answers Prometheus' scrapes."),
    Alert("DriftkeeperNoEvaluation",
          f"time() - {BY_SERVICE} (driftkeeper_last_evaluation_timestamp_seconds{{{MODEL_JOB}}})",
          "> 600", "5m", "warning",
          "No drift evaluation on {{ $labels.namespace }}/{{ $labels.service }} for 10 minutes",
          "The model pods of {{ $labels.service }} have not evaluated their windows for "
          "more than 10 minutes."),
    Alert("DriftkeeperPolicyNotEvaluated",
          f"time() - {BY_POLICY} (driftkeeper_policy_last_evaluation_timestamp_seconds"
          f"{{{POLICY_JOB}}})",
          "> 600", "5m", "warning",
          "DriftPolicy {{ $labels.namespace }}/{{ $labels.policy }} not evaluated for 10 minutes",
          "The operator has not judged the fleet's windows for more than 10 minutes (no "
          "ready replicas, no counters, or it is stuck)."),
]


def alert_groups() -> dict[str, Any]:
    return {"groups": [{"name": "driftkeeper", "rules": [a.rule() for a in ALERTS]}]}


# -- the dashboard ---------------------------------------------------------------------------


def _query(expr: str, legend: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).datasource(DATASOURCE)


def _timeseries(title: str, description: str, unit: str, *queries: prometheus.Dataquery,
                width: int = 12, height: int = 8) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).description(description).unit(unit)
             .span(width).height(height).datasource(DATASOURCE))
    for q in queries:
        panel = panel.with_target(q)
    return panel


def _variable(name: str, label: str, query: str) -> dashboard.QueryVariable:
    return (dashboard.QueryVariable(name).label(label).query(query).datasource(DATASOURCE)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED))


def _numbered(board: dashboard.Dashboard) -> Any:
    """Give every panel and row a unique id (Grafana links and annotations use them)."""
    built = board.build()
    for number, panel in enumerate(built.panels or [], start=1):
        panel.id_val = number
    return built


def build_dashboard() -> dashboard.Dashboard:
    rate = "$__rate_interval"
    return (
        dashboard.Dashboard("Driftkeeper")
        .uid("driftkeeper")
        .description("Data and concept drift of a served model against its thresholds, "
                     "traffic, latency, the serving version and retraining.")
        .tags(["driftkeeper", "mlops"])
        .refresh("30s")
        .time("now-3h", "now")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source")
                       .type("prometheus"))
        .with_variable(_variable("namespace", "Namespace", f"label_values("
                                 f"driftkeeper_predictions_total{{{MODEL_JOB}}}, namespace)"))
        .with_variable(_variable("service", "Service", f"label_values(driftkeeper_predictions_"
                                 f'total{{{MODEL_JOB}, namespace="$namespace"}}, service)'))
        .with_variable(_variable("policy", "DriftPolicy", f"label_values(driftkeeper_policy_"
                                 f'phase{{{POLICY_JOB}, namespace="$namespace"}}, policy)'))
        .annotation(dashboard.AnnotationQuery().name("Retrains").datasource(DATASOURCE)
                    .enable(True).icon_color("orange")
                    .expr("sum by (outcome) (changes(driftkeeper_policy_retrains_total"
                          f'{{{POLICY}, outcome!="started"}}[2m])) > 0'))
        .with_row(dashboard.Row("Drift"))
        .with_panel(_timeseries(
            "Data drift vs threshold", "The statistic the policy's rule judges (rule any: the "
            "worst feature's score over its own threshold, drift above 1; share: the share "
            "of drifted features; mean: the mean score) for each replica's window and for "
            "the fleet, and its threshold.", "none",
            _query(f"max by (pod) (driftkeeper_drift_statistic{{{MODEL}, kind=\"data\"}})",
                   "replica {{pod}}"),
            _query(f'max(driftkeeper_policy_drift_score{{{POLICY}, kind="data"}})', "fleet"),
            _query(f'max(driftkeeper_drift_threshold{{{MODEL}, kind="data"}})', "threshold"),
            width=8))
        .with_panel(_timeseries(
            "Prediction drift vs threshold", "The model's predictions on each replica's "
            "window against its predictions on held-out rows (KS by default), for the fleet, "
            "and the threshold. Needs no labels.", "none",
            _query(f"max by (pod) (driftkeeper_drift_statistic{{{MODEL}, "
                   f'kind="prediction"}})', "replica {{pod}}"),
            _query(f'max(driftkeeper_policy_drift_score{{{POLICY}, kind="prediction"}})',
                   "fleet"),
            _query(f'max(driftkeeper_drift_threshold{{{MODEL}, kind="prediction"}})',
                   "threshold"), width=8))
        .with_panel(_timeseries(
            "Estimated RMSE (before labels)", "The RMSE each replica's window would have, as "
            "the loss model estimates it from inputs and predictions, against the held-out "
            "RMSE; the fleet's estimated increase is the policy's performance score.", "none",
            _query(f"max by (pod) (driftkeeper_estimated_rmse{{{MODEL}}})", "replica {{pod}}"),
            _query(f"max(driftkeeper_concept_rmse_reference{{{MODEL}}})", "held-out RMSE"),
            width=8))
        .with_panel(_timeseries(
            "Concept drift vs threshold", "Relative RMSE increase on labelled feedback over "
            "the held-out RMSE, per replica and for the fleet, and the threshold.", "percentunit",
            _query(f"max by (pod) (concept_drift{{{MODEL}}})", "replica {{pod}}"),
            _query(f'max(driftkeeper_policy_drift_score{{{POLICY}, kind="concept"}})', "fleet"),
            _query(f'max(driftkeeper_drift_threshold{{{MODEL}, kind="concept"}})', "threshold"),
            width=8))
        .with_panel(_timeseries(
            "Per-feature drift", "Each feature's drift score (its method in the legend).",
            "none", _query(f"max by (feature, method) (driftkeeper_feature_drift{{{MODEL}}})",
                           "{{feature}} ({{method}})"), width=16))
        .with_panel(stat.Panel().title("Policy phase").description(
            "The DriftPolicy's phase (kubectl get dp).").span(8).height(8)
            .datasource(DATASOURCE).with_target(_query(
                f"max by (phase) (driftkeeper_policy_phase{{{POLICY}}}) == 1", "{{phase}}")))
        .with_row(dashboard.Row("Windows and traffic"))
        .with_panel(_timeseries(
            "Window samples", "Rows in the evaluated windows, by kind (below minSamples "
            "there is no verdict).", "short",
            _query(f"sum by (kind) (driftkeeper_window_samples{{{MODEL}}})", "{{kind}}")))
        .with_panel(_timeseries(
            "Predictions and feedback", "Rows per second over all replicas.", "ops",
            _query(f"sum(rate(driftkeeper_predictions_total{{{MODEL}}}[{rate}]))",
                   "predictions"),
            _query(f"sum(rate(driftkeeper_feedback_total{{{MODEL}}}[{rate}]))", "labels")))
        .with_panel(_timeseries(
            "/predict latency", "Percentiles of the request duration over all replicas.", "s",
            *[_query(f"histogram_quantile({q}, sum by (le) (rate("
                     f'driftkeeper_request_duration_seconds_bucket{{{MODEL}, endpoint="/predict"}}'
                     f"[{rate}])))", f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)]))
        .with_panel(statetimeline.Panel().title("Model version").description(
            "The version each replica serves (a promotion shows as a change).").span(12)
            .height(8).datasource(DATASOURCE).with_target(_query(
                f"max by (version) (driftkeeper_model_info{{{MODEL}}}) == 1", "{{version}}")))
    )


def dashboard_json() -> dict[str, Any]:
    return json.loads(JSONEncoder(sort_keys=True, indent=2).encode(_numbered(build_dashboard())))


# -- files -----------------------------------------------------------------------------------


def outputs() -> dict[Path, str]:
    board = json.dumps(dashboard_json(), indent=2, sort_keys=True) + "\n"
    header = "# Generated by scripts/generate_monitoring.py; do not edit by hand.\n"
    rules = header + yaml.safe_dump(alert_groups(), sort_keys=False, width=100)
    return {CHART_FILES / "dashboard.json": board, CHART_FILES / "alerts.yaml": rules,
            COMPOSE / "grafana" / "dashboards" / "driftkeeper.json": board,
            COMPOSE / "prometheus" / "alerts.yml": rules.replace(RUNBOOK_BASE,
                                                                 DEFAULT_RUNBOOKS)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a committed file is not what this would write")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.relative_to(ROOT))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("stale (run scripts/generate_monitoring.py): " + ", ".join(map(str, stale)),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Read the service's Prometheus metrics into a policy-engine Observation.

The driver reads exactly what Prometheus scrapes, so the local loop sees what the operator
and Grafana will see in a cluster.
"""

from __future__ import annotations

from collections import defaultdict

import requests
from prometheus_client.parser import text_string_to_metric_families

from ..errors import DriftkeeperError
from ..policy.engine import KINDS, Observation


class ServiceUnreachableError(DriftkeeperError):
    """The service did not answer; the message says where we looked."""


def parse_metrics(text: str, report: dict | None = None) -> Observation | None:
    """An Observation from /metrics text, or None before the first evaluation; where
    concept drift lives (a sentence, never a metric label) comes from the ``report``
    (GET /drift) when given."""
    samples: dict[str, list] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[s.name].append(s)
    stamp = samples.get("driftkeeper_last_evaluation_timestamp_seconds")
    if not stamp:
        return None

    def by_kind(name: str) -> dict[str, float]:
        return {s.labels["kind"]: s.value for s in samples.get(name, [])}

    detected = by_kind("driftkeeper_drift_detected")
    drift = {k: None if detected.get(k, -1.0) < 0 else bool(detected[k]) for k in KINDS}
    judged = {s.labels["kind"]: s for s in samples.get("driftkeeper_drift_statistic", [])}
    scores = {k: judged[k].value if k in judged else None for k in KINDS}
    info = samples.get("driftkeeper_drift_report_info", [])
    drifted = tuple(sorted(s.labels["feature"] for s in
                           samples.get("driftkeeper_feature_drift_detected", [])
                           if s.value == 1.0))
    concept_tests = tuple(sorted(s.labels["test"] for s in
                                 samples.get("driftkeeper_concept_test_detected", [])
                                 if s.value == 1.0))
    thresholds_by_feature = {s.labels["feature"]: s.value for s in
                             samples.get("driftkeeper_feature_drift_threshold", [])}
    feature_checks = {s.labels["feature"]: (s.labels["method"], s.value,
                                            thresholds_by_feature[s.labels["feature"]])
                      for s in samples.get("driftkeeper_feature_drift", [])
                      if s.labels["feature"] in drifted
                      and s.labels["feature"] in thresholds_by_feature}
    shifts = {s.labels["feature"]: s.value
              for s in samples.get("driftkeeper_feature_impact", [])
              if s.labels.get("measure") == "shift" and s.labels["feature"] in drifted}
    limits = {s.labels["test"]: s.value
              for s in samples.get("driftkeeper_concept_test_threshold", [])}
    concept_checks = {s.labels["test"]: (s.value, limits[s.labels["test"]])
                      for s in samples.get("driftkeeper_concept_test_score", [])
                      if s.labels["test"] in limits}
    return Observation(
        evaluated_at=stamp[0].value,
        model_version=info[0].labels["model_version"] if info else None,
        drift=drift, scores=scores,
        thresholds=dict(by_kind("driftkeeper_drift_threshold")),
        samples={k: int(v) for k, v in by_kind("driftkeeper_window_samples").items()},
        drifted_features=drifted, concept_tests=concept_tests,
        feature_checks=feature_checks, concept_checks=concept_checks,
        statistics={k: s.labels["statistic"] for k, s in judged.items()},
        prediction_shifts=shifts,
        concept_locations=tuple(
            loc["message"] for loc in (((report or {}).get("concept") or {}).get(
                "segments") or {}).get("locations") or []))


def fetch_observation(url: str, session: requests.Session | None = None,
                      timeout: float = 5.0) -> Observation | None:
    """GET {url}/metrics and parse it."""
    getter = session or requests
    try:
        resp = getter.get(url.rstrip("/") + "/metrics", timeout=timeout)
        resp.raise_for_status()
    except requests.RequestException as exc:
        raise ServiceUnreachableError(f"cannot read metrics from {url}: {exc}") from exc
    report = None
    if "\ndriftkeeper_concept_location{" in resp.text:  # located: the sentences are here
        try:
            report = getter.get(url.rstrip("/") + "/drift", timeout=timeout).json()
        except (requests.RequestException, ValueError):
            report = None  # the verdict stands; only the sentence is missing
    return parse_metrics(resp.text, report)

"""Prometheus metrics of what a driver (the operator, or the local driver) decided.

The model pods export what they see; this exports what the policy made of it: the phase,
the verdicts the engine acted on (the fleet's, on Kubernetes), retrains by outcome and the
failure budget. Alerts on failed retrains and a spent budget read these. One series set per
policy; a deleted policy's series are removed, and no label carries a model version.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from .engine import (
    COOLDOWN,
    DEGRADED,
    DRIFTING,
    INSUFFICIENT_DATA,
    INVALID,
    KINDS,
    MONITORING,
    RETRAINING,
    SUSPENDED,
    Observation,
)

PHASES = (MONITORING, INSUFFICIENT_DATA, DRIFTING, RETRAINING, COOLDOWN, SUSPENDED, DEGRADED,
          INVALID)
OUTCOMES = ("started", "promoted", "rejected", "failed")


class PolicyMetrics:
    """The policy-level series, in their own registry (served by :meth:`serve`)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = ["namespace", "policy"]
        self.phase = Gauge("driftkeeper_policy_phase", "The policy's phase (1 for the "
                           "current one).", [*labels, "phase"], registry=self.registry)
        self.retrains = Counter("driftkeeper_policy_retrains", "Retrains by outcome "
                                "(started, promoted, rejected, failed).", [*labels, "outcome"],
                                registry=self.registry)
        self.failures = Gauge("driftkeeper_policy_failures", "Failed retrains in a row.",
                              labels, registry=self.registry)
        self.max_failures = Gauge("driftkeeper_policy_max_failures", "The failure budget: "
                                  "retraining stops after this many failures in a row.",
                                  labels, registry=self.registry)
        self.score = Gauge("driftkeeper_policy_drift_score", "The statistic the policy "
                           "judged, by kind (the fleet's on Kubernetes; data: by its rule).",
                           [*labels, "kind"], registry=self.registry)
        self.threshold = Gauge("driftkeeper_policy_drift_threshold", "Its threshold.",
                               [*labels, "kind"], registry=self.registry)
        self.detected = Gauge("driftkeeper_policy_drift_detected", "The verdict the policy "
                              "acted on: 1 drift, 0 none, -1 insufficient data.",
                              [*labels, "kind"], registry=self.registry)
        self.samples = Gauge("driftkeeper_policy_window_samples", "Rows in the window it "
                             "judged, by kind.", [*labels, "kind"], registry=self.registry)
        self.evaluated = Gauge("driftkeeper_policy_last_evaluation_timestamp_seconds",
                               "When the policy last judged a window.", labels,
                               registry=self.registry)

    def record(self, namespace: str, policy: str, phase: str, failures: int,
               max_failures: int | None, observation: Observation | None) -> None:
        for outcome in OUTCOMES:  # every outcome's series exists from the start, at 0
            self.retrains.labels(namespace, policy, outcome)
        for p in PHASES:
            self.phase.labels(namespace, policy, p).set(1.0 if p == phase else 0.0)
        self.failures.labels(namespace, policy).set(failures)
        if max_failures is not None:
            self.max_failures.labels(namespace, policy).set(max_failures)
        if observation is None:
            return
        self.evaluated.labels(namespace, policy).set(observation.evaluated_at)
        for kind in KINDS:
            verdict = observation.drift.get(kind)
            self.detected.labels(namespace, policy, kind).set(
                -1.0 if verdict is None else float(verdict))
            self.samples.labels(namespace, policy, kind).set(observation.samples.get(kind, 0))
            for gauge, value in ((self.score, observation.scores.get(kind)),
                                 (self.threshold, observation.thresholds.get(kind))):
                if value is not None:
                    gauge.labels(namespace, policy, kind).set(value)

    def retrain(self, namespace: str, policy: str, outcome: str) -> None:
        self.retrains.labels(namespace, policy, outcome).inc()

    def forget(self, namespace: str, policy: str) -> None:
        """Drop a deleted policy's series."""
        for metric, extra in ((self.phase, PHASES), (self.retrains, OUTCOMES),
                              (self.score, KINDS), (self.threshold, KINDS),
                              (self.detected, KINDS), (self.samples, KINDS)):
            for value in extra:
                with contextlib.suppress(KeyError):  # never set
                    metric.remove(namespace, policy, value)
        for metric in (self.failures, self.max_failures, self.evaluated):
            with contextlib.suppress(KeyError):
                metric.remove(namespace, policy)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Serve the metrics over HTTP (all addresses by default: a pod's port)."""
        start_http_server(port, addr=address, registry=self.registry)

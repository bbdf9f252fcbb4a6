"""The policy-level metrics both drivers export: phase, verdicts, retrains, the budget."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from driftkeeper.policy.engine import Observation
from driftkeeper.policy.metrics import PolicyMetrics


def _value(metrics: PolicyMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_records_what_the_policy_acted_on() -> None:
    metrics = PolicyMetrics()
    obs = Observation(evaluated_at=100.0, model_version="v3",
                      drift={"data": True, "concept": None}, scores={"data": 0.4},
                      thresholds={"data": 0.2}, samples={"data": 900, "concept": 12})
    metrics.record("ml", "diamonds", "Drifting", 1, 3, obs)
    base = {"namespace": "ml", "policy": "diamonds"}
    assert _value(metrics, "driftkeeper_policy_phase", **base, phase="Drifting") == 1.0
    assert _value(metrics, "driftkeeper_policy_phase", **base, phase="Monitoring") == 0.0
    assert _value(metrics, "driftkeeper_policy_drift_detected", **base, kind="data") == 1.0
    assert _value(metrics, "driftkeeper_policy_drift_detected", **base, kind="concept") == -1.0
    assert _value(metrics, "driftkeeper_policy_drift_score", **base, kind="data") == 0.4
    assert _value(metrics, "driftkeeper_policy_drift_score", **base, kind="concept") is None
    assert _value(metrics, "driftkeeper_policy_window_samples", **base, kind="data") == 900
    assert _value(metrics, "driftkeeper_policy_failures", **base) == 1
    assert _value(metrics, "driftkeeper_policy_max_failures", **base) == 3
    assert _value(metrics, "driftkeeper_policy_last_evaluation_timestamp_seconds", **base) == 100
    metrics.retrain("ml", "diamonds", "started")
    metrics.retrain("ml", "diamonds", "failed")
    assert _value(metrics, "driftkeeper_policy_retrains_total", **base, outcome="failed") == 1
    # No model version in any label: the series do not grow with promotions.
    assert "model_version" not in generate_latest(metrics.registry).decode()


# The test process runs prometheus-client in multiprocess mode (conftest), which warns on
# remove() yet removes; the drivers run in single-process mode.
@pytest.mark.filterwarnings("ignore:Removal of labels:UserWarning")
def test_a_deleted_policys_series_go() -> None:
    metrics = PolicyMetrics()
    metrics.record("ml", "a", "Monitoring", 0, 3, Observation(1.0, "v1", {"data": False}))
    metrics.record("ml", "b", "Monitoring", 0, 3, None)
    metrics.retrain("ml", "a", "promoted")
    metrics.forget("ml", "a")
    text = generate_latest(metrics.registry).decode()
    assert 'policy="a"' not in text and 'policy="b"' in text

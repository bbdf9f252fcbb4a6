"""The policy engine's table of cases: pure decisions, no processes, no clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from driftkeeper.policy import parse_policy
from driftkeeper.policy.engine import (
    COOLDOWN,
    DEGRADED,
    DRIFTING,
    INSUFFICIENT_DATA,
    INVALID,
    MONITORING,
    RETRAINING,
    SUSPENDED,
    EngineState,
    Observation,
    retrain_finished,
    step,
)

PLENTY = 10_000  # fresh labelled rows: enough to train and judge


def policy(**retraining):
    return parse_policy({"evaluation": {"consecutiveBreaches": 3},
                         "retraining": {"cooldown": "10m", "maxFailures": 2, **retraining},
                         "promotion": {"evaluationRows": 500}})


def obs(t: float, concept: bool | None = False, data: bool | None = False,
        version: str = "v1") -> Observation:
    return Observation(evaluated_at=t, model_version=version,
                       drift={"data": data, "concept": concept},
                       scores={"data": 0.1, "concept": 0.3 if concept else 0.01},
                       thresholds={"data": 0.15, "concept": 0.2},
                       samples={"data": 1000, "concept": 1000})


def run(p, observations, state=None, fresh=PLENTY, start=1000.0):
    state = state or EngineState()
    decisions = []
    for i, o in enumerate(observations):
        d = step(p, state, o, start + i, fresh_labels=fresh, serving_version="v1")
        decisions.append(d)
        state = d.state
    return decisions


def reasons(decisions) -> list[str]:
    return [e.reason for d in decisions for e in d.events]


def test_quiet_service_is_monitoring() -> None:
    ds = run(policy(), [obs(t) for t in range(5)])
    assert [d.phase for d in ds] == [MONITORING] * 5
    assert not any(d.start_retrain for d in ds)
    conditions = {c.type: c.status for c in ds[-1].conditions}
    assert conditions == {"DataDrift": "False", "ConceptDrift": "False", "PolicyValid": "True",
                          "Retraining": "False", "PredictionDrift": "Unknown",
                          "PerformanceDrift": "Unknown"}
    for kind in ("PredictionDrift", "PerformanceDrift"):
        # these observations carry no prediction or performance verdict
        assert next(c for c in ds[-1].conditions if c.type == kind).reason == "NotMonitored"



def test_hysteresis_needs_consecutive_breaches() -> None:
    flapping = [obs(0, True), obs(1, True), obs(2, False), obs(3, True), obs(4, True)]
    ds = run(policy(), flapping)
    assert not any(d.start_retrain for d in ds)
    assert reasons(ds).count("DriftDetected") == 2 and "DriftCleared" in reasons(ds)
    ds = run(policy(), [obs(t, True) for t in range(3)])
    assert [d.start_retrain for d in ds] == [False, False, True]
    assert ds[-1].phase == RETRAINING and ds[-1].state.retrains == 1


def test_same_evaluation_is_counted_once() -> None:
    """The driver polls faster than the service evaluates: one evaluation, one breach."""
    same = obs(5, True)
    ds = run(policy(), [same, same, same, same])
    assert ds[-1].state.breaches["concept"] == 1
    assert not any(d.start_retrain for d in ds)


def test_evaluations_of_a_replaced_model_are_ignored() -> None:
    ds = run(policy(), [obs(t, True, version="v0") for t in range(5)])
    assert not any(d.start_retrain for d in ds)
    assert ds[-1].state.breaches["concept"] == 0


def test_insufficient_data_is_not_drift() -> None:
    ds = run(policy(), [obs(t, None, None) for t in range(5)])
    assert not any(d.start_retrain for d in ds)
    assert {c.type: c.status for c in ds[-1].conditions}["ConceptDrift"] == "Unknown"
    assert step(policy(), EngineState(), None, 0.0).phase == INSUFFICIENT_DATA
    # insufficient data breaks a run of breaches
    ds = run(policy(), [obs(0, True), obs(1, True), obs(2, None), obs(3, True)])
    assert not any(d.start_retrain for d in ds)


def test_a_retrain_already_running_blocks_another() -> None:
    ds = run(policy(), [obs(t, True) for t in range(3)])
    running = ds[-1].state
    more = run(policy(), [obs(t, True) for t in range(10, 16)], state=running)
    assert not any(d.start_retrain for d in more)
    assert all(d.phase == RETRAINING for d in more)
    assert {c.type: c.status for c in more[-1].conditions}["Retraining"] == "True"


def test_cooldown_after_a_retrain() -> None:
    ds = run(policy(), [obs(t, True) for t in range(3)])
    done = retrain_finished(ds[-1].state, 1003.0, "rejected", "serving model kept")
    assert done.events[0].reason == "PromotionRejected"
    soon = run(policy(), [obs(t, True) for t in range(10, 15)], state=done.state, start=1010)
    assert not any(d.start_retrain for d in soon)
    assert soon[-1].phase == COOLDOWN and "RetrainDeferred" in reasons(soon)
    assert reasons(soon).count("RetrainDeferred") == 1  # said once, not every evaluation
    later = run(policy(), [obs(t, True) for t in range(20, 23)], state=soon[-1].state,
                start=1003.0 + 601)
    assert [d.start_retrain for d in later] == [True, False, False]  # breaches carried over


def test_failure_budget_then_reset_by_a_policy_change() -> None:
    p = policy()
    state = EngineState()
    for attempt in range(2):
        ds = run(p, [obs(100 * attempt + t, True) for t in range(3)], state=state,
                 start=10_000.0 * attempt)
        assert ds[-1].start_retrain, attempt
        state = retrain_finished(ds[-1].state, 10_000.0 * attempt + 5, "failed", "boom").state
    assert state.failures == 2
    ds = run(p, [obs(500 + t, True) for t in range(4)], state=state, start=50_000.0)
    assert not any(d.start_retrain for d in ds)
    assert ds[-1].phase == DEGRADED
    assert "RetrainBudgetExhausted" in reasons(ds)
    edited = policy(maxFailures=5)
    ds = run(edited, [obs(600 + t, True) for t in range(3)], state=ds[-1].state, start=60_000.0)
    assert "FailureBudgetReset" in reasons(ds)
    assert [d.start_retrain for d in ds] == [True, False, False]


def test_success_resets_the_failure_count() -> None:
    state = replace(EngineState(), failures=1, retrain_started=5.0)
    assert retrain_finished(state, 9.0, "promoted", "v2").state.failures == 0
    assert retrain_finished(state, 9.0, "failed", "x").state.failures == 2
    with pytest.raises(ValueError, match="outcome"):
        retrain_finished(state, 9.0, "exploded", "x")


def test_suspend_and_disabled() -> None:
    ds = run(policy(suspend=True), [obs(t, True) for t in range(5)])
    assert not any(d.start_retrain for d in ds)
    assert ds[-1].phase == SUSPENDED and "RetrainSuspended" in reasons(ds)
    ds = run(policy(enabled=False), [obs(t, True) for t in range(5)])
    assert not any(d.start_retrain for d in ds)
    assert ds[-1].phase == DRIFTING


def test_triggers_select_the_drift_kind() -> None:
    ds = run(policy(triggers=["concept"]), [obs(t, False, data=True) for t in range(5)])
    assert not any(d.start_retrain for d in ds)
    assert ds[-1].phase == DRIFTING


def test_waits_for_fresh_labels() -> None:
    ds = run(policy(trainingData={"minFeedbackRows": 1000}), [obs(t, True) for t in range(5)],
             fresh=900)
    assert not any(d.start_retrain for d in ds)
    assert "WaitingForLabels" in reasons(ds)
    assert "1500" in next(e.message for d in ds for e in d.events
                          if e.reason == "WaitingForLabels")


def test_invalid_policy() -> None:
    d = step(None, EngineState(), obs(1, True), 1.0, policy_error="spec.window.size: too small")
    assert d.phase == INVALID and not d.start_retrain
    assert d.conditions[0].type == "PolicyValid" and d.conditions[0].status == "False"
    assert d.events[0].reason == "InvalidPolicy" and "spec.window.size" in d.events[0].message
    again = step(None, d.state, obs(2, True), 2.0, policy_error="spec.window.size: too small")
    assert again.events == [] and again.phase == INVALID  # said once, not every evaluation


def test_promotion_clears_drift_under_the_new_model() -> None:
    ds = run(policy(), [obs(t, True) for t in range(3)])
    promoted = retrain_finished(ds[-1].state, 1003.0, "promoted", "v2 promoted").state
    after = [step(policy(), promoted, obs(10, False, version="v2"), 1010.0,
                  serving_version="v2")]
    assert "DriftCleared" in reasons(after)
    assert after[-1].state.episode_start is None


def test_state_roundtrip() -> None:
    ds = run(policy(), [obs(t, True) for t in range(3)])
    state = ds[-1].state
    assert EngineState.from_dict(state.to_dict()) == state


def test_a_drift_message_names_the_test_that_fired_and_its_own_numbers() -> None:
    """The bias test fired: the message gives the bias statistic and threshold, not the
    RMSE increase (which stayed under its own threshold)."""
    from driftkeeper.policy.engine import step

    obs = Observation(evaluated_at=1.0, model_version="v1",
                      drift={"data": True, "concept": True},
                      scores={"data": 0.05, "concept": 0.13},
                      thresholds={"data": 0.15, "concept": 0.22},
                      drifted_features=("carat",), concept_tests=("bias",),
                      feature_checks={"carat": ("psi", 0.4123, 0.2)},
                      concept_checks={"rmse": (0.13, 0.22), "bias": (412.3, 95.1)})
    decision = step(parse_policy({}), EngineState(), obs, now=1.0)
    messages = {e.message.split(":")[0]: e.message for e in decision.events
                if e.reason == "DriftDetected"}
    assert messages["concept drift"] == ("concept drift: mean residual shift 412.3000 vs "
                                         "threshold 95.1000")
    assert messages["data drift"] == "data drift: carat: psi 0.4123 vs threshold 0.2000"


def test_a_quiet_data_condition_names_the_rules_statistic() -> None:
    """No drift under rule any: the condition gives the worst feature's ratio against 1,
    not the mean score against the mean rule's threshold."""
    from driftkeeper.policy.engine import step

    obs = Observation(evaluated_at=1.0, model_version="v1",
                      drift={"data": False, "concept": None},
                      scores={"data": 0.61, "concept": None},
                      thresholds={"data": 1.0, "concept": None},
                      statistics={"data": "max_feature_ratio", "concept": "rmse_increase"})
    decision = step(parse_policy({}), EngineState(), obs, now=1.0)
    data = next(c for c in decision.conditions if c.type == "DataDrift")
    assert (data.status, data.reason) == ("False", "WithinThreshold")
    assert data.message == "largest feature score over its threshold 0.6100 vs threshold 1.0000"

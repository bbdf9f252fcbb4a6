"""The drivers' shared control step as a pure function: fresh labels that survive pod
restarts, scale-downs and failed scrapes; a retrain followed to its end, stopped when it
overruns, never duplicated; a retrain that finds fewer labels than counted waits instead
of failing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from driftkeeper.model.retrain import FAILED, PROMOTED, WAITING, RetrainOutcome
from driftkeeper.policy import parse_policy
from driftkeeper.policy.engine import EngineState, Observation
from driftkeeper.policy.labels import LabelReading, LabelTally
from driftkeeper.policy.reconcile import (
    Memory,
    RetrainRequest,
    RetrainSeen,
    StartRetrain,
    StopRetrain,
    adopt,
    reconcile,
    retrain_failed_to_start,
)

T0 = 1_800_000_000.0
POLICY = parse_policy({"apiVersion": "driftkeeper.io/v1alpha1", "kind": "DriftPolicy",
                       "metadata": {"name": "p"},
                       "spec": {"evaluation": {"interval": "5s", "consecutiveBreaches": 2},
                                "retraining": {"triggers": ["concept"], "timeout": "10m",
                                               "cooldown": "30m",
                                               "trainingData": {"minFeedbackRows": 100}},
                                "promotion": {"evaluationRows": 50}}})
NEEDED = 150


def _reading(count: float, started: float = T0 - 1000.0, version: str = "v1"
             ) -> LabelReading:
    return LabelReading(count, f"{version}@{started!r}", started)


# -- fresh labels ---------------------------------------------------------------------------


def test_labels_before_the_episode_are_baselines_only() -> None:
    tally = LabelTally().advance({"a": _reading(500)}, T0, None)
    assert tally.fresh == 0
    tally = tally.advance({"a": _reading(520)}, T0 + 5, T0 + 2)
    assert tally.fresh == 20


def test_a_pod_restart_while_labels_arrive_never_lowers_or_doubles_the_count() -> None:
    """Replica a restarts (new counters from zero) between two readings; replica b goes on.
    Every label accepted is counted once: none lost that the counters show, none twice."""
    episode = T0
    tally = LabelTally().advance({"a": _reading(1000), "b": _reading(800)}, T0 - 5, None)
    counts = []
    tally = tally.advance({"a": _reading(1050), "b": _reading(830)}, T0 + 5, episode)
    counts.append(tally.fresh)  # 50 + 30
    restarted = T0 + 7
    tally = tally.advance({"a": _reading(12, restarted), "b": _reading(860)}, T0 + 10, episode)
    counts.append(tally.fresh)  # + 12 (all since the restart, within the episode) + 30
    tally = tally.advance({"a": _reading(40, restarted), "b": _reading(900)}, T0 + 15, episode)
    counts.append(tally.fresh)  # + 28 + 40
    assert counts == [80, 122, 190]
    assert counts == sorted(counts)


def test_a_restart_that_began_before_the_episode_counts_only_its_increase() -> None:
    tally = LabelTally().advance({"a": _reading(1000)}, T0 - 5, None)
    # A counter reset seen only now, though it began before the episode: how much of it is
    # new is unknown, so none of it counts; its later increase does.
    tally = tally.advance({"a": _reading(300, T0 - 1)}, T0 + 5, T0)
    assert tally.fresh == 0
    tally = tally.advance({"a": _reading(340, T0 - 1)}, T0 + 10, T0)
    assert tally.fresh == 40


def test_a_failed_scrape_and_a_scale_down_never_lower_the_count() -> None:
    tally = LabelTally().advance({"a": _reading(100), "b": _reading(100)}, T0, None)
    tally = tally.advance({"a": _reading(150), "b": _reading(120)}, T0 + 5, T0)
    assert tally.fresh == 70
    tally = tally.advance({"a": _reading(170)}, T0 + 10, T0)  # b unreadable (or gone)
    assert tally.fresh == 90
    tally = tally.advance({"a": _reading(180), "b": _reading(150)}, T0 + 15, T0)  # b is back
    assert tally.fresh == 130  # b's 30 counted once, across the missed reading
    tally = tally.advance({"a": _reading(200)}, T0 + 20, T0)  # scaled down to one
    assert tally.fresh == 150


def test_a_replica_that_started_within_the_episode_counts_everything() -> None:
    tally = LabelTally().advance({"a": _reading(100)}, T0, None)
    tally = tally.advance({"a": _reading(100), "new": _reading(25, T0 + 3)}, T0 + 5, T0)
    assert tally.fresh == 25


def test_the_tally_persists_and_forgets_replicas_long_gone() -> None:
    tally = LabelTally().advance({"a": _reading(10), "b": _reading(20)}, T0, None)
    tally = tally.advance({"a": _reading(15)}, T0 + 5, T0)
    assert LabelTally.from_dict(tally.to_dict()) == tally
    later = tally.advance({"a": _reading(16)}, T0 + 5000, T0)
    assert set(later.seen) == {"a"}
    assert LabelTally.from_dict({"seen": {"x": "damaged"}}) == LabelTally()


# -- the retrain's life ---------------------------------------------------------------------


def _obs(t: float, drift: bool = True) -> Observation:
    return Observation(evaluated_at=t, model_version="v1",
                       drift={"data": False, "concept": drift}, scores={"concept": 0.5},
                       thresholds={"concept": 0.2}, samples={"concept": 1000})


def _step(memory: Memory, t: float, seen: RetrainSeen | None = None, labels: float = 0.0,
          started: float = T0 - 1000.0):
    return reconcile(memory, _obs(t), seen, POLICY, t, generation="1",
                     serving_version="v1", labels={"a": _reading(labels, started)})


def _drift_until_due(labels_per_tick: float = 100.0) -> tuple[Memory, list]:
    """Ticks of concept drift, labels arriving, until a retrain is asked for."""
    memory, t, count, actions = Memory(), T0, 0.0, []
    for _ in range(10):
        done = _step(memory, t, labels=count)
        memory, actions = done.memory, done.actions
        if actions:
            return memory, actions
        t, count = t + 5, count + labels_per_tick
    raise AssertionError("no retrain was asked for")


def test_a_due_retrain_is_asked_for_once_with_its_identity() -> None:
    memory, actions = _drift_until_due()
    (start,) = actions
    assert isinstance(start, StartRetrain)
    assert start.request.since == memory.engine.episode_start
    assert (start.request.generation, start.request.number) == ("1", 1)
    assert memory.retrain == start.request
    assert memory.labels.fresh >= NEEDED
    # While it runs, nothing else is started.
    done = _step(memory, T0 + 100, RetrainSeen(True), labels=5000)
    assert done.actions == [] and done.decision.phase == "Retraining"


def test_an_outcome_ends_the_retrain() -> None:
    memory, _ = _drift_until_due()
    outcome = RetrainOutcome(PROMOTED, "v2 promoted")
    done = _step(memory, T0 + 100, RetrainSeen(False, outcome), labels=5000)
    assert done.memory.retrain is None
    assert done.memory.finished is not None and done.memory.finished.outcome == outcome
    assert [e.reason for e in done.decision.events][:1] == ["ModelPromoted"]


def test_a_retrain_that_finds_too_few_labels_waits_without_spending_the_budget() -> None:
    """The counters said 200 fresh labels; the files held 120. Not a failure: the policy
    waits until the count is ahead by what was missing, then tries again."""
    memory, _ = _drift_until_due()
    counted = memory.engine.labels_at_start
    assert counted is not None and counted >= NEEDED
    waiting = RetrainOutcome(WAITING, "waiting for labels: 120 labelled rows",
                             rows={"found": 120, "needed": NEEDED})
    labels = 200.0  # the last reading of _drift_until_due: no label since
    done = _step(memory, T0 + 60, RetrainSeen(False, waiting), labels=labels)
    state = done.memory.engine
    assert state.failures == 0 and state.last_retrain_end is None  # no budget, no cooldown
    assert state.label_offset == counted - 120
    assert done.actions == [] and done.decision.phase == "Drifting"
    assert "WaitingForLabels" in [e.reason for e in done.decision.events]
    # More labels arrive: once the files would hold enough, it starts again.
    memory, t, started = done.memory, T0 + 65, None
    while started is None and t < T0 + 200:
        labels += 10
        done = _step(memory, t, labels=labels)
        memory, t = done.memory, t + 5
        started = next((a for a in done.actions if isinstance(a, StartRetrain)), None)
    assert started is not None
    assert memory.labels.fresh - memory.engine.label_offset >= NEEDED


def test_a_retrain_past_its_timeout_is_stopped_and_failed() -> None:
    memory, _ = _drift_until_due()
    late = memory.retrain.started + 600 + 61  # timeout + grace
    done = _step(memory, late, RetrainSeen(True))
    assert [type(a) for a in done.actions] == [StopRetrain]
    assert done.memory.retrain is None and done.memory.engine.failures == 1
    assert "exceeded its timeout" in done.memory.finished.outcome.reason


def test_a_vanished_retrain_is_a_failure() -> None:
    memory, _ = _drift_until_due()
    done = _step(memory, T0 + 100, RetrainSeen(False, detail="the Job disappeared"))
    assert done.memory.engine.failures == 1
    assert done.memory.finished.outcome.outcome == FAILED
    assert done.memory.finished.outcome.reason == "the Job disappeared"


def test_a_retrain_that_cannot_start_fails_and_is_not_followed() -> None:
    memory, _ = _drift_until_due()
    done = retrain_failed_to_start(memory, T0 + 50, "no image")
    assert done.memory.retrain is None and done.memory.engine.failures == 1
    assert done.memory.finished.ran is False
    assert done.memory.engine.retrain_started is None


def test_a_retrain_found_running_is_adopted_not_duplicated() -> None:
    request = RetrainRequest(3, T0 - 300, "1", T0 - 60, "p-retrain-g1-x")
    done = adopt(Memory(), request, T0, "retraining Job p-retrain-g1-x")
    assert done.memory.retrain == request
    assert done.memory.engine.retrain_started == T0 - 60
    assert done.memory.engine.episode_start == T0 - 300
    after = _step(done.memory, T0 + 5, RetrainSeen(True), labels=10_000)
    assert after.actions == [] and after.decision.phase == "Retraining"


def test_memory_round_trips_through_its_persisted_form() -> None:
    memory, _ = _drift_until_due()
    memory = replace(memory, retrain=replace(memory.retrain, handle="job-1"))
    again = Memory.from_dict(memory.to_dict())
    assert again.engine == memory.engine and again.retrain == memory.retrain
    assert again.labels == memory.labels
    assert Memory.from_dict(None) == Memory()
    old = {**EngineState().to_dict(), "job": "x-retrain-1", "labelsBaseline": 5.0}
    assert Memory.from_dict(old).retrain is None  # a status from before: nothing followed


@pytest.mark.parametrize("fresh", [0, 149])
def test_too_few_fresh_labels_hold_the_retrain(fresh: int) -> None:
    memory = Memory(replace(EngineState(), episode_start=T0 - 50,
                            drifting={"data": False, "concept": True},
                            breaches={"data": 0, "concept": 5}, last_evaluation=T0 - 5))
    done = reconcile(memory, _obs(T0), None, POLICY, T0, generation="1",
                     serving_version="v1", fresh_labels=fresh)
    assert done.actions == [] and done.decision.phase == "Drifting"

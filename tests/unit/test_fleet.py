"""The operator's fleet windows: counters read from /metrics, differenced per replica and
summed, equal the windows of all the rows the replicas saw."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from driftkeeper.contract.rings import FeedbackRows, InputRows
from driftkeeper.drift.evaluate import (
    evaluate_concept,
    evaluate_data,
    evaluate_performance,
    locate_concept_drift,
    locate_in_sums,
)
from driftkeeper.drift.performance import estimate_window
from driftkeeper.drift.segments import SegmentSettings, segment_sums
from driftkeeper.drift.settings import ConceptSettings, DataSettings, PerformanceSettings
from driftkeeper.drift.windows import data_window, prediction_window, residual_window
from driftkeeper.model.store import ModelStore
from driftkeeper.serving.rings import RingWriter
from driftkeeper.serving.tally import Tally, update_tally
from driftkeeper_operator.counters import (
    Counters,
    data_window_of,
    estimate_window_of,
    parse_counters,
    prediction_window_of,
    residual_window_of,
    segment_window_of,
    total,
)
from driftkeeper_operator.fleet import FleetHistory, Reading
from exposition import as_classifier, classifier_residuals, tally_exposition


@pytest.fixture(scope="module")
def profile(trained_model_dir: Path):
    return ModelStore(trained_model_dir).load(with_estimator=False).profile


def _exposition(tally: Tally, directory: Path, labels: float = 0.0) -> str:
    return (tally_exposition(tally, directory) + "# TYPE driftkeeper_feedback_total counter\n"
            f"driftkeeper_feedback_total {labels}\n")


def _estimate(X: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """A stand-in loss model: squared error grows with carat."""
    return 1e5 * X[:, 0] ** 2


class Replica:
    """A pod's rings and its evaluator's tally, as the service keeps them."""

    def __init__(self, directory: Path, profile) -> None:
        directory.mkdir()
        self.directory, self.profile = directory, profile
        self.inputs = RingWriter(directory / "inputs-1.ring", InputRows(6).width, 100_000)
        self.feedback = RingWriter(directory / "feedback-1.ring", FeedbackRows(6).width, 100_000)
        self.tally: Tally | None = None
        self.labels = 0

    def serve(self, X: np.ndarray, residuals: np.ndarray, now: float) -> Counters:
        # ts, features, model version number, a made-up prediction
        self.inputs.append(np.column_stack([np.zeros(len(X)), X, np.ones(len(X)),
                                            4000.0 * X[:, 0] ** 1.7]))
        self.feedback.append(FeedbackRows(6).pack(np.zeros(len(residuals)), 1, residuals,
                                                  4000.0 * X[:, 0] ** 1.7, X))
        self.labels += len(residuals)
        self.tally, _ = update_tally(self.tally, self.profile, "v1", 1, self.directory, now,
                                     estimate=_estimate)
        return parse_counters(_exposition(self.tally, self.directory, self.labels))


def test_summed_replica_counters_equal_one_window_of_all_rows(tmp_path, profile,
                                                              encoded) -> None:
    rng = np.random.default_rng(1)
    residuals = rng.standard_t(3, 900) * 400
    X = encoded[rng.choice(len(encoded), 900, replace=False)].copy()
    X[:, 0] *= 1.3  # drifted carat: some rows beyond the reference range
    a, b = Replica(tmp_path / "a", profile), Replica(tmp_path / "b", profile)
    summed = total([a.serve(X[:500], residuals[:500], 1.0),
                    b.serve(X[500:], residuals[500:], 1.0)])
    assert summed.labels == 900
    expected = data_window(profile, X)
    got = data_window_of(profile, summed)
    assert got.rows == expected.rows == 900
    for name, counts in expected.features.items():
        np.testing.assert_array_equal(got.features[name].counts, counts.counts)
    carat = got.features["carat"]
    assert carat.over_sum == pytest.approx(expected.features["carat"].over_sum)
    assert carat.under_sum == pytest.approx(expected.features["carat"].under_sum)
    # The predictions' histogram adds up across replicas the same way.
    predictions = prediction_window_of(profile, summed)
    alone = prediction_window(profile, 4000.0 * X[:, 0] ** 1.7)
    assert predictions is not None and alone is not None
    np.testing.assert_array_equal(predictions.counts, alone.counts)
    assert summed.prediction_rows == 900 and summed.concept_rows == 900
    # So do the loss model's estimates: one sum, one count.
    estimates = estimate_window_of(profile, summed)
    assert estimates is not None and estimates.n == 900
    assert estimates.total == pytest.approx(float(_estimate(X, X[:, 0]).sum()))
    assert evaluate_performance(profile, estimates, PerformanceSettings()) == \
        evaluate_performance(profile, estimate_window(_estimate(X, X[:, 0])),
                             PerformanceSettings())
    # The verdicts are the same as on the raw rows.
    data_settings = DataSettings(features={})
    assert (evaluate_data(profile, got, data_settings)
            == evaluate_data(profile, expected, data_settings))
    concept_got = evaluate_concept(profile, residual_window_of(profile, summed),
                                   ConceptSettings())
    concept_exp = evaluate_concept(profile, residual_window(profile, residuals),
                                   ConceptSettings())
    assert concept_got.score == pytest.approx(concept_exp.score)
    # Segment sums add up across replicas, and locate drift as the rows themselves do.
    segments = segment_window_of(profile, summed)
    alone_segments = segment_sums(profile.segments.layout, X, residuals,
                                  4000.0 * X[:, 0] ** 1.7)
    assert segments is not None
    for name, sums in alone_segments.features.items():
        np.testing.assert_array_equal(segments.features[name].n, sums.n)
        np.testing.assert_allclose(segments.features[name].total, sums.total)
        np.testing.assert_allclose(segments.features[name].predictions, sums.predictions)
    settings = SegmentSettings()
    fleet = locate_in_sums(profile, segments, settings)
    rows = locate_concept_drift(profile, X, residuals, 4000.0 * X[:, 0] ** 1.7, settings)
    assert fleet is not None and rows is not None
    assert [(r.feature, r.segment, r.rows, r.flagged) for r in fleet.segments] == \
        [(r.feature, r.segment, r.rows, r.flagged) for r in rows.segments]
    np.testing.assert_allclose([r.shift for r in fleet.segments],
                               [r.shift for r in rows.segments], rtol=1e-9, atol=1e-12)
    assert [loc.message for loc in fleet.locations] == [loc.message for loc in rows.locations]
    assert concept_got.residual_ks.score == pytest.approx(concept_exp.residual_ks.score)


def test_a_classifiers_fleet_window_has_the_pods_log_loss_and_accuracy(tmp_path, profile,
                                                                      encoded) -> None:
    """Summed log loss and correct rows are differenced per replica (a restarted replica
    counting since its counters began) and summed: the fleet's concept verdict of a
    classifier has the log loss and accuracy its rows give in one pod's window."""
    classifier = as_classifier(profile)
    residuals = classifier_residuals(850, 2)
    X = encoded[:850]
    a, b = Replica(tmp_path / "a", classifier), Replica(tmp_path / "b", classifier)
    history = FleetHistory(horizon=3600)
    history.add(Reading(1.0, {"a": a.serve(X[:300], residuals[:300], 1.0),
                              "b": b.serve(X[300:500], residuals[300:500], 1.0)}))
    restarted = Replica(tmp_path / "b2", classifier)  # b's pod restarted: counters anew
    history.add(Reading(2.0, {"a": a.serve(X[500:700], residuals[500:700], 2.0),
                              "b": restarted.serve(X[700:], residuals[700:], 2.0)}))
    window = history.window("concept", "v1", size=300, max_age=3600)
    assert window.since == 1.0 and window.counts.concept_rows == 350
    fleet = evaluate_concept(classifier, residual_window_of(classifier, window.counts),
                             ConceptSettings())
    pod = evaluate_concept(classifier, residual_window(classifier, residuals[500:]),
                           ConceptSettings())
    assert pod.log_loss is not None and pod.accuracy is not None
    assert fleet.log_loss == pytest.approx(pod.log_loss)
    assert fleet.accuracy == pod.accuracy
    assert fleet.calibration == pytest.approx(pod.calibration)
    assert fleet.score == pytest.approx(pod.score)


def test_classifier_sums_are_unknown_unless_every_replica_has_them() -> None:
    """A replica that does not export them (a regression, or an older pod) makes the
    fleet's log loss and accuracy unknown rather than a partial sum."""
    with_sums = replace(_counters(100.0), log_loss_sum=30.0, correct=80.0)
    assert total([with_sums, with_sums]).log_loss_sum == 60.0
    assert total([with_sums, _counters(100.0)]).log_loss_sum is None
    assert total([with_sums, _counters(100.0)]).correct is None
    later = replace(_counters(150.0), log_loss_sum=40.0, correct=120.0)
    assert (later.minus(with_sums).log_loss_sum, later.minus(with_sums).correct) == (10.0, 40.0)
    assert later.minus(_counters(100.0)).log_loss_sum is None
    assert total([]).log_loss_sum is None


def _counters(rows: float, started: float = 0.0, version: str = "v1") -> Counters:
    return Counters(version, started, {"carat": np.array([rows])}, data_rows=rows,
                    concept_rows=rows / 2, labels=rows / 2)


def test_window_is_the_newest_with_enough_rows() -> None:
    history = FleetHistory(horizon=3600)
    for t in range(10):  # two replicas, 100 rows a second each
        history.add(Reading(float(t), {"a": _counters(100.0 * t), "b": _counters(100.0 * t)}))
    window = history.window("data", "v1", size=500, max_age=3600)
    assert window.counts.data_rows == 600  # 3 readings back: 2 x 300
    assert window.since == 6.0 and window.replicas == 2
    assert history.window("concept", "v1", size=500, max_age=3600).counts.concept_rows == 500
    # Not enough rows in maxAge: the largest window within it.
    small = history.window("data", "v1", size=10_000, max_age=4.5)
    assert small.counts.data_rows == 800 and small.since == 5.0  # from reading 5 on


def test_restarted_or_new_replicas_count_since_their_counters_began() -> None:
    history = FleetHistory(horizon=3600)
    for t in range(5):
        history.add(Reading(float(t), {"a": _counters(100.0 * t)}))
    # b restarted at 4.5 (its counters began again) and c is new, started at 4.8.
    history.add(Reading(5.0, {"a": _counters(500.0), "b": _counters(30.0, started=4.5),
                              "c": _counters(20.0, started=4.8)}))
    window = history.window("data", "v1", size=140, max_age=3600)
    assert window.counts.data_rows == 100 + 30 + 20 and window.since == 4.0


def test_only_the_serving_version_counts_and_it_is_the_majoritys() -> None:
    history = FleetHistory(horizon=3600)
    history.add(Reading(0.0, {"a": _counters(0.0), "b": _counters(0.0)}))
    history.add(Reading(1.0, {"a": _counters(100.0, started=0.5, version="v2"),
                              "b": _counters(100.0, started=0.6, version="v2"),
                              "c": _counters(900.0)}))
    assert history.serving_version() == "v2"
    window = history.window("data", "v2", size=150, max_age=3600)
    assert window.counts.data_rows == 200 and window.replicas == 2


def test_history_is_bounded_by_its_horizon() -> None:
    history = FleetHistory(horizon=10, max_readings=5)
    for t in range(30):
        history.add(Reading(float(t), {"a": _counters(float(t))}))
    assert len(history.readings) == 5 and history.readings[0].at == 25.0
    history = FleetHistory(horizon=10)
    for t in range(30):
        history.add(Reading(float(t), {"a": _counters(float(t))}))
    # One reading at (or just past) the horizon stays: "everything within maxAge" starts there.
    assert [r.at for r in history.readings][:2] == [19.0, 20.0]


def test_a_six_hour_window_at_a_five_second_interval() -> None:
    """A slow fleet (a row every 10 s) read every 5 s for 7 hours: the concept window of
    maxAge 6 h must reach back 6 h, though that is 4,320 readings; the history keeps a few
    hundred (thinned with age) and the window starts within a few percent of 6 h back."""
    interval, horizon = 5.0, 6 * 3600.0
    history = FleetHistory(horizon=horizon)
    rows_per_second = 0.1
    end = 7 * 3600
    for step in range(int(end / interval) + 1):
        t = step * interval
        history.add(Reading(t, {"a": _counters(rows_per_second * t),
                                "b": _counters(rows_per_second * t)}))
    assert len(history.readings) <= 300
    window = history.window("data", "v1", size=100_000, max_age=horizon)  # never enough rows
    assert window.since is not None
    reach = end - window.since
    assert horizon * 0.95 <= reach <= horizon  # within maxAge, and nearly all of it
    assert window.counts.data_rows == pytest.approx(2 * rows_per_second * reach)
    # The newest minutes are kept at full resolution: a small window is exact.
    small = history.window("data", "v1", size=10, max_age=horizon)
    assert small.counts.data_rows == pytest.approx(10.0) and end - small.since == 50.0


def _linear_window(history: FleetHistory, kind: str, version: str, size: int,
                   max_age: float):
    """The window search before bisection: every candidate start, newest first."""
    now = history.latest.at
    current = {r: c for r, c in history.latest.replicas.items() if c.version == version}
    if not current:
        return None
    earlier = [i for i in range(len(history.readings) - 2, -1, -1)
               if history.readings[i].at >= now - max_age]
    origin = [None] if any(c.started is not None and c.started >= now - max_age
                           for c in current.values()) or not earlier else []
    largest = None
    for index in [*earlier, *origin]:
        parts = [c.minus(history._baseline(r, c, index, now - max_age))
                 for r, c in current.items()]
        largest = (sum(p.rows(kind) for p in parts),
                   None if index is None else history.readings[index].at)
        if largest[0] >= size:
            break
    return largest


def test_bisection_finds_the_window_the_linear_search_found() -> None:
    """Random fleets (replicas restarting, joining, leaving, switching version, traffic
    bursts and pauses): the bisected window is the one a reading-by-reading search picks."""
    rng = np.random.default_rng(7)
    for trial in range(40):
        history = FleetHistory(horizon=3600)
        rows = {r: 0.0 for r in "abcd"}
        started = {r: 0.0 for r in "abcd"}
        versions = {r: "v1" for r in "abcd"}
        for step in range(int(rng.integers(2, 150))):
            t = 5.0 * step
            present = {}
            for r in rows:
                if rng.random() < 0.03:  # a restart (or a promotion to v2)
                    rows[r], started[r] = 0.0, t - 1.0
                    versions[r] = "v2" if rng.random() < 0.5 else versions[r]
                rows[r] += float(rng.choice([0, 1, 20, 300]))
                if rng.random() < 0.9:  # missing from some readings
                    present[r] = _counters(rows[r], started[r], versions[r])
            history.add(Reading(t, present))
        for _ in range(10):
            kind = "data" if rng.random() < 0.5 else "concept"
            version = "v1" if rng.random() < 0.7 else "v2"
            size = int(rng.integers(1, 20_000))
            max_age = float(rng.choice([30.0, 300.0, 3600.0]))
            window = history.window(kind, version, size, max_age)
            expected = _linear_window(history, kind, version, size, max_age)
            if expected is None:
                assert window.replicas == 0, trial
                continue
            assert (window.counts.rows(kind), window.since) == expected, (trial, size)

"""The pod's window counters: every ring row counted exactly once, as the windows bin it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from driftkeeper.contract.rings import FeedbackRows, InputRows
from driftkeeper.drift.segments import segment_sums
from driftkeeper.drift.windows import data_window, prediction_window, residual_window
from driftkeeper.model.store import ModelStore
from driftkeeper.serving.rings import RingWriter, read_ring_tail
from driftkeeper.serving.tally import Tally, load_tally, update_tally
from exposition import as_classifier, classifier_residuals, tally_exposition


@pytest.fixture(scope="module")
def profile(trained_model_dir: Path):
    return ModelStore(trained_model_dir).load(with_estimator=False).profile


WIDTH = InputRows(6).width  # ts, 6 features, model version number, prediction


def _inputs(encoded: np.ndarray, start: int, n: int, version: int = 1) -> np.ndarray:
    """Ring rows as /predict writes them; the 'prediction' is a made-up price per row."""
    rows = encoded[start:start + n]
    return np.column_stack([np.arange(len(rows), dtype=np.float64), rows,
                            np.full(len(rows), version), _prices(rows)])


def _prices(rows: np.ndarray) -> np.ndarray:
    return 4000.0 * rows[:, 0] ** 1.7


def _feedback(residuals: np.ndarray, version: int, rows: np.ndarray) -> np.ndarray:
    """Feedback ring rows as /feedback writes them (ts, version, residual, prediction, X, and
    no outcome or label: a regression's)."""
    return FeedbackRows(rows.shape[1]).pack(np.arange(len(residuals), dtype=np.float64),
                                            version, residuals, _prices(rows), rows)


def test_two_workers_counted_like_one_window(tmp_path: Path, profile, encoded) -> None:
    a = RingWriter(tmp_path / "inputs-1.ring", WIDTH, 1000)
    b = RingWriter(tmp_path / "inputs-2.ring", WIDTH, 1000)
    fb = RingWriter(tmp_path / "feedback-1.ring", FeedbackRows(6).width, 1000)
    a.append(_inputs(encoded, 0, 300))
    b.append(_inputs(encoded, 300, 200))
    residuals = np.random.default_rng(0).normal(0, 500, 400)
    fb.append(_feedback(residuals[:300], 1, encoded[:300]))
    # scored by another version: not counted
    fb.append(_feedback(residuals[300:], 2, encoded[300:400]))
    tally, changed = update_tally(None, profile, "v1", 1, tmp_path, now=10.0)
    assert changed
    expected = data_window(profile, encoded[:500])
    for name, counts in expected.features.items():
        np.testing.assert_array_equal(tally.features[name].counts, counts.counts)
    window = residual_window(profile, residuals[:300])
    np.testing.assert_array_equal(tally.residual_counts, window.counts.counts)
    assert tally.residual_positive - tally.residual_negative == pytest.approx(window.total)
    assert tally.residual_squares == pytest.approx(window.total_sq)
    assert (tally.data_rows, tally.concept_rows) == (500, 300)
    # Segment sums of the same labelled rows, as the evaluator would make them.
    expected_segments = segment_sums(profile.segments.layout, encoded[:300], residuals[:300],
                                     _prices(encoded[:300]))
    assert tally.segments is not None
    for name, sums in expected_segments.features.items():
        np.testing.assert_allclose(tally.segments.features[name].total, sums.total)
        np.testing.assert_array_equal(tally.segments.features[name].n, sums.n)
    again = Tally.from_dict(json.loads(json.dumps(tally.to_dict())))
    assert again.segments is not None
    np.testing.assert_array_equal(again.segments.features["color"].n,
                                  tally.segments.features["color"].n)


def test_rows_are_counted_once_across_updates_and_monitors(tmp_path: Path, profile,
                                                          encoded) -> None:
    ring = RingWriter(tmp_path / "inputs-1.ring", WIDTH, 1000)
    ring.append(_inputs(encoded, 0, 100))
    tally, _ = update_tally(None, profile, "v1", 1, tmp_path, now=1.0)
    tally.save(tmp_path / "tally.json")
    _, changed = update_tally(tally, profile, "v1", 1, tmp_path, now=2.0)
    assert not changed  # nothing new
    ring.append(_inputs(encoded, 100, 50))
    # The monitor died; the next one continues from the saved counters.
    successor = load_tally(tmp_path / "tally.json")
    successor, _ = update_tally(successor, profile, "v1", 1, tmp_path, now=3.0)
    assert successor.data_rows == 150
    np.testing.assert_array_equal(successor.features["carat"].counts,
                                  data_window(profile, encoded[:150]).features["carat"].counts)


def test_wrapped_ring_counts_what_is_left_and_reports_the_rest(tmp_path: Path, profile,
                                                               encoded) -> None:
    ring = RingWriter(tmp_path / "inputs-1.ring", WIDTH, 64)
    ring.append(_inputs(encoded, 0, 40))
    tally, _ = update_tally(None, profile, "v1", 1, tmp_path, now=1.0)
    for start in range(40, 240, 25):  # 200 more rows through a 64-row ring
        ring.append(_inputs(encoded, start, 25))
    tally, _ = update_tally(tally, profile, "v1", 1, tmp_path, now=2.0)
    assert tally.data_rows == 40 + 64
    assert tally.dropped_rows == 200 - 64
    kept = np.vstack([encoded[:40], encoded[240 - 64:240]])
    np.testing.assert_array_equal(tally.features["depth"].counts,
                                  data_window(profile, kept).features["depth"].counts)


def test_ring_tail_reads_across_the_wrap(tmp_path: Path) -> None:
    ring = RingWriter(tmp_path / "r.ring", 2, 10)
    ring.append(np.arange(14, dtype=np.float64).reshape(7, 2))
    rows, head, lost = read_ring_tail(tmp_path / "r.ring", 0)
    assert (head, lost) == (7, 0)
    ring.append(np.arange(100, 112, dtype=np.float64).reshape(6, 2))
    rows, head, lost = read_ring_tail(tmp_path / "r.ring", 7)
    assert (head, lost) == (13, 0)
    np.testing.assert_array_equal(rows[:, 0], [100, 102, 104, 106, 108, 110])
    # A new file (its head is below the old position) is read from its start.
    RingWriter(tmp_path / "r.ring", 2, 10).append(np.ones((3, 2)))
    rows, head, _ = read_ring_tail(tmp_path / "r.ring", 13)
    assert (len(rows), head) == (3, 3)


def test_a_new_version_starts_from_zero(tmp_path: Path, profile, encoded) -> None:
    ring = RingWriter(tmp_path / "inputs-1.ring", WIDTH, 1000)
    ring.append(_inputs(encoded, 0, 100))
    tally, _ = update_tally(None, profile, "v1", 1, tmp_path, now=1.0)
    tally, changed = update_tally(tally, profile, "v2", 2, tmp_path, now=2.0)
    assert changed and tally.model_version == "v2" and tally.started == 2.0
    assert tally.data_rows == 0  # rows counted under v1 are not counted again
    ring.append(_inputs(encoded, 100, 10))
    tally, _ = update_tally(tally, profile, "v2", 2, tmp_path, now=3.0)
    assert tally.data_rows == 10


def test_exported_counters_carry_only_the_serving_version(tmp_path: Path, profile,
                                                          encoded) -> None:
    ring = RingWriter(tmp_path / "inputs-1.ring", WIDTH, 1000)
    shifted = encoded[:50].copy()
    shifted[:, 0] = 100.0  # carat far above the reference range: the overflow bin
    versions = np.array([3] * 30 + [2] * 20)  # the last 20 were answered by v2, still busy
    predictions = np.linspace(300.0, 19000.0, 50)
    ring.append(np.column_stack([np.arange(50.0), shifted, versions, predictions]))
    seen: list[np.ndarray] = []

    def estimate(X: np.ndarray, p: np.ndarray) -> np.ndarray:  # a stand-in loss model
        seen.append(p)
        return 0.01 * p * p

    tally, _ = update_tally(None, profile, "v3", 3, tmp_path, now=1.0, estimate=estimate)
    text = tally_exposition(tally, tmp_path)
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert {s.labels["model_version"] for s in samples} == {"v3"}
    over = len(profile.features["carat"].bins.edges)
    carat = {s.labels["bin"]: s.value for s in samples
             if s.name == "driftkeeper_feature_bin_total" and s.labels["feature"] == "carat"}
    assert carat[str(over)] == 50
    distance = next(s.value for s in samples
                    if s.name == "driftkeeper_feature_outside_distance_total"
                    and s.labels == {"feature": "carat", "side": "over", "model_version": "v3"})
    top = profile.features["carat"].bins.edges[-1]
    assert distance == pytest.approx(50 * (100.0 - top))
    # Predictions: only v3's, binned as the prediction window bins them.
    by_bin = {int(s.labels["bin"]): s.value for s in samples
              if s.name == "driftkeeper_prediction_bin_total"}
    expected = prediction_window(profile, predictions[:30])
    assert expected is not None and expected.n == 30
    np.testing.assert_array_equal([by_bin[b] for b in range(len(by_bin))], expected.counts)
    rows = {s.labels["kind"]: s.value for s in samples
            if s.name == "driftkeeper_window_rows_total"}
    assert rows == {"data": 50, "concept": 0, "prediction": 30, "performance": 30}
    # Estimated squared errors: only v3's rows were estimated, and their sum is exported.
    np.testing.assert_array_equal(np.concatenate(seen), predictions[:30])
    estimated = next(s.value for s in samples
                     if s.name == "driftkeeper_estimated_squared_error_total")
    assert estimated == pytest.approx(float(np.sum(0.01 * predictions[:30] ** 2)))
    again = Tally.from_dict(json.loads(json.dumps(tally.to_dict())))
    assert (again.estimate_sum, again.estimate_rows) == (tally.estimate_sum, 30)


def test_unreadable_or_foreign_tally_file_is_no_tally(tmp_path: Path, profile) -> None:
    (tmp_path / "tally.json").write_text("{not json")
    assert load_tally(tmp_path / "tally.json") is None
    assert load_tally(tmp_path / "missing.json") is None
    (tmp_path / "tally.json").write_text('{"format": 99}')
    assert load_tally(tmp_path / "tally.json") is None
    Tally.empty(profile, "v1", 5.0).save(tmp_path / "tally.json")
    assert load_tally(tmp_path / "tally.json").started == 5.0


def _counter_values(tally: Tally, directory: Path) -> dict[str, float]:
    return {s.name: s.value
            for family in text_string_to_metric_families(tally_exposition(tally, directory))
            for s in family.samples}


def test_a_classifiers_log_loss_and_correct_rows_are_counted(tmp_path: Path, profile,
                                                             encoded) -> None:
    """A classifier's labelled rows are also counted as summed log loss and correct rows,
    exactly as its window sums them, and exported only for a classifier."""
    classifier = as_classifier(profile)
    residuals = classifier_residuals(400, 1)
    fb = RingWriter(tmp_path / "feedback-1.ring", FeedbackRows(6).width, 1000)
    fb.append(_feedback(residuals[:250], 1, encoded[:250]))
    tally, _ = update_tally(None, classifier, "v1", 1, tmp_path, now=1.0)
    fb.append(_feedback(residuals[250:], 1, encoded[250:400]))
    tally, _ = update_tally(tally, classifier, "v1", 1, tmp_path, now=2.0)
    window = residual_window(classifier, residuals)
    assert window.log_loss_sum is not None and 0 < window.correct < 400
    assert tally.log_loss_sum == pytest.approx(window.log_loss_sum)
    assert tally.correct == window.correct
    exported = _counter_values(tally, tmp_path)
    assert exported["driftkeeper_residual_log_loss_total"] == pytest.approx(window.log_loss_sum)
    assert exported["driftkeeper_residual_correct_total"] == window.correct
    again = Tally.from_dict(json.loads(json.dumps(tally.to_dict())))
    assert (again.log_loss_sum, again.correct) == (tally.log_loss_sum, tally.correct)
    # A regression's tally has neither.
    fb2 = tmp_path / "regression"
    fb2.mkdir()
    RingWriter(fb2 / "feedback-1.ring", FeedbackRows(6).width, 1000).append(
        _feedback(np.random.default_rng(0).normal(0, 500, 50), 1, encoded[:50]))
    regression, _ = update_tally(None, profile, "v1", 1, fb2, now=1.0)
    assert regression.concept_rows == 50 and regression.log_loss_sum is None
    assert not {"driftkeeper_residual_log_loss_total",
                "driftkeeper_residual_correct_total"} & set(_counter_values(regression, fb2))


def test_a_format_4_tally_still_loads(tmp_path: Path, profile, encoded) -> None:
    """Files written before the classifier sums load: a regression's counts continue, a
    classifier's restart (their counters must all cover the same rows)."""
    fb = RingWriter(tmp_path / "feedback-1.ring", FeedbackRows(6).width, 1000)
    fb.append(_feedback(np.random.default_rng(0).normal(0, 500, 60), 1, encoded[:60]))
    tally, _ = update_tally(None, profile, "v1", 1, tmp_path, now=1.0)
    old = tally.to_dict()
    old["format"] = 4
    for key in ("log_loss", "correct"):
        del old["residuals"][key]
    (tmp_path / "tally.json").write_text(json.dumps(old))
    loaded = load_tally(tmp_path / "tally.json")
    assert loaded is not None and loaded.concept_rows == 60 and loaded.log_loss_sum is None
    continued, changed = update_tally(loaded, profile, "v1", 1, tmp_path, now=2.0)
    assert not changed and continued.started == 1.0
    classifier = as_classifier(profile)
    restarted, changed = update_tally(load_tally(tmp_path / "tally.json"), classifier, "v1",
                                      1, tmp_path, now=3.0)
    assert changed and restarted.started == 3.0
    assert (restarted.concept_rows, restarted.log_loss_sum, restarted.correct) == (0, 0.0, 0)
    assert restarted.positions == loaded.positions  # rows already counted stay counted


def test_rows_binned_one_at_a_time_equal_the_batch(profile, encoded) -> None:
    """A request of one row is binned as the same row in a batch: values on bin edges,
    below and above the reference range, and unseen category codes included."""
    rows = encoded[:200].copy()
    carat = profile.features["carat"].bins.edges
    rows[:len(carat), 0] = carat  # exactly on every edge
    rows[-1, 0], rows[-2, 0] = carat[0] - 0.5, carat[-1] + 3.0  # outside the range
    rows[-3, 1] = 99  # an unseen cut code
    one_by_one = Tally.empty(profile, "v1", 0.0)
    for row in rows:
        one_by_one.add_inputs(profile, row[None, :])
    batch = Tally.empty(profile, "v1", 0.0)
    batch.add_inputs(profile, rows)
    window = data_window(profile, rows)
    for name, counted in batch.features.items():
        np.testing.assert_array_equal(one_by_one.features[name].counts, counted.counts)
        np.testing.assert_array_equal(counted.counts, window.features[name].counts)
        assert one_by_one.features[name].unseen == counted.unseen
    assert batch.features["cut"].unseen == 1
    assert one_by_one.features["carat"].under_distance == pytest.approx(0.5)
    assert one_by_one.features["carat"].over_distance == pytest.approx(3.0)

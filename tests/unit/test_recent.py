"""The monitor's copy of the rings: each row read and derived once, windows cut from it.

A row's loss estimate, log loss and segments are computed when the row is first read; the
tally counts them and every later evaluation reuses them. Windows from the copy equal
windows from the rings read afresh, across ticks, a monitor restart and a promotion.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from driftkeeper.contract.rings import FeedbackRows, InputRows
from driftkeeper.model.store import ModelStore
from driftkeeper.policy import WindowSettings, default_policy
from driftkeeper.serving import monitor
from driftkeeper.serving.recent import RecentRows
from driftkeeper.serving.rings import RingWriter
from driftkeeper.serving.runtime import ServingModel
from driftkeeper.serving.tally import update_tally

NOW = 1_000_000.0


@pytest.fixture(scope="module")
def model(trained_model_dir: Path) -> ServingModel:
    served = ServingModel.from_bundle(ModelStore(trained_model_dir).load(with_estimator=False))
    assert served.estimates_losses and served.bundle.profile.segments is not None
    return served


class CountingEstimator:
    """The model's loss model, counting the rows it is asked about."""

    def __init__(self, model: ServingModel) -> None:
        self.model, self.rows = model, 0

    def __call__(self, X: np.ndarray, predictions: np.ndarray) -> np.ndarray | None:
        self.rows += len(X)
        return self.model.estimate_squared_errors(X, predictions)


@pytest.fixture
def policy():
    small = WindowSettings(size=300, min_samples=10, max_age=1e9)
    return dataclasses.replace(default_policy(), data_window=small, concept_window=small)


def _traffic(model: ServingModel, encoded: np.ndarray, start: int, n: int, stamp: float,
             version: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Input and feedback ring rows for ``n`` diamonds, as the workers write them."""
    X = encoded[start:start + n]
    p = model.predict(X)
    residuals = np.random.default_rng(start).normal(0, 600, n)
    number = model.number if version is None else version
    stamps = stamp + np.arange(n) * 1e-3
    return (InputRows(6).pack(stamps, X, number, p),
            FeedbackRows(6).pack(stamps, number, residuals, p, X))


class Rings:
    """Two workers' input and feedback rings, capacity far above the window size."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.writers = [(RingWriter(directory / f"inputs-{w}.ring", InputRows(6).width, 20_000),
                         RingWriter(directory / f"feedback-{w}.ring", FeedbackRows(6).width,
                                    20_000)) for w in (1, 2)]

    def append(self, worker: int, rows: tuple[np.ndarray, np.ndarray]) -> None:
        self.writers[worker][0].append(rows[0])
        self.writers[worker][1].append(rows[1])


def _same_report(a, b) -> None:
    da, db = a.to_dict(), b.to_dict()
    for doc in (da, db):
        doc.pop("evaluated_at", None)
    assert da == db


def test_each_row_is_derived_once_and_windows_equal_fresh_reads(tmp_path: Path, model,
                                                               encoded, policy) -> None:
    rings = Rings(tmp_path)
    estimator = CountingEstimator(model)
    recent, tally = RecentRows(), None
    served = 0
    for tick in range(4):
        for worker in (0, 1):
            start = 2000 * tick + 1000 * worker
            rings.append(worker, _traffic(model, encoded, start, 400, NOW + tick))
            served += 400
        tally, _ = update_tally(tally, model.bundle.profile, model.version, model.number,
                                tmp_path, NOW + tick, estimate=estimator, recent=recent,
                                sizes=monitor.window_sizes(policy))
        for _ in range(3):  # evaluations between counts derive nothing again
            kept, _, _ = monitor.evaluate_windows(model, policy, recent, NOW + tick)
        assert estimator.rows == served  # every row estimated exactly once
        _same_report(kept, monitor.evaluate(model, policy, tmp_path, NOW + tick))
        # The copy holds a window's rows per ring, whatever the rings' capacity.
        assert all(len(r) <= 300 for r in recent.held("inputs") + recent.held("feedback"))
    assert tally is not None and tally.data_rows == served and tally.concept_rows == served
    assert tally.estimate_rows == served


def test_a_restarted_monitor_counts_nothing_twice_and_sees_the_same_window(
        tmp_path: Path, model, encoded, policy) -> None:
    rings = Rings(tmp_path)
    for worker in (0, 1):
        rings.append(worker, _traffic(model, encoded, 1000 * worker, 500, NOW))
    sizes = monitor.window_sizes(policy)
    tally, _ = update_tally(None, model.bundle.profile, model.version, model.number, tmp_path,
                            NOW, estimate=model.estimate_squared_errors, recent=RecentRows(),
                            sizes=sizes)
    counted = (tally.data_rows, tally.concept_rows, tally.estimate_rows)
    # A new monitor: a new copy, the tally's positions from its file.
    restarted = RecentRows()
    tally, _ = update_tally(tally, model.bundle.profile, model.version, model.number,
                            tmp_path, NOW + 1, estimate=model.estimate_squared_errors,
                            recent=restarted, sizes=sizes)
    assert (tally.data_rows, tally.concept_rows, tally.estimate_rows) == counted
    report, _, _ = monitor.evaluate_windows(model, policy, restarted, NOW + 1)
    assert report.data.samples == 300 and report.concept.samples == 300
    _same_report(report, monitor.evaluate(model, policy, tmp_path, NOW + 1))
    rings.append(0, _traffic(model, encoded, 3000, 50, NOW + 2))
    tally, _ = update_tally(tally, model.bundle.profile, model.version, model.number,
                            tmp_path, NOW + 2, estimate=model.estimate_squared_errors,
                            recent=restarted, sizes=sizes)
    assert (tally.data_rows, tally.concept_rows, tally.estimate_rows) == tuple(
        c + 50 for c in counted)


def test_rows_of_a_version_not_yet_served_are_estimated_once_it_serves(
        tmp_path: Path, model, encoded, policy) -> None:
    """Workers load a new version before the monitor: their rows count under the old one
    (unestimated: not its rows) and are estimated when the monitor moves to the new one."""
    rings = Rings(tmp_path)
    successor = dataclasses.replace(model, number=model.number + 1)
    rings.append(0, _traffic(model, encoded, 0, 200, NOW, version=successor.number))
    recent, sizes = RecentRows(), monitor.window_sizes(policy)
    tally, _ = update_tally(None, model.bundle.profile, model.version, model.number, tmp_path,
                            NOW, estimate=model.estimate_squared_errors, recent=recent,
                            sizes=sizes)
    assert tally.data_rows == 200 and tally.estimate_rows == 0
    estimator = CountingEstimator(successor)
    renamed = dataclasses.replace(successor.bundle, version=f"{model.version}-next")
    successor = dataclasses.replace(successor, bundle=renamed)
    tally, _ = update_tally(tally, successor.bundle.profile, successor.version,
                            successor.number, tmp_path, NOW + 1, estimate=estimator,
                            recent=recent, sizes=sizes)
    assert estimator.rows == 200 and tally.data_rows == 0  # a new version counts from zero
    report, _, _ = monitor.evaluate_windows(successor, policy, recent, NOW + 1)
    assert report.performance.samples == 200
    _same_report(report, monitor.evaluate(successor, policy, tmp_path, NOW + 1))


def test_rows_overwritten_before_they_were_read_are_dropped_not_counted(
        tmp_path: Path, model, encoded, policy) -> None:
    writer = RingWriter(tmp_path / "inputs-1.ring", InputRows(6).width, 100)
    recent, sizes = RecentRows(), monitor.window_sizes(policy)
    writer.append(_traffic(model, encoded, 0, 80, NOW)[0])
    tally, _ = update_tally(None, model.bundle.profile, model.version, model.number, tmp_path,
                            NOW, estimate=model.estimate_squared_errors, recent=recent,
                            sizes=sizes)
    writer.append(_traffic(model, encoded, 100, 250, NOW + 1)[0])  # wraps: 150 overwritten
    tally, _ = update_tally(tally, model.bundle.profile, model.version, model.number,
                            tmp_path, NOW + 1, estimate=model.estimate_squared_errors,
                            recent=recent, sizes=sizes)
    assert tally.data_rows == 180 and tally.dropped_rows == 150
    assert len(recent.held("inputs")[0]) == 100  # all the ring still holds

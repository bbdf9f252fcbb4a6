"""Training from labelled feedback: the store, the strategies, and the fast path."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from driftkeeper.errors import TrainingError
from driftkeeper.model.estimators import RecalibratedRegressor
from driftkeeper.model.feedback import FeedbackStore
from driftkeeper.model.predictor import TreePredictor
from driftkeeper.model.store import ModelStore
from driftkeeper.model.train import TrainingConfig, train
from driftkeeper.schema import DIAMONDS_SCHEMA
from traffic import to_rows


def _dearer(diamonds, n: int, seed: int):
    rows = diamonds.sample(n, random_state=seed)
    dear = rows["color"].isin(["D", "E", "F"])
    return rows.assign(price=np.where(dear, rows["price"] * 1.25, rows["price"]))


def _store(root: Path, rows) -> FeedbackStore:
    store = FeedbackStore(root / "feedback", DIAMONDS_SCHEMA)
    store.append(to_rows(rows, with_price=True), "v1", rows["price"].to_numpy())
    store.close()
    return store


def test_store_reads_back_filters_and_skips_torn_lines(tmp_path: Path, diamonds) -> None:
    store = _store(tmp_path, diamonds.head(30))
    time.sleep(0.01)
    middle = time.time()
    time.sleep(0.01)
    store.append(to_rows(diamonds.iloc[30:40], with_price=True), "v2",
                 diamonds["price"].iloc[30:40].to_numpy())
    store.close()
    segment = sorted((tmp_path / "feedback").glob("*.csv"))[-1]
    with open(segment, "a") as fh:
        fh.write("1e12,v2,100,0.3,Ide")  # a crash mid-line
    assert len(store.read()) == 40
    assert store.count() == 41  # count reads only the time column: the torn line is cheap
    assert list(store.read(since=middle)["model_version"].unique()) == ["v2"]
    assert len(store.read(until=middle)) == 30
    assert len(store.read(limit=5)) == 5
    assert store.read()["cut"].dtype.ordered


def test_store_is_bounded(tmp_path: Path, diamonds) -> None:
    store = FeedbackStore(tmp_path / "fb", DIAMONDS_SCHEMA, max_rows=100, segment_rows=40)
    for i in range(10):
        rows = diamonds.iloc[i * 40:(i + 1) * 40]
        store.append(to_rows(rows, with_price=True), "v1", rows["price"].to_numpy())
    store.close()
    kept = len(store.read())
    assert 100 <= kept <= 140
    assert store.read()["price"].iloc[-1] == diamonds["price"].iloc[399]


def test_recalibration_learns_a_concept_change_from_few_labels(model_dir: Path,
                                                               diamonds) -> None:
    _store(model_dir, _dearer(diamonds, 1000, seed=1))
    result = train(model_dir, TrainingConfig(feedback_dir=str(model_dir / "feedback"),
                                             calibration_trials=1000, promote=False))
    scores = result.metrics["candidates_rmse"]
    assert set(scores) == {"refit", "recalibrate"}
    assert result.metrics["strategy"] == "recalibrate"
    assert scores["recalibrate"] < scores["refit"]
    bundle = ModelStore(model_dir).load(result.version)
    assert isinstance(bundle.model, RecalibratedRegressor)
    assert bundle.profile.residuals.n == 1000  # every label held out once (5-fold)
    assert bundle.profile.n_reference == 1000  # drift is measured against recent inputs
    assert bundle.metadata["training"]["feedback_until"] > 0
    assert bundle.metadata["model"]["kind"] == "hgb+recalibrated"
    fresh = _dearer(diamonds, 3000, seed=9)
    X = DIAMONDS_SCHEMA.encode(fresh)
    old = ModelStore(model_dir).load("v1").model
    rmse = lambda m: float(np.sqrt(np.mean((fresh["price"] - m.predict(X)) ** 2)))  # noqa: E731
    assert rmse(bundle.model) < 0.75 * rmse(old)


def test_exported_predictor_agrees_for_recalibrated_models(model_dir: Path, diamonds) -> None:
    _store(model_dir, _dearer(diamonds, 600, seed=2))
    result = train(model_dir, TrainingConfig(feedback_dir=str(model_dir / "feedback"),
                                             strategy="recalibrate", calibration_trials=1000))
    bundle = ModelStore(model_dir).load(result.version)
    assert result.metrics["serving_export"] is True
    predictor = TreePredictor.load(bundle.predictor_path)
    assert len(predictor.stages) == 2  # the base trees, then the correction
    X = DIAMONDS_SCHEMA.encode(diamonds.sample(2000, random_state=4))
    expected = bundle.model.predict(X)
    np.testing.assert_allclose(predictor.predict(X), expected, rtol=1e-12)
    np.testing.assert_allclose([predictor.predict_row(r) for r in X[:300].tolist()],
                               expected[:300], rtol=1e-12)


def test_strategy_choices(model_dir: Path, tmp_path: Path, diamonds) -> None:
    _store(model_dir, _dearer(diamonds, 600, seed=3))
    refit = train(model_dir, TrainingConfig(feedback_dir=str(model_dir / "feedback"),
                                            strategy="refit", calibration_trials=1000,
                                            promote=False))
    assert set(refit.metrics["candidates_rmse"]) == {"refit"}
    empty = tmp_path / "empty"
    _store(empty, _dearer(diamonds, 600, seed=3))
    with pytest.raises(TrainingError, match="needs a current model"):
        train(empty, TrainingConfig(feedback_dir=str(empty / "feedback"),
                                    strategy="recalibrate"))


def test_too_few_labels_fall_back_to_the_base_split(model_dir: Path, diamonds) -> None:
    _store(model_dir, _dearer(diamonds, 100, seed=5))
    result = train(model_dir, TrainingConfig(feedback_dir=str(model_dir / "feedback"),
                                             min_feedback_rows=500, calibration_trials=1000))
    assert result.metrics["holdout_rows"] == 10788
    assert result.metrics["evaluation"] == "20% held out"


def test_repeated_rows_never_straddle_folds() -> None:
    """A resampled small table repeats rows; a repeat scored out of fold by a model that
    trained on its twin would make the out-of-fold error (the concept reference) too good."""
    from driftkeeper.model.train import _group_folds

    rng = np.random.default_rng(3)
    distinct = rng.normal(size=(50, 3))
    X = distinct[rng.integers(0, 50, 400)]
    folds = _group_folds(X, 5, seed=1)
    assert sorted(np.concatenate([test for _, test in folds]).tolist()) == list(range(400))
    for train_idx, test_idx in folds:
        seen = {row.tobytes() for row in X[train_idx]}
        assert not any(row.tobytes() in seen for row in X[test_idx])
        assert 40 <= len(test_idx) <= 120  # about a fifth each

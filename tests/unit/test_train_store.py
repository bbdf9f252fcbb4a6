"""Training writes complete, versioned artefacts atomically; failures change nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from driftkeeper.errors import DataError, ModelStoreError, TrainingError
from driftkeeper.model import store as store_module
from driftkeeper.model.estimators import build_estimator
from driftkeeper.model.store import LOSS_FILE, PREDICTOR_FILE, REQUIRED_FILES, ModelStore
from driftkeeper.model.train import TrainingConfig, train
from driftkeeper.schema import DIAMONDS_SCHEMA

LAB_FOREST_RMSE = 615.9  # the lab's RandomForest(100), same split, measured for the issue


def test_trained_version_layout(trained_model_dir: Path) -> None:
    store = ModelStore(trained_model_dir)
    assert store.current_version() == "v1"
    assert (trained_model_dir / "current").is_symlink()
    version = trained_model_dir / "versions" / "v1"
    assert sorted(p.name for p in version.iterdir()) == sorted(
        [*REQUIRED_FILES, PREDICTOR_FILE, LOSS_FILE])
    metrics = json.loads((version / "metrics.json").read_text())
    assert {"rmse", "mae", "r2"} <= set(metrics)
    meta = json.loads((version / "metadata.json").read_text())
    assert meta["parent"] is None
    assert meta["schema"]["features"][1]["levels"][-1] == "Ideal"
    assert {"scikit-learn", "numpy", "pandas", "python"} <= set(meta["versions"])
    assert meta["training"]["data_hash"]["base"].startswith("sha256:")
    assert meta["training"]["rows"]["holdout"] == metrics["holdout_rows"] == 10788


def test_default_model_beats_the_lab_forest_and_is_small(trained_model_dir: Path) -> None:
    version = trained_model_dir / "versions" / "v1"
    metrics = json.loads((version / "metrics.json").read_text())
    assert metrics["rmse"] <= LAB_FOREST_RMSE
    assert metrics["r2"] >= 0.976
    assert (version / "model.joblib").stat().st_size <= 5 * 1024 * 1024


def test_profile_holds_the_reference(trained_model_dir: Path) -> None:
    bundle = ModelStore(trained_model_dir).load()
    profile = bundle.profile
    assert profile.n_reference == 43152  # the 80% training split
    assert profile.residuals is not None and profile.residuals.n == 10788
    assert profile.residuals.rmse == pytest.approx(bundle.metrics["rmse"])
    assert set(profile.features["carat"].null) == {"ks", "wasserstein", "psi"}
    assert set(profile.features["cut"].null) == {"jensenshannon", "psi", "chisquare"}


def test_second_version_records_parent_and_moves_current(model_dir: Path) -> None:
    result = train(model_dir, TrainingConfig(seed=7, calibration_trials=1000))
    store = ModelStore(model_dir)
    assert result.version == "v2" and store.current_version() == "v2"
    assert store.load().metadata["parent"] == "v1"
    assert store.versions() == ["v1", "v2"]


def test_no_promote_leaves_current(model_dir: Path) -> None:
    result = train(model_dir, TrainingConfig(promote=False, calibration_trials=1000))
    store = ModelStore(model_dir)
    assert result.version == "v2" and store.current_version() == "v1"
    store.promote("v2")
    assert store.current_version() == "v2"


def test_failed_training_changes_nothing(model_dir: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in (model_dir / "versions").iterdir())
    bad = tmp_path / "bad.csv"
    bad.write_text("carat,cut\n0.3,Ideal\n")
    with pytest.raises(DataError):
        train(model_dir, TrainingConfig(data=str(bad)))
    assert sorted(p.name for p in (model_dir / "versions").iterdir()) == before
    assert ModelStore(model_dir).current_version() == "v1"


def test_crash_while_writing_leaves_no_version(model_dir: Path, monkeypatch) -> None:
    """A crash after the model file is written but before the rest: no v2, current intact."""
    import driftkeeper.model.train as train_module

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(train_module, "write_json", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        train(model_dir, TrainingConfig(calibration_trials=1000))
    assert ModelStore(model_dir).versions() == ["v1"]
    assert not list((model_dir / "versions").glob(".tmp-*"))
    assert ModelStore(model_dir).current_version() == "v1"


def test_incomplete_version_is_not_loaded_or_promoted(model_dir: Path) -> None:
    partial = model_dir / "versions" / "v9"
    partial.mkdir()
    (partial / "model.joblib").write_bytes(b"half")
    store = ModelStore(model_dir)
    assert "v9" not in store.versions()
    with pytest.raises(ModelStoreError):
        store.promote("v9")
    with pytest.raises(ModelStoreError):
        store.load("v9")
    assert store.current_version() == "v1"


def test_empty_store_says_how_to_train(tmp_path: Path) -> None:
    with pytest.raises(ModelStoreError, match="driftkeeper train"):
        ModelStore(tmp_path).load()


def test_feedback_only_without_rows_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="nothing to train on"):
        train(tmp_path, TrainingConfig(include_base=False, feedback_dir=str(tmp_path / "fb")))


def test_rf_is_the_labs_forest(tmp_path: Path, diamonds) -> None:
    """--model rf builds the lab's pipeline: scaler + one-hot (first dropped) + 100 trees."""
    forest = build_estimator("rf", DIAMONDS_SCHEMA, seed=42)
    pre, reg = forest.named_steps["preprocessor"], forest.named_steps["regressor"]
    assert reg.n_estimators == 100 and reg.random_state == 42
    kinds = {name: type(t).__name__ for name, t, _ in pre.transformers}
    assert kinds == {"num": "StandardScaler", "cat": "OneHotEncoder"}
    assert pre.transformers[1][1].drop == "first"
    small = tmp_path / "small.csv"
    diamonds.sample(2000, random_state=0).to_csv(small, index=False)
    result = train(tmp_path / "m", TrainingConfig(model="rf", data=str(small),
                                                   calibration_trials=1000))
    bundle = ModelStore(tmp_path / "m").load()
    assert bundle.metadata["model"]["kind"] == "rf"
    X = DIAMONDS_SCHEMA.encode(diamonds.head(5))
    assert np.all(np.isfinite(bundle.model.predict(X)))
    assert result.metrics["r2"] > 0.9


def test_concurrent_writers_get_distinct_versions(model_dir: Path, monkeypatch) -> None:
    """Two trainers finishing at once must not overwrite each other's version."""
    store = ModelStore(model_dir)

    def fill(tmp: Path) -> None:
        for name in REQUIRED_FILES:
            (tmp / name).write_text("{}")

    # The race: another trainer takes v2 after this one chose the number and before its
    # rename. The rename fails on the non-empty v2 and the store retries with v3.
    real_rename, attempts = os.rename, []

    def rename_after_a_rival(src, dst):
        attempts.append(Path(dst).name)
        if len(attempts) == 1:
            (model_dir / "versions" / "v2").mkdir()
            (model_dir / "versions" / "v2" / "marker").write_text("someone else's")
        return real_rename(src, dst)

    monkeypatch.setattr(store_module.os, "rename", rename_after_a_rival)
    version = store.write_version(fill, promote=False)
    assert attempts == ["v2", "v3"]  # the retry happened
    assert version == "v3"
    assert (model_dir / "versions" / "v2" / "marker").read_text() == "someone else's"

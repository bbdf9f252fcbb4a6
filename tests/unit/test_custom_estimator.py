"""Bring your own estimator: --estimator factories, --model-file pickles, their retraining,
the export when the model allows it, and corrections for any regression target."""

from __future__ import annotations

import logging
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import train_test_split

import custom_estimators as ce
from driftkeeper.cli import EXIT_ERROR, EXIT_OK, main
from driftkeeper.errors import TrainingError
from driftkeeper.files import sha256_file
from driftkeeper.inference import infer_schema
from driftkeeper.model.custom import TableModel, sample_weight_kwargs
from driftkeeper.model.estimators import RATIO_FLOOR, RecalibratedRegressor
from driftkeeper.model.export import verified_export
from driftkeeper.model.feedback import FeedbackStore
from driftkeeper.model.predictor import TreePredictor
from driftkeeper.model.retrain import FAILED, retrain
from driftkeeper.model.store import ModelStore
from driftkeeper.model.train import TrainingConfig, train
from driftkeeper.policy import parse_policy
from driftkeeper.schema import DIAMONDS_SCHEMA
from driftkeeper.serving.runtime import ModelHolder

FACTORY = "custom_estimators:ridge_pipeline"
FAST = {"calibration_trials": 200, "small_table_rows": 0}  # the 80/20 split these check
POLICY = {"retraining": {"strategy": "refit", "trainingData": {"minFeedbackRows": 300}},
          "promotion": {"evaluationRows": 100}}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """Diabetes with a text categorical (sex), as a user's CSV would have it."""
    frame = load_diabetes(as_frame=True).frame
    return frame.assign(sex=np.where(frame["sex"] > 0, "M", "F"))


@pytest.fixture(scope="module")
def csv(table: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("table") / "diabetes.csv"
    table.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def schema(table: pd.DataFrame):
    return infer_schema(table, "target")


def _split(table: pd.DataFrame, schema) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows training fits and holds out (the default 80/20 split, seed 42)."""
    X = table[schema.names]
    return tuple(train_test_split(X, test_size=0.2, random_state=42))  # type: ignore[return-value]


def _label(model_dir: Path, schema, rows: pd.DataFrame) -> None:
    store = FeedbackStore(model_dir / "feedback", schema)
    records = rows[[*schema.names, "target"]].to_dict("records")
    store.append(records, "v1", rows["target"].to_numpy())
    store.close()


def _shifted(table: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """A world where men's targets rose by 60 (rows resampled, with a little noise)."""
    rng = np.random.default_rng(seed)
    rows = table.sample(n, replace=True, random_state=seed).reset_index(drop=True)
    target = rows["target"] + np.where(rows["sex"] == "M", 60.0, 0.0) + rng.normal(0, 5, n)
    return rows.assign(target=target)


# -- --estimator ----------------------------------------------------------------------------


def test_a_pipeline_factory_trains_end_to_end_and_is_served_from_the_pickle(
        tmp_path: Path, table: pd.DataFrame, csv: Path, schema) -> None:
    calls = len(ce.CALLS)
    result = train(tmp_path, TrainingConfig(estimator=FACTORY, data=str(csv), **FAST),
                   schema=schema)
    assert ce.CALLS[calls]["schema"] == schema and ce.CALLS[calls]["seed"] == 42
    bundle = ModelStore(tmp_path).load()
    assert bundle.metadata["model"]["kind"] == "custom"
    assert bundle.metadata["model"]["source"] == "factory"
    assert bundle.metadata["model"]["estimator"] == FACTORY
    assert bundle.metadata["model"]["estimator_class"] == "Pipeline"
    assert result.metrics["serving_export"] is False and bundle.predictor_path is None
    # What the user's pipeline, fitted by them on their frame's same 80%, predicts.
    fit_rows, held_out = _split(table, schema)
    own = ce.ridge_pipeline().fit(fit_rows, table.loc[fit_rows.index, "target"])
    X = schema.encode(table)
    np.testing.assert_allclose(bundle.model.predict(X), own.predict(table[schema.names]),
                               rtol=1e-9)
    residuals = table.loc[held_out.index, "target"] - own.predict(held_out)
    assert result.metrics["rmse"] == pytest.approx(float(np.sqrt(np.mean(residuals ** 2))))
    # The service's own loading path serves the pickle (there are no arrays).
    holder = ModelHolder(ModelStore(tmp_path))
    assert holder.refresh()
    assert isinstance(holder.model.predictor, TableModel)
    np.testing.assert_allclose(holder.model.predict(X[:50]), own.predict(table[schema.names][:50]),
                               rtol=1e-9)


def test_a_bare_gradient_boosting_factory_on_numbers_is_exported(tmp_path: Path,
                                                                  table: pd.DataFrame) -> None:
    numbers = table.drop(columns=["sex"])
    path = tmp_path / "numbers.csv"
    numbers.to_csv(path, index=False)
    schema = infer_schema(numbers, "target")
    result = train(tmp_path / "m", TrainingConfig(estimator="custom_estimators:bare_hgb",
                                                  data=str(path), seed=7, **FAST), schema=schema)
    bundle = ModelStore(tmp_path / "m").load()
    assert result.metrics["serving_export"] is True and bundle.predictor_path is not None
    assert bundle.model.estimator_.random_state == 7  # random_state= receives the seed
    X = schema.encode(numbers)
    np.testing.assert_array_equal(TreePredictor.load(bundle.predictor_path).predict(X),
                                  bundle.model.predict(X))


def test_gradient_boosting_over_a_categorical_is_not_exported(table: pd.DataFrame,
                                                             schema) -> None:
    """Its input (category text) is not the encoded matrix: the pickle serves it."""
    X = schema.encode(table)
    frame_hgb = HistGradientBoostingRegressor(max_iter=10, categorical_features=["sex"])
    model = TableModel(frame_hgb, schema).fit(X, table["target"])
    assert model.encoded_input_model() is None
    assert verified_export(model, X) is None


@pytest.mark.parametrize(("spec", "message"), [
    ("custom_estimators.ridge_pipeline", "expected package.module:factory"),
    ("no_such_module_dk:make", "cannot import module 'no_such_module_dk'"),
    ("custom_estimators:missing_factory", "has no attribute 'missing_factory'"),
    ("custom_estimators:NOT_CALLABLE", "is a int, not a callable"),
    ("custom_estimators:not_an_estimator", "got a str, which has no fit or predict"),
    ("custom_estimators:broken", "the factory raised RuntimeError: no licence"),
])
def test_estimator_errors_name_the_flag(tmp_path: Path, csv: Path, schema, spec: str,
                                        message: str) -> None:
    with pytest.raises(TrainingError, match="--estimator") as info:
        train(tmp_path, TrainingConfig(estimator=spec, data=str(csv), **FAST), schema=schema)
    assert message in str(info.value)
    assert ModelStore(tmp_path).versions() == []


def test_weights_reach_the_final_step_or_are_dropped_with_a_warning(
        table: pd.DataFrame, schema, caplog) -> None:
    X, y = schema.encode(table), table["target"].to_numpy()
    weight = np.where(table["sex"] == "M", 50.0, 1.0)
    assert set(sample_weight_kwargs(ce.ridge_pipeline(), weight)) == {"ridge__sample_weight"}
    assert sample_weight_kwargs(ce.knn_pipeline(), weight) == {}
    weighted = TableModel(ce.ridge_pipeline(), schema).fit(X, y, sample_weight=weight)
    plain = TableModel(ce.ridge_pipeline(), schema).fit(X, y)
    assert not np.allclose(weighted.predict(X), plain.predict(X))  # the weights counted
    with caplog.at_level(logging.WARNING, "driftkeeper.train"):
        knn = TableModel(ce.knn_pipeline(), schema).fit(X, y, sample_weight=weight)
    assert "takes no sample_weight" in caplog.text
    np.testing.assert_array_equal(knn.predict(X),
                                  TableModel(ce.knn_pipeline(), schema).fit(X, y).predict(X))


def test_unknown_and_missing_categories_reach_the_pipeline_as_nan(table: pd.DataFrame,
                                                                  schema) -> None:
    model = TableModel(ce.ridge_pipeline(), schema)
    X = schema.encode(table.head(3))
    X[1, schema.index("sex")] = -1.0
    X[2, schema.index("sex")] = np.nan
    frame = model.frame(X)
    assert list(frame.columns) == schema.names
    assert frame["sex"].iloc[0] == table["sex"].iloc[0]
    assert frame["sex"].iloc[1:].isna().all()
    assert frame["bmi"].tolist() == table["bmi"].head(3).tolist()


def test_retrain_with_feedback_calls_the_factory_again(tmp_path: Path, table: pd.DataFrame,
                                                       csv: Path, schema) -> None:
    train(tmp_path, TrainingConfig(estimator=FACTORY, data=str(csv), **FAST), schema=schema)
    _label(tmp_path, schema, _shifted(table, 600, seed=1))
    calls = len(ce.CALLS)
    outcome = retrain(tmp_path, parse_policy(POLICY), since=0.0, data=str(csv))
    assert outcome.outcome != FAILED, outcome.reason
    assert len(ce.CALLS) > calls  # every fold and the final refit build it afresh
    candidate = ModelStore(tmp_path).load(outcome.candidate)
    assert candidate.metadata["model"]["kind"] == "custom"
    assert candidate.metadata["model"]["estimator"] == FACTORY
    assert candidate.metadata["training"]["estimator"] == FACTORY
    assert outcome.candidate_rmse < outcome.serving_rmse  # it learnt the shifted world


# -- --model-file ---------------------------------------------------------------------------


@pytest.fixture
def pickled(tmp_path: Path, table: pd.DataFrame, schema) -> tuple[Path, object]:
    """A pipeline the user fitted on their whole frame and saved."""
    own = ce.ridge_pipeline().fit(table[schema.names], table["target"])
    path = tmp_path / "mine.joblib"
    joblib.dump(own, path)
    return path, own


def test_model_file_end_to_end_through_the_cli(tmp_path: Path, table: pd.DataFrame,
                                               csv: Path, schema, pickled, capsys,
                                               caplog) -> None:
    path, own = pickled
    out = tmp_path / "models"
    with caplog.at_level(logging.WARNING, "driftkeeper.train"):
        code = main(["train", "--output", str(out), "--data", str(csv), "--target", "target",
                     "--model-file", str(path), "--json"])
    assert code == EXIT_OK, capsys.readouterr().err
    assert "only give a file you trust" in caplog.text
    bundle = ModelStore(out).load()
    model = bundle.metadata["model"]
    assert (model["kind"], model["source"], model["refit"]) == ("custom", "file", True)
    assert model["file_sha256"] == sha256_file(path)
    assert "may have been in its training data" in bundle.metrics["evaluation"]
    assert bundle.metrics["strategy"] == "file"
    # Not refitted: the user's fitted pipeline, predicting what it predicted for them.
    X = schema.encode(table)
    np.testing.assert_allclose(bundle.model.predict(X), own.predict(table[schema.names]),
                               rtol=1e-12)
    _, held_out = _split(table, schema)
    assert bundle.metrics["holdout_rows"] == len(held_out)


def test_model_file_errors(tmp_path: Path, csv: Path, pickled, capsys) -> None:
    args = ["train", "--output", str(tmp_path / "m"), "--data", str(csv), "--target", "target"]
    assert main([*args, "--model-file", str(tmp_path / "absent.joblib")]) == EXIT_ERROR
    assert f"--model-file {tmp_path / 'absent.joblib'}: no such file" in capsys.readouterr().err
    garbage = tmp_path / "garbage.joblib"
    garbage.write_bytes(b"not a pickle")
    assert main([*args, "--model-file", str(garbage)]) == EXIT_ERROR
    assert "cannot be loaded" in capsys.readouterr().err
    assert main([*args, "--model-file", str(pickled[0]), "--feedback",
                 str(tmp_path)]) == EXIT_ERROR
    assert "cannot be combined with --feedback" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: one model source only
        main([*args, "--model-file", str(pickled[0]), "--estimator", FACTORY])
    assert "not allowed with argument" in capsys.readouterr().err
    assert ModelStore(tmp_path / "m").versions() == []


def test_retrain_of_a_model_file_refits_a_clone(tmp_path: Path, table: pd.DataFrame,
                                                csv: Path, schema, pickled) -> None:
    path, own = pickled
    train(tmp_path, TrainingConfig(model_file=str(path), data=str(csv), **FAST), schema=schema)
    path.unlink()  # the retrain needs the stored model, not the user's file
    _label(tmp_path, schema, _shifted(table, 600, seed=2))
    outcome = retrain(tmp_path, parse_policy(POLICY), since=0.0, data=str(csv))
    assert outcome.outcome != FAILED, outcome.reason
    candidate = ModelStore(tmp_path).load(outcome.candidate)
    assert candidate.metadata["model"]["kind"] == "custom"  # refit, not recalibrated
    assert candidate.metadata["model"]["source"] == "file"
    assert candidate.metadata["training"]["clone_current"] is True
    refitted = candidate.model.estimator_
    assert refitted is not candidate.model.estimator  # fitted as a copy
    X = schema.encode(table)
    assert not np.allclose(candidate.model.predict(X), own.predict(table[schema.names]))


def test_a_model_that_cannot_be_cloned_can_only_be_recalibrated(
        tmp_path: Path, table: pd.DataFrame, csv: Path, schema) -> None:
    own = ce.MeanOfColumn("bmi", 900.0).fit(table[schema.names], table["target"])
    path = tmp_path / "own.pkl"
    joblib.dump(own, path)
    train(tmp_path, TrainingConfig(model_file=str(path), data=str(csv), **FAST), schema=schema)
    assert ModelStore(tmp_path).load().metadata["model"]["refit"] is False
    _label(tmp_path, schema, _shifted(table, 400, seed=3))
    feedback = {"feedback_dir": str(tmp_path / "feedback"), "data": str(csv),
                "min_feedback_rows": 300, "clone_current": True, **FAST}
    with pytest.raises(TrainingError, match="'refit' needs a fresh copy") as info:
        train(tmp_path, TrainingConfig(strategy="refit", **feedback), schema=schema)
    assert "'recalibrate'" in str(info.value)
    result = train(tmp_path, TrainingConfig(strategy="auto", **feedback), schema=schema)
    assert set(result.metrics["candidates_rmse"]) == {"recalibrate"}
    model = ModelStore(tmp_path).load(result.version).metadata["model"]
    assert (model["kind"], model["source"]) == ("custom+recalibrated", "file")


# -- RecalibratedRegressor on any target ----------------------------------------------------


def _world(n: int, seed: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """A target with negative values; ``shift`` is added where the third feature is > 0."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = 50 * X[:, 0] - 30 * X[:, 1] - 20 + shift * (X[:, 2] > 0) + rng.normal(0, 3, n)
    return X, y


def test_an_additive_correction_learns_a_shift_of_a_target_with_negatives() -> None:
    X, y = _world(4000, seed=0, shift=0.0)
    base = HistGradientBoostingRegressor(max_iter=50, random_state=0).fit(X, y)
    X_new, y_new = _world(1000, seed=1, shift=40.0)
    model = RecalibratedRegressor(base, random_state=0).fit(X_new, y_new)
    assert model.mode_ == "difference"
    X_test, y_test = _world(2000, seed=2, shift=40.0)
    rmse = lambda m: float(np.sqrt(np.mean((y_test - m.predict(X_test)) ** 2)))  # noqa: E731
    assert rmse(model) < 0.5 * rmse(base)
    arrays = verified_export(model, X_test)
    assert arrays is not None
    assert int(arrays["format"][0]) == 2 and arrays["additive"].tolist() == [0, 1]
    predictor = TreePredictor.from_arrays(arrays)
    np.testing.assert_array_equal(predictor.predict(X_test), model.predict(X_test))
    np.testing.assert_array_equal([predictor.predict_row(r) for r in X_test[:100].tolist()],
                                  model.predict(X_test[:100]))


def test_a_positive_target_keeps_the_ratio_correction_and_format_one(diamonds) -> None:
    rows = diamonds.sample(3000, random_state=5)
    X, y = DIAMONDS_SCHEMA.encode(rows), rows["price"].to_numpy()
    base = HistGradientBoostingRegressor(max_iter=20, random_state=0).fit(X[:2000], y[:2000])
    model = RecalibratedRegressor(base, random_state=0).fit(X[2000:], y[2000:] * 1.2)
    assert model.mode_ == "ratio"
    expected = np.maximum(base.predict(X), RATIO_FLOOR) * np.exp(model.correction_.predict(X))
    np.testing.assert_array_equal(model.predict(X), expected)
    arrays = verified_export(model, X)
    assert arrays is not None
    assert int(arrays["format"][0]) == 1 and "additive" not in arrays  # as older files
    predictor = TreePredictor.from_arrays(arrays)
    assert predictor.additive == [False, False]
    np.testing.assert_allclose(predictor.predict(X), model.predict(X), rtol=1e-12)
    del model.mode_  # a correction pickled before modes existed is a ratio
    np.testing.assert_array_equal(model.predict(X), expected)


def test_a_served_users_model_predicts_on_one_thread(table: pd.DataFrame, schema) -> None:
    from sklearn.neighbors import KNeighborsRegressor

    from driftkeeper.model.estimators import for_serving

    X, y = schema.encode(table), table["target"]
    piped = TableModel(ce.knn_pipeline().set_params(knn__n_jobs=-1), schema).fit(X, y)
    assert for_serving(piped).estimator_.steps[-1][1].n_jobs == 1
    numbers = table.drop(columns=["sex"])
    only_numbers = infer_schema(numbers, "target")
    bare = TableModel(KNeighborsRegressor(n_jobs=-1), only_numbers).fit(
        only_numbers.encode(numbers), y)
    assert for_serving(bare).estimator_.n_jobs == 1


def test_a_users_classifier_learns_the_classes_and_serves_their_probability(
        tmp_path: Path) -> None:
    """A binary target: the factory's classifier is fitted on the class labels themselves
    and the model's prediction is its predict_proba of classes[1], found by name."""
    from sklearn.datasets import load_breast_cancer

    from driftkeeper.inference import infer_schema

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns=lambda c: c.replace(" ", "_"))
    frame["diagnosis"] = [data.target_names[t] for t in data.target]
    frame = frame.drop(columns="target")
    path = tmp_path / "cancer.csv"
    frame.to_csv(path, index=False)
    schema = infer_schema(frame, "diagnosis")
    train(tmp_path / "m", TrainingConfig(estimator="custom_estimators:logistic_pipeline",
                                         data=str(path), **FAST), schema=schema)
    bundle = ModelStore(tmp_path / "m").load()
    assert bundle.metadata["model"]["source"] == "factory"
    fitted = bundle.model.estimator_
    assert list(fitted.classes_) == ["benign", "malignant"]
    fit_rows, _ = _split(frame.rename(columns={"diagnosis": "target"}), schema)
    own = ce.logistic_pipeline().fit(fit_rows, frame.loc[fit_rows.index, "diagnosis"])
    p = bundle.model.predict(schema.encode(frame))
    np.testing.assert_allclose(p, own.predict_proba(frame[schema.names])[:, 1], rtol=1e-9)
    assert bundle.metrics["task"] == "classification" and bundle.metrics["accuracy"] > 0.9

"""Multiclass classification end to end, on scikit-learn's bundled wine table (offline, 3
classes): trained, exported, served as the predicted class with every class's probability,
labelled by class name, and judged on the multiclass Brier score, log loss and accuracy
(drift/probability.py's one-number forms)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_wine
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import accuracy_score, log_loss

from driftkeeper.cli import EXIT_DRIFT, EXIT_ERROR, EXIT_OK, main
from driftkeeper.drift import probability
from driftkeeper.drift.evaluate import evaluate_concept
from driftkeeper.drift.profile import build_residual_profile
from driftkeeper.drift.settings import ConceptSettings
from driftkeeper.drift.windows import residual_window
from driftkeeper.model.estimators import HGB_PARAMS, RecalibratedMulticlass
from driftkeeper.model.feedback import FeedbackStore
from driftkeeper.model.gate import judge
from driftkeeper.model.predictor import TreePredictor
from driftkeeper.model.store import ModelStore
from driftkeeper.model.train import TrainingConfig, _group_folds, train
from driftkeeper.serving.app import state_of
from driftkeeper.serving.monitor_process import Monitor
from inprocess import in_process_app
from inprocess import quick_profiles as fewer_null_draws

TARGET = "cultivar"
CLASSES = ("barbera", "barolo", "grignolino")  # sorted, as the schema sorts levels


@pytest.fixture(scope="module")
def wine() -> pd.DataFrame:
    data = load_wine(as_frame=True)
    frame = data.frame.rename(columns={"target": TARGET})
    frame[TARGET] = np.asarray(["barolo", "grignolino", "barbera"])[data.target]
    return frame


@pytest.fixture(scope="module")
def wine_csv(wine: pd.DataFrame, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wine") / "wine.csv"
    wine.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def quick_profiles():
    """Fewer null draws for the auto thresholds: these tests are not about them."""
    with fewer_null_draws():
        yield


@pytest.fixture(scope="module")
def trained(wine_csv: Path, tmp_path_factory, quick_profiles) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("wine-model") / "m"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["train", "--output", str(out), "--data", str(wine_csv), "--target",
                     TARGET, "--json"])
    assert code == EXIT_OK
    return out, json.loads(printed.getvalue())


@pytest.fixture
def model_dir(trained: tuple[Path, dict], tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(trained[0], target, symlinks=True)
    return target


def _brier(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    hit = np.eye(p.shape[1])[y.astype(int)]
    return ((p - hit) ** 2).sum(axis=1)


# -- the one-number forms ------------------------------------------------------------------

def test_the_one_number_forms_keep_what_the_measures_need() -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet([1.0, 1.0, 1.0, 1.0], size=500)
    y = rng.integers(0, 4, size=500).astype(float)
    summary = probability.summaries(p)
    np.testing.assert_array_equal(probability.predicted_classes(summary), p.argmax(axis=1))
    np.testing.assert_allclose(summary - p.argmax(axis=1), p.max(axis=1))
    residual = probability.residuals(y, p)
    np.testing.assert_allclose(2 * residual ** 2, _brier(y, p))
    scored = probability.score(4, y, p)
    assert scored.log_loss.mean() == pytest.approx(log_loss(y, p, labels=[0, 1, 2, 3]))
    assert scored.correct.mean() == pytest.approx(accuracy_score(y, p.argmax(axis=1)))
    # A class whose probability is 1 still names itself (its summary is class + 1).
    certain = probability.summaries(np.array([[0.0, 1.0, 0.0]]))
    assert certain[0] == 2.0 and probability.predicted_classes(certain)[0] == 1.0


def test_for_two_classes_the_multiclass_residual_is_the_binary_one() -> None:
    """sqrt(Brier / 2) over both columns is |y - p|: one scale for every classifier."""
    rng = np.random.default_rng(1)
    p1 = rng.uniform(size=200)
    y = rng.integers(0, 2, size=200).astype(float)
    both = np.column_stack([1 - p1, p1])
    np.testing.assert_allclose(probability.residuals(y, both), np.abs(y - p1))
    np.testing.assert_allclose(probability.outcomes(y, both), probability.outcomes(y, p1))


# -- training ------------------------------------------------------------------------------

def test_trains_a_multiclass_model_with_its_measures(trained, wine: pd.DataFrame) -> None:
    """178 rows: cross-validated like any small table, the measures those of the
    out-of-fold probabilities, as scikit-learn computes them."""
    path, result = trained
    bundle = ModelStore(path).load()
    assert bundle.schema.target.classes == CLASSES
    X = bundle.schema.encode(wine)
    y = bundle.schema.encode_target(wine[TARGET])
    oof = np.empty((len(y), 3))
    for train_idx, test_idx in _group_folds(X, 5, 42):
        fold = HistGradientBoostingClassifier(random_state=42, **HGB_PARAMS).fit(
            X[train_idx], y[train_idx])
        oof[test_idx] = fold.predict_proba(X[test_idx])
    m = result["metrics"]
    assert m["task"] == "classification" and m["classes"] == 3
    assert m["log_loss"] == pytest.approx(log_loss(y, oof), rel=1e-9)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, oof.argmax(axis=1)))
    assert m["brier"] == pytest.approx(_brier(y, oof).mean(), rel=1e-9)
    assert m["rmse"] == pytest.approx(np.sqrt(_brier(y, oof).mean() / 2), rel=1e-9)
    ref = bundle.profile.residuals
    assert ref.log_loss == pytest.approx(m["log_loss"]) and ref.accuracy == m["accuracy"]
    # The prediction reference is the summary: class index + its probability.
    assert bundle.profile.predictions is not None
    assert bundle.profile.predictions.bins.edges.min() > 0
    assert bundle.profile.predictions.bins.edges.max() <= 3
    # And each class's held-out probability is a reference of its own.
    assert list(bundle.profile.class_predictions) == list(CLASSES)
    barolo = bundle.profile.class_predictions["barolo"].bins
    assert barolo.n == len(wine) and barolo.edges.min() >= 0 and barolo.edges.max() <= 1


def test_the_exported_softmax_serves_without_scikit_learn(trained, wine: pd.DataFrame) -> None:
    path, result = trained
    assert result["metrics"]["serving_export"] is True
    bundle = ModelStore(path).load()
    X = bundle.schema.encode(wine)
    exported = TreePredictor.load(bundle.predictor_path).predict(X)
    assert exported.shape == (len(wine), 3)
    np.testing.assert_allclose(exported, bundle.model.predict(X), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(exported.sum(axis=1), 1.0)


def test_a_users_classifier_serves_every_class_by_name(wine: pd.DataFrame, wine_csv: Path,
                                                      tmp_path: Path, quick_profiles) -> None:
    """--estimator: the user's classifier learns the class names; the model's outputs are
    its probabilities in the schema's class order, whatever order it keeps them in."""
    out = tmp_path / "m"
    assert main(["train", "--output", str(out), "--data", str(wine_csv), "--target", TARGET,
                 "--estimator", "sklearn.ensemble:RandomForestClassifier"]) == EXIT_OK
    bundle = ModelStore(out).load()
    user = bundle.model.estimator_
    frame = wine.drop(columns=[TARGET])
    by_name = dict(zip(user.classes_, user.predict_proba(frame).T, strict=True))
    np.testing.assert_allclose(bundle.model.predict(bundle.schema.encode(wine)),
                               np.column_stack([by_name[c] for c in CLASSES]))
    assert bundle.metrics["task"] == "classification" and bundle.metrics["classes"] == 3


def test_a_model_file_of_other_classes_is_refused_naming_them(
        wine: pd.DataFrame, wine_csv: Path, tmp_path: Path, capsys) -> None:
    import joblib
    from sklearn.ensemble import RandomForestClassifier

    # A model that never saw barolo: its two columns go to their classes by name, and
    # barolo gets 0.
    frame = wine.drop(columns=[TARGET])
    seen = wine[TARGET] != "barolo"
    good = RandomForestClassifier(n_estimators=20, random_state=0).fit(frame[seen],
                                                                       wine[TARGET][seen])
    joblib.dump(good, tmp_path / "good.joblib")
    assert main(["train", "--output", str(tmp_path / "m"), "--data", str(wine_csv),
                 "--target", TARGET, "--model-file", str(tmp_path / "good.joblib")]) == EXIT_OK
    bundle = ModelStore(tmp_path / "m").load()
    proba = good.predict_proba(frame)
    np.testing.assert_allclose(bundle.model.predict(bundle.schema.encode(wine)),
                               np.column_stack([proba[:, 0], np.zeros(len(wine)),
                                                proba[:, 1]]))
    capsys.readouterr()
    other = RandomForestClassifier(n_estimators=20, random_state=0).fit(
        frame, wine[TARGET].str.upper())
    joblib.dump(other, tmp_path / "other.joblib")
    assert main(["train", "--output", str(tmp_path / "n"), "--data", str(wine_csv),
                 "--target", TARGET, "--model-file", str(tmp_path / "other.joblib")]
                ) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "BARBERA" in err and "fit it on the table's class labels" in err
    assert not (tmp_path / "n" / "current").exists()


# -- the service ---------------------------------------------------------------------------

@pytest.fixture
def served(model_dir: Path, tmp_path: Path):
    app, client = in_process_app(model_dir, tmp_path, max_body_bytes=256 * 1024)
    yield app, client
    state_of(app).stop()


def _rows(frame: pd.DataFrame, label: bool = False) -> list[dict]:
    columns = [c for c in frame.columns if c != TARGET] + ([TARGET] if label else [])
    return frame[columns].to_dict("records")


def test_predict_answers_the_class_and_every_probability(served, wine: pd.DataFrame) -> None:
    app, client = served
    model = state_of(app).models.model
    rows = wine.sample(20, random_state=3)
    p = model.predict(model.bundle.schema.encode(rows))
    one = client.post("/predict", json=_rows(rows.head(1))[0]).get_json()
    assert one["prediction"] == CLASSES[int(p[0].argmax())]
    assert one["probabilities"] == pytest.approx(dict(zip(CLASSES, p[0], strict=True)),
                                                 rel=1e-12)
    batch = client.post("/predict", json={"instances": _rows(rows)}).get_json()
    assert batch["predictions"] == [CLASSES[k] for k in p.argmax(axis=1)]
    np.testing.assert_allclose([[d[c] for c in CLASSES] for d in batch["probabilities"]], p,
                               rtol=1e-12)
    response = client.get("/openapi.json").get_json()["paths"]["/predict"]["post"][
        "responses"]["200"]["content"]["application/json"]["schema"]
    assert jsonschema.Draft202012Validator(response).is_valid(one)
    assert jsonschema.Draft202012Validator(response).is_valid(batch)


def test_feedback_takes_the_class_name(served, wine: pd.DataFrame) -> None:
    app, client = served
    rows = _rows(wine.head(4), label=True)
    assert client.post("/feedback", json={"instances": rows}).get_json()["accepted"] == 4
    bad = client.post("/feedback", json={**rows[0], TARGET: "chianti"})
    assert bad.status_code == 422
    assert bad.get_json()["field"] == TARGET
    assert ", ".join(CLASSES) in bad.get_json()["error"]
    state = state_of(app)
    state.stop()
    stored = state.feedback_store(state.models.model).read()
    assert list(stored[TARGET]) == list(wine[TARGET].head(4))


def test_the_service_judges_a_multiclass_window(served, wine: pd.DataFrame) -> None:
    """Labelled rows through /feedback: the pod's concept verdict and its counters carry
    the window's multiclass Brier (as RMSE), log loss and accuracy, as computed directly."""
    app, client = served
    model = state_of(app).models.model
    world = wine.sample(150, random_state=4)
    for start in range(0, 150, 50):
        assert client.post("/feedback", json={"instances": _rows(world[start:start + 50],
                                                                 label=True)}).status_code == 200
    Monitor(state_of(app).config).tick()
    concept = client.get("/drift").get_json()["concept"]
    X = model.bundle.schema.encode(world)
    y = model.bundle.schema.encode_target(world[TARGET])
    p = model.predict(X)
    assert concept["samples"] == 150
    assert concept["log_loss"] == pytest.approx(log_loss(y, p, labels=[0, 1, 2]), rel=1e-6)
    assert concept["accuracy"] == pytest.approx(accuracy_score(y, p.argmax(axis=1)))
    assert concept["rmse"] == pytest.approx(np.sqrt(_brier(y, p).mean() / 2), rel=1e-6)
    # Predictions: the summary's window and each class's.
    assert client.post("/predict", json={"instances": _rows(world.head(40))}).status_code == 200
    Monitor(state_of(app).config).tick()
    report = client.get("/drift").get_json()
    assert report["prediction"]["samples"] == 40
    assert {c: v["samples"] for c, v in report["class_predictions"].items()} == {
        c: 40 for c in CLASSES}
    # One-vs-rest calibration: each class's observed rate minus its mean probability.
    assert concept["calibration"] is None
    expected = {c: float(np.mean(y == i) - p[:, i].mean()) for i, c in enumerate(CLASSES)}
    assert concept["class_calibration"] == pytest.approx(expected, abs=1e-9)
    metrics = {s.name: s.value for f in text_string_to_metric_families(
        client.get("/metrics").get_data(as_text=True)) for s in f.samples}
    assert metrics["driftkeeper_residual_log_loss_total"] / 150 == pytest.approx(
        concept["log_loss"])
    assert metrics["driftkeeper_residual_correct_total"] / 150 == pytest.approx(
        concept["accuracy"])


# -- batch checks --------------------------------------------------------------------------

def _swapped(frame: pd.DataFrame) -> pd.DataFrame:
    """The same wines, barolo and grignolino labels swapped: a concept change."""
    out = frame.copy()
    out[TARGET] = out[TARGET].map({"barolo": "grignolino", "grignolino": "barolo",
                                   "barbera": "barbera"})
    return out


def test_drift_with_the_model_judges_a_multiclass_batch(trained, wine: pd.DataFrame,
                                                        tmp_path: Path, capsys) -> None:
    path, _ = trained
    quiet = wine.sample(400, replace=True, random_state=5)
    quiet.to_csv(tmp_path / "quiet.csv", index=False)
    _swapped(quiet).to_csv(tmp_path / "swapped.csv", index=False)
    assert main(["drift", "--model", str(path), "--current", str(tmp_path / "quiet.csv"),
                 "--json"]) == EXIT_OK
    calm = json.loads(capsys.readouterr().out)
    assert calm["concept"]["drift"] is False and calm["prediction"]["drift"] is False
    assert sorted(calm["class_predictions"]) == sorted(CLASSES)
    assert not any(v["drift"] for v in calm["class_predictions"].values())
    assert main(["drift", "--model", str(path), "--current", str(tmp_path / "swapped.csv"),
                 "--json"]) == EXIT_DRIFT
    moved = json.loads(capsys.readouterr().out)
    assert moved["concept"]["drift"] is True
    assert moved["concept"]["log_loss"] > 10 * calm["concept"]["log_loss"]
    assert moved["concept"]["accuracy"] < 0.5 < calm["concept"]["accuracy"]
    # Swapping two classes' labels leaves every class's rate where it was: calibration in
    # the large barely moves, while the errors are far worse.
    shares = quiet[TARGET].value_counts(normalize=True)
    moved_shares = _swapped(quiet)[TARGET].value_counts(normalize=True)
    for c in CLASSES:
        assert (moved["concept"]["class_calibration"][c]
                - calm["concept"]["class_calibration"][c]) == pytest.approx(
            moved_shares[c] - shares[c], abs=1e-9)
    # The inputs did not move: neither do the label-free kinds.
    assert moved["data"]["drift"] is False and moved["prediction"]["drift"] is False


def test_prediction_drift_sees_the_predicted_class_mix_move(trained, wine: pd.DataFrame,
                                                            tmp_path: Path, capsys) -> None:
    """Only barbera's wines (the rows the model calls barbera): the predicted-class mix
    moves, and so does the summary's distribution."""
    path, _ = trained
    barbera = wine[wine[TARGET] == "barbera"].sample(400, replace=True, random_state=6)
    barbera.drop(columns=[TARGET]).to_csv(tmp_path / "barbera.csv", index=False)
    assert main(["drift", "--model", str(path), "--current", str(tmp_path / "barbera.csv"),
                 "--json"]) == EXIT_DRIFT
    report = json.loads(capsys.readouterr().out)
    assert report["prediction"]["drift"] is True
    # Each class's probability moved too: barbera's up, the others' down.
    assert all(v["drift"] for v in report["class_predictions"].values())


def test_prediction_drift_splits_its_budget_over_the_classes(trained, wine: pd.DataFrame
                                                             ) -> None:
    """Summary + K class tests share the kind's false-alarm rate (Bonferroni); the verdict
    is the test furthest over its threshold."""
    from driftkeeper.drift.evaluate import evaluate_predictions
    from driftkeeper.drift.settings import PredictionSettings
    from driftkeeper.drift.windows import class_prediction_windows, prediction_window

    bundle = ModelStore(trained[0]).load()
    profile = bundle.profile
    rows = wine[wine[TARGET] != "barbera"].sample(400, replace=True, random_state=11)
    p = bundle.model.predict(bundle.schema.encode(rows))
    summary = prediction_window(profile, probability.summaries(p))
    by_class = class_prediction_windows(profile, p)
    settings = PredictionSettings()
    verdict, each = evaluate_predictions(profile, summary, by_class, settings)
    alone, none = evaluate_predictions(profile, summary, None, settings)
    quarter, _ = evaluate_predictions(profile, summary, None, replace(
        settings, false_alarm_rate=settings.false_alarm_rate / 4))
    assert none is None and set(each) == set(CLASSES)
    assert quarter.threshold >= alone.threshold
    tests = [quarter, *each.values()]
    assert verdict == max(tests, key=lambda v: v.score / v.threshold)
    assert verdict.drift is any(v.drift for v in tests)
    for c in CLASSES:  # each class's test, alone at a quarter of the rate, is the same test
        single, _ = evaluate_predictions(replace(profile, predictions=profile.class_predictions[
            c]), by_class[c], None, replace(settings,
                                            false_alarm_rate=settings.false_alarm_rate / 4))
        assert each[c] == single


# -- retraining and the gate ---------------------------------------------------------------

def _prior_shift(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A world where a third of the barolo wines are labelled barbera."""
    rng = np.random.default_rng(seed)
    out = frame.sample(600, replace=True, random_state=seed).reset_index(drop=True)
    barolo = np.flatnonzero(out[TARGET].to_numpy() == "barolo")
    out.loc[rng.choice(barolo, len(barolo) // 3, replace=False), TARGET] = "barbera"
    return out


def test_vector_scaling_improves_log_loss_after_a_shift(trained, wine: pd.DataFrame) -> None:
    bundle = ModelStore(trained[0]).load()
    world = _prior_shift(wine, 7)
    X, y = bundle.schema.encode(world), bundle.schema.encode_target(world[TARGET])
    fit, check = np.arange(len(y)) % 2 == 0, np.arange(len(y)) % 2 == 1
    recalibrated = RecalibratedMulticlass(bundle.model).fit(X[fit], y[fit])
    before = log_loss(y[check], bundle.model.predict(X[check]), labels=[0, 1, 2])
    after = log_loss(y[check], recalibrated.predict(X[check]), labels=[0, 1, 2])
    assert after < 0.5 * before
    np.testing.assert_allclose(recalibrated.predict(X[check]).sum(axis=1), 1.0)


def test_vector_scaling_keeps_a_class_the_labels_lack(trained, wine: pd.DataFrame) -> None:
    """Labels of two classes only: the third keeps a finite, non-zero probability."""
    bundle = ModelStore(trained[0]).load()
    two = wine[wine[TARGET] != "barbera"]
    X, y = bundle.schema.encode(two), bundle.schema.encode_target(two[TARGET])
    recalibrated = RecalibratedMulticlass(bundle.model).fit(X, y)
    p = recalibrated.predict(bundle.schema.encode(wine[wine[TARGET] == "barbera"]))
    assert np.isfinite(p).all() and p[:, 0].mean() > 0.5


def test_retrain_picks_by_log_loss_and_the_gate_judges_by_it(
        model_dir: Path, wine: pd.DataFrame, wine_csv: Path, quick_profiles) -> None:
    store = ModelStore(model_dir)
    serving = store.load()
    world = _prior_shift(wine, 8)
    feedback = FeedbackStore(model_dir / "feedback", serving.schema)
    train_rows, judge_rows = world.iloc[:400], world.iloc[400:]
    feedback.append(_rows(train_rows, label=True), serving.version,
                    probability.summaries(serving.model.predict(
                        serving.schema.encode(train_rows))))
    feedback.close()
    result = train(model_dir, TrainingConfig(data=str(wine_csv), feedback_dir=str(
        model_dir / "feedback"), min_feedback_rows=100, promote=False), schema=serving.schema)
    chosen = result.metrics["candidates_log_loss"]
    assert set(chosen) == {"refit", "recalibrate"}
    assert result.metrics["strategy"] == min(chosen, key=chosen.__getitem__)
    candidate = store.load(result.version)
    verdict = judge(candidate, serving, judge_rows)
    y = serving.schema.encode_target(judge_rows[TARGET])
    expected = log_loss(y, candidate.model.predict(serving.schema.encode(judge_rows)),
                        labels=[0, 1, 2])
    assert verdict.metric == "log_loss"
    assert verdict.candidate_score == pytest.approx(expected, rel=1e-6)
    assert verdict.promote and verdict.candidate_score < verdict.serving_score


def test_a_multiclass_model_doing_better_is_not_concept_drift(trained) -> None:
    """Its residual is never negative, so the bias test is one-sided: errors well below the
    held-out ones (rows the model trained on, replayed) raise nothing; errors above do."""
    served = ModelStore(trained[0]).load(with_estimator=False).profile
    rng = np.random.default_rng(9)
    held_out = rng.uniform(0.1, 0.6, size=2000)  # a mediocre model's held-out residuals
    profile = replace(served, residuals=build_residual_profile(
        held_out, rng, trials=500, classification=True,
        measures=(np.ones(2000), np.ones(2000))))
    settings = ConceptSettings()
    better = evaluate_concept(profile, residual_window(
        profile, 0.5 * held_out, np.zeros(2000), np.ones(2000)), settings)
    assert better.drift is False and better.bias < -better.bias_test.threshold, better
    worse = evaluate_concept(profile, residual_window(
        profile, held_out + 0.15, np.ones(2000), np.zeros(2000)), settings)
    assert worse.drift is True and "bias" in worse.reasons, worse


# -- where concept drift lives -------------------------------------------------------------

def test_the_classes_are_segments_too(trained) -> None:
    layout = ModelStore(trained[0]).load(with_estimator=False).profile.segments.layout
    assert [f.name for f in layout[:-1]] == list(load_wine().feature_names)
    assert (layout[-1].name, layout[-1].kind, layout[-1].levels) == (TARGET, "categorical",
                                                                     CLASSES)


def test_the_pod_names_the_classes_whose_labels_moved(served, wine: pd.DataFrame) -> None:
    """barolo and grignolino labels swapped: the pod's window (rings, with each row's
    label) locates the drift in those two classes, not in barbera."""
    app, client = served
    world = _swapped(wine.sample(300, replace=True, random_state=10))
    for start in range(0, 300, 50):
        assert client.post("/feedback", json={"instances": _rows(world[start:start + 50],
                                                                 label=True)}).status_code == 200
    Monitor(state_of(app).config).tick()
    concept = client.get("/drift").get_json()["concept"]
    assert concept["drift"] is True
    where = {loc["feature"]: loc for loc in concept["segments"]["locations"]}
    assert sorted(where[TARGET]["segments"]) == ["barolo", "grignolino"], concept["segments"]
    assert where[TARGET]["message"].startswith(f"{TARGET} barolo, grignolino: error ")
    barbera = next(s for s in concept["segments"]["segments"]
                   if s["feature"] == TARGET and s["segment"] == "barbera")
    assert barbera["flagged"] is False


def test_a_class_tests_verdict_is_named_in_the_message(trained, wine: pd.DataFrame,
                                                       tmp_path: Path, capsys) -> None:
    from driftkeeper.drift.report import DriftReport
    from driftkeeper.policy.engine import STATISTIC_LABELS, Observation

    wine.drop(columns=[TARGET]).to_csv(tmp_path / "rows.csv", index=False)
    main(["drift", "--model", str(trained[0]), "--current", str(tmp_path / "rows.csv"),
          "--json"])
    report = DriftReport.from_dict(json.loads(capsys.readouterr().out))
    assert report.class_predictions is not None
    barolo = replace(report, prediction=report.class_predictions["barolo"])
    assert Observation.from_report(barolo).statistics["prediction"] == \
        "P(barolo)'s KS statistic"
    summary = replace(report, prediction=replace(report.prediction, score=-1.0))
    name = Observation.from_report(summary).statistics["prediction"]
    assert STATISTIC_LABELS[name] == "predictions' KS statistic"


def test_a_multiclass_models_log_loss_is_a_concept_test_of_its_own(trained) -> None:
    """Residuals as held out, but the class that happened got less probability where it
    was not the winner: the Brier root barely moves, the log loss doubles."""
    served = ModelStore(trained[0]).load(with_estimator=False).profile
    rng = np.random.default_rng(12)
    held_out, losses = rng.uniform(0.1, 0.6, 2000), rng.exponential(0.4, 2000)
    profile = replace(served, residuals=build_residual_profile(
        held_out, rng, trials=500, classification=True,
        measures=(losses, np.ones(2000)), log_loss_test=True))
    assert "log_loss" in profile.residuals.null
    settings = ConceptSettings()
    same = evaluate_concept(profile, residual_window(profile, held_out, losses,
                                                     np.ones(2000)), settings)
    assert same.drift is False and same.log_loss_test.score == pytest.approx(0.0)
    worse = evaluate_concept(profile, residual_window(profile, held_out, 2 * losses,
                                                      np.ones(2000)), settings)
    assert worse.reasons == ["log_loss"] and worse.drift is True
    assert worse.log_loss_test.score == pytest.approx(1.0)
    # Four calibrated tests share the budget: each threshold at a quarter of the rate.
    alone = replace(profile, residuals=replace(profile.residuals, null={
        k: v for k, v in profile.residuals.null.items() if k != "log_loss"}))
    three = evaluate_concept(alone, residual_window(alone, held_out, losses, np.ones(2000)),
                             settings)
    assert three.log_loss_test is None and same.threshold >= three.threshold

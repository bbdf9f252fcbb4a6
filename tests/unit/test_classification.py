"""Binary classification end to end, on scikit-learn's bundled breast-cancer table (offline):
a classifier is served as the probability of classes[1], so the residual y - p carries log
loss, accuracy and calibration through the regression's drift machinery."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score

from driftkeeper.cli import EXIT_OK, main
from driftkeeper.data import canonicalize
from driftkeeper.drift.evaluate import evaluate_concept
from driftkeeper.drift.settings import ConceptSettings
from driftkeeper.drift.windows import residual_window
from driftkeeper.errors import DataError, InvalidInputError
from driftkeeper.model.estimators import HGB_PARAMS, RecalibratedClassifier
from driftkeeper.model.feedback import FeedbackStore
from driftkeeper.model.gate import judge
from driftkeeper.model.predictor import TreePredictor
from driftkeeper.model.store import ModelStore
from driftkeeper.model.train import TrainingConfig, _group_folds, train
from driftkeeper.schema import Feature, FeatureSchema, Target
from driftkeeper.serving.app import state_of
from driftkeeper.serving.monitor_process import Monitor
from driftkeeper.serving.openapi import openapi_document
from driftkeeper.serving.validation import RowValidator
from inprocess import in_process_app
from inprocess import quick_profiles as fewer_null_draws

TARGET = "diagnosis"


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    """The breast-cancer table with text labels: classes sort to (benign, malignant), so
    the model predicts P(malignant)."""
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns={"target": TARGET})
    frame[TARGET] = np.asarray(data.target_names)[data.target]
    return frame


@pytest.fixture(scope="module")
def cancer_csv(cancer: pd.DataFrame, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cancer") / "cancer.csv"
    cancer.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def quick_profiles():
    """Fewer null draws for the auto thresholds: these tests are not about them."""
    with fewer_null_draws():
        yield


@pytest.fixture(scope="module")
def trained(cancer_csv: Path, tmp_path_factory, quick_profiles) -> tuple[Path, dict]:
    """`driftkeeper train --data CSV --target diagnosis`, once for the module."""
    out = tmp_path_factory.mktemp("cancer-model") / "m"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["train", "--output", str(out), "--data", str(cancer_csv), "--target",
                     TARGET, "--json"])
    assert code == EXIT_OK
    return out, json.loads(printed.getvalue())


@pytest.fixture
def model_dir(trained: tuple[Path, dict], tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(trained[0], target, symlinks=True)
    return target


def _out_of_fold(bundle, cancer: pd.DataFrame):
    """What training does with a table this small (569 rows): 5 folds, every row held
    out once. Returns the encoded rows, labels, out-of-fold P(malignant) and the model
    fitted on all rows, all with scikit-learn directly."""
    X = bundle.schema.encode(cancer)
    y = bundle.schema.encode_target(cancer[TARGET])
    oof = np.empty(len(y))
    for train_idx, test_idx in _group_folds(X, 5, 42):
        fold = HistGradientBoostingClassifier(random_state=42, **HGB_PARAMS).fit(
            X[train_idx], y[train_idx])
        oof[test_idx] = fold.predict_proba(X[test_idx])[:, 1]
    full = HistGradientBoostingClassifier(random_state=42, **HGB_PARAMS).fit(X, y)
    return X, y, oof, full


# -- schema and data ----------------------------------------------------------------------

def test_labels_are_class_indices_compared_as_text() -> None:
    target = Target("y", task="classification", classes=("0", "1"))
    codes = target.encode_labels(["0", 1, 1.0, "1", 0.0, "2", None, True, np.nan])
    np.testing.assert_array_equal(codes[:5], [0, 1, 1, 1, 0])
    assert np.isnan(codes[5:]).all()  # unknown, missing, True is "True", NaN
    assert target.is_classification and not Target("price").is_classification


def test_canonicalize_keeps_labels_and_names_unknown_classes(cancer: pd.DataFrame,
                                                            trained) -> None:
    schema = ModelStore(trained[0]).load(with_estimator=False).schema
    out = canonicalize(cancer.head(5), schema)
    assert list(out[TARGET]) == list(cancer[TARGET].head(5))
    bad = cancer.head(5).assign(**{TARGET: ["benign", "malignant", "maybe", "benign", "x"]})
    with pytest.raises(DataError, match=r"column diagnosis has unknown classes \['maybe', "
                                        r"'x'\]; allowed: \['benign', 'malignant'\]"):
        canonicalize(bad, schema)


# -- training -----------------------------------------------------------------------------

def test_trains_a_binary_classifier_with_its_metrics(trained, cancer: pd.DataFrame) -> None:
    bundle = ModelStore(trained[0]).load()
    assert bundle.schema.target.classes == ("benign", "malignant")
    assert trained[1]["schema"]["target"] == {"name": TARGET, "task": "classification",
                                              "exclusive_minimum": None, "maximum": None,
                                              "classes": ["benign", "malignant"]}
    X, y_hold, p, full = _out_of_fold(bundle, cancer)
    np.testing.assert_allclose(bundle.model.predict(X), full.predict_proba(X)[:, 1],
                               rtol=1e-12)
    m = bundle.metrics
    assert m["task"] == "classification" and m["positive_class"] == "malignant"
    assert m["evaluation"] == "5-fold cross-validation on 569 rows"
    assert m["log_loss"] == pytest.approx(log_loss(y_hold, p), rel=1e-9)
    assert m["accuracy"] == pytest.approx(accuracy_score(y_hold, p > 0.5))
    assert m["brier"] == pytest.approx(brier_score_loss(y_hold, p), rel=1e-9)
    assert m["auc"] == pytest.approx(roc_auc_score(y_hold, p), rel=1e-9)
    assert m["rmse"] == pytest.approx(np.sqrt(m["brier"]), rel=1e-9)
    assert m["accuracy"] > 0.9  # it learned something
    residuals = bundle.profile.residuals
    assert residuals.log_loss == pytest.approx(m["log_loss"], rel=1e-9)
    assert residuals.accuracy == pytest.approx(m["accuracy"])


def test_exported_predictor_gives_the_probability(trained, cancer: pd.DataFrame) -> None:
    bundle = ModelStore(trained[0]).load()
    assert bundle.predictor_path is not None and bundle.metrics["serving_export"]
    X = bundle.schema.encode(cancer)
    expected = bundle.model.classifier_.predict_proba(X)[:, 1]
    predictor = TreePredictor.load(bundle.predictor_path)
    np.testing.assert_allclose(predictor.predict(X), expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose([predictor.predict_row(r) for r in X[:50].tolist()],
                               expected[:50], rtol=1e-12, atol=0)


def test_logistic_link_does_not_overflow() -> None:
    from driftkeeper.model.predictor import _expit

    with np.errstate(over="raise"):
        p = _expit(np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0]))
    np.testing.assert_allclose(p, [0.0, 1 / (1 + np.exp(30)), 0.5, 1 / (1 + np.exp(-30)),
                                   1.0], rtol=1e-15, atol=1e-300)


def test_train_prints_classification_metrics(cancer_csv: Path, tmp_path: Path,
                                             quick_profiles, capsys) -> None:
    assert main(["train", "--output", str(tmp_path / "m"), "--data", str(cancer_csv),
                 "--target", TARGET]) == EXIT_OK
    out = capsys.readouterr().out
    described = next(x.split() for x in out.splitlines() if x.startswith(f"  {TARGET} "))
    assert described[1:3] == ["classification", "target"]
    line = next(x for x in out.splitlines() if "held-out" in x)
    assert "log loss" in line and "accuracy" in line and "AUC" in line and "RMSE" not in line


# -- the service ---------------------------------------------------------------------------

@pytest.fixture
def served(model_dir: Path, tmp_path: Path):
    app, client = in_process_app(model_dir, tmp_path, max_body_bytes=256 * 1024)
    yield app, client
    state_of(app).stop()


def _rows(frame: pd.DataFrame, label: bool = False) -> list[dict]:
    columns = [c for c in frame.columns if c != TARGET] + ([TARGET] if label else [])
    return frame[columns].to_dict("records")


def test_predict_answers_labels_and_probabilities(served, cancer: pd.DataFrame) -> None:
    app, client = served
    bundle = state_of(app).models.model.bundle
    p = ModelStore(bundle.path.parent.parent).load().model.predict(
        bundle.schema.encode(cancer.head(20)))
    one = client.post("/predict", json=_rows(cancer.head(1))[0]).get_json()
    assert one["prediction"] == ("malignant" if p[0] > 0.5 else "benign")
    assert one["probabilities"]["malignant"] == pytest.approx(p[0], rel=1e-12)
    assert one["probabilities"]["benign"] == pytest.approx(1 - p[0], rel=1e-12)
    batch = client.post("/predict", json={"instances": _rows(cancer.head(20))}).get_json()
    assert batch["predictions"] == ["malignant" if x > 0.5 else "benign" for x in p]
    np.testing.assert_allclose([d["malignant"] for d in batch["probabilities"]], p,
                               rtol=1e-12)
    document = client.get("/openapi.json").get_json()
    response = document["paths"]["/predict"]["post"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    assert jsonschema.Draft202012Validator(response).is_valid(one)
    assert jsonschema.Draft202012Validator(response).is_valid(batch)


def test_feedback_carries_the_class(served, cancer: pd.DataFrame) -> None:
    app, client = served
    rows = _rows(cancer.head(4), label=True)
    resp = client.post("/feedback", json={"instances": rows})
    assert resp.status_code == 200 and resp.get_json()["accepted"] == 4
    bad = client.post("/feedback", json={**rows[0], TARGET: "maybe"})
    assert bad.status_code == 422
    assert bad.get_json()["field"] == TARGET and "benign, malignant" in bad.get_json()["error"]
    state = state_of(app)
    state.stop()  # closes the segment
    stored = state.feedback_store(state.models.model).read()
    assert list(stored[TARGET]) == list(cancer[TARGET].head(4))
    np.testing.assert_allclose(stored["prediction"], state.models.model.predict(
        state.models.model.bundle.schema.encode(cancer.head(4))), rtol=1e-5)


CODED = FeatureSchema(features=(Feature("bmi", "numerical", exclusive_minimum=0.0,
                                        maximum=100.0),),
                      target=Target("smoker", task="classification", classes=("0", "1")))


@pytest.mark.parametrize(("label", "code"), [
    ("1", 1.0), (1, 1.0), (1.0, 1.0), (0, 0.0), ("0", 0.0),
    (2, None), ("yes", None), (True, None), (1.5, None), (None, None), ([1], None),
])
def test_labels_as_text_or_numbers_agree_with_the_document(label, code) -> None:
    """Classes coded as numbers may be sent as numbers or text; the validator and the
    published schema agree on every value, and a bad one names the target."""
    row = {"bmi": 25.0, "smoker": label}
    document = openapi_document(CODED, 50)
    body = document["paths"]["/feedback"]["post"]["requestBody"]["content"]["application/json"]
    schema_accepts = jsonschema.Draft202012Validator(
        {**body["schema"], "components": document["components"]}).is_valid(row)
    validator = RowValidator(CODED, with_target=True)
    if code is None:
        with pytest.raises(InvalidInputError) as err:
            validator.encode([row], batch=False)
        assert err.value.field == "smoker"
        assert not schema_accepts
    else:
        _, y = validator.encode([row], batch=False)
        assert y is not None and y[0] == code
        assert schema_accepts


# -- concept drift -------------------------------------------------------------------------

def test_concept_verdict_measures_a_classifier(trained, cancer: pd.DataFrame) -> None:
    """Held-out-like rows: no drift; labels flipped in a segment: log loss up, accuracy
    down, calibration moved, drift. The window's measures are scikit-learn's."""
    bundle = ModelStore(trained[0]).load()
    X_hold, y_hold, p, _ = _out_of_fold(bundle, cancer)  # the rows of the reference
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(p), 600)  # held-out rows, resampled to a full window
    X, y, p = X_hold[idx], y_hold[idx], p[idx]
    settings = ConceptSettings()

    quiet = evaluate_concept(bundle.profile, residual_window(bundle.profile, y - p), settings)
    assert quiet.drift is False
    assert quiet.log_loss == pytest.approx(log_loss(y, p), rel=1e-6)
    assert quiet.accuracy == pytest.approx(accuracy_score(y, p > 0.5))
    assert quiet.calibration == pytest.approx(y.mean() - p.mean())
    assert quiet.log_loss_reference == bundle.profile.residuals.log_loss

    radius = bundle.schema.index("mean radius")
    large = X[:, radius] > np.median(X_hold[:, radius])
    flipped = np.where(large, 1.0 - y, y)
    moved = evaluate_concept(bundle.profile, residual_window(bundle.profile, flipped - p),
                             settings)
    assert moved.drift is True
    assert moved.log_loss == pytest.approx(log_loss(flipped, p), rel=1e-6)
    assert moved.log_loss > 5 * quiet.log_loss
    assert moved.accuracy == pytest.approx(accuracy_score(flipped, p > 0.5))
    assert moved.accuracy < 0.7 < quiet.accuracy
    assert moved.calibration == pytest.approx(flipped.mean() - p.mean())
    assert abs(moved.calibration) > abs(quiet.calibration) + 0.05
    doc = json.loads(json.dumps(_report_dict(moved)))
    assert {"log_loss", "log_loss_reference", "accuracy", "accuracy_reference",
            "calibration"} <= set(doc)


def _report_dict(concept) -> dict:
    from driftkeeper.drift.report import DataVerdict, DriftReport

    data = DataVerdict(None, 0.0, None, 0, 0, "any", None, 0.0, 0.01, [], {})
    return DriftReport(data, concept).to_dict()["concept"]


def test_the_service_reports_a_classifiers_measures(served, cancer: pd.DataFrame) -> None:
    app, client = served
    rows = _rows(cancer, label=True)
    for start in range(0, 250, 50):
        assert client.post("/feedback", json={"instances": rows[start:start + 50]}
                           ).status_code == 200
    Monitor(state_of(app).config).tick()
    concept = client.get("/drift").get_json()["concept"]
    assert concept["samples"] == 250
    assert concept["accuracy"] > 0.9 and concept["log_loss"] < concept["log_loss_reference"] * 3
    assert concept["accuracy_reference"] == state_of(app).models.model.bundle.metrics[
        "accuracy"]
    # The fleet's counters carry the same measures: summed log loss and correct rows.
    metrics = {s.name: s.value for f in text_string_to_metric_families(
        client.get("/metrics").get_data(as_text=True)) for s in f.samples}
    rows = 250
    assert metrics["driftkeeper_residual_log_loss_total"] / rows == pytest.approx(
        concept["log_loss"])
    assert metrics["driftkeeper_residual_correct_total"] / rows == pytest.approx(
        concept["accuracy"])


# -- retraining and the gate ---------------------------------------------------------------

def _shifted(cancer: pd.DataFrame, share: float = 0.4, seed: int = 0) -> pd.DataFrame:
    """A world where more cases are malignant: a share of benign labels flipped."""
    rng = np.random.default_rng(seed)
    out = cancer.copy()
    benign = np.flatnonzero(out[TARGET].to_numpy() == "benign")
    flip = rng.choice(benign, int(share * len(benign)), replace=False)
    out.loc[out.index[flip], TARGET] = "malignant"
    return out


def test_recalibration_improves_log_loss_after_a_shift(trained, cancer: pd.DataFrame) -> None:
    bundle = ModelStore(trained[0]).load()
    world = _shifted(cancer)
    X, y = bundle.schema.encode(world), bundle.schema.encode_target(world[TARGET])
    fit, check = np.arange(len(y)) % 2 == 0, np.arange(len(y)) % 2 == 1
    recalibrated = RecalibratedClassifier(bundle.model).fit(X[fit], y[fit])
    before = log_loss(y[check], bundle.model.predict(X[check]))
    after = log_loss(y[check], recalibrated.predict(X[check]))
    assert after < 0.8 * before
    # Platt scaling fits an unpenalised intercept: calibrated in the large where it learned
    assert recalibrated.predict(X[fit]).mean() == pytest.approx(y[fit].mean(), abs=1e-3)


def test_retrain_on_feedback_picks_by_log_loss_and_the_gate_judges_by_it(
        model_dir: Path, cancer: pd.DataFrame, cancer_csv: Path, quick_profiles) -> None:
    store = ModelStore(model_dir)
    serving = store.load()
    world = _shifted(cancer, seed=1)
    feedback = FeedbackStore(model_dir / "feedback", serving.schema)
    train_rows, judge_rows = world.iloc[:400], world.iloc[400:]
    feedback.append(_rows(train_rows, label=True), serving.version,
                    serving.model.predict(serving.schema.encode(train_rows)))
    feedback.close()
    result = train(model_dir, TrainingConfig(data=str(cancer_csv), feedback_dir=str(
        model_dir / "feedback"), min_feedback_rows=100, promote=False), schema=serving.schema)
    chosen = result.metrics["candidates_log_loss"]
    assert set(chosen) == {"refit", "recalibrate"}
    assert result.metrics["strategy"] == min(chosen, key=chosen.__getitem__)
    candidate = store.load(result.version)
    verdict = judge(candidate, serving, judge_rows)
    y = serving.schema.encode_target(judge_rows[TARGET])
    expected = log_loss(y, candidate.model.predict(serving.schema.encode(judge_rows)),
                        labels=[0, 1])
    assert verdict.metric == "log_loss"
    assert verdict.candidate_score == pytest.approx(expected, rel=1e-6)
    assert verdict.promote and verdict.candidate_score < verdict.serving_score
    assert "log loss" in verdict.reason


class _Constant:
    def __init__(self, p: np.ndarray) -> None:
        self.p = p

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.p[:len(X)]


def test_the_gate_prefers_log_loss_to_rmse() -> None:
    """A hedging model (p = 0.5 everywhere) against a confident one that is badly wrong
    on a tenth of the rows: RMSE prefers the confident one, log loss the hedging one."""
    schema = FeatureSchema((Feature("x", "numerical"),),
                           Target("y", task="classification", classes=("no", "yes")))
    y = np.tile([0.0, 1.0], 50)
    confident = np.where(y == 1, 1.0 - 1e-9, 1e-9)
    confident[:10] = 1.0 - y[:10]  # wrong and sure of it
    rows = pd.DataFrame({"x": np.arange(100.0), "y": np.where(y == 1, "yes", "no")})

    def bundle(version: str, p: np.ndarray) -> SimpleNamespace:
        return SimpleNamespace(version=version, schema=schema, model=_Constant(p))

    verdict = judge(bundle("v2", np.full(100, 0.5)), bundle("v1", confident), rows)
    assert verdict.candidate_rmse > verdict.serving_rmse  # RMSE would keep v1
    assert verdict.promote and verdict.metric == "log_loss"
    assert verdict.candidate_score == pytest.approx(np.log(2))


def test_the_html_report_names_a_classifiers_measures(trained, cancer: pd.DataFrame,
                                                      tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from driftkeeper.report import report_from_csv

    _shifted(cancer, share=0.6).to_csv(tmp_path / "current.csv", index=False)
    page = report_from_csv(trained[0], tmp_path / "current.csv", tmp_path / "r.html")
    text = page.read_text()
    assert "the log loss is" in text and "accuracy" in text and "calibration" in text
    assert "held-out AUC" in text

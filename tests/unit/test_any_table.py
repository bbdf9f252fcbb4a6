"""Everything follows the serving version's schema: a model of another table (scikit-learn's
diabetes, target `progression`, `sex` coded 1/2 as a category) is served, validated,
monitored, exported to Prometheus, reported and retrained under its own column names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftkeeper.errors import DataError
from driftkeeper.inference import infer_schema
from driftkeeper.model.store import ModelStore
from driftkeeper.model.train import TrainingConfig, train
from driftkeeper.report import report_from_csv
from driftkeeper.serving.app import create_app, state_of
from driftkeeper.serving.config import ServiceConfig
from driftkeeper.serving.monitor_process import Monitor

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame.rename(
        columns={"target": "progression"})
    frame["sex"] = frame["sex"].astype(int)
    path = tmp_path_factory.mktemp("diabetes") / "diabetes.csv"
    frame.to_csv(path, index=False)
    return path, frame


@pytest.fixture(scope="module")
def trained(tmp_path_factory, table) -> Path:
    path, frame = table
    root = tmp_path_factory.mktemp("model")
    schema = infer_schema(frame, "progression", categorical=["sex"])
    train(root, TrainingConfig(data=str(path), calibration_trials=500), schema=schema)
    return root


@pytest.fixture
def client(trained: Path, tmp_path: Path):
    config = ServiceConfig(model_dir=trained, state_dir=tmp_path / "state", max_rows=500,
                           max_body_bytes=1 << 20)
    config.windows_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(config, start_background=False)
    yield app, app.test_client()
    state_of(app).stop()


def _rows(frame: pd.DataFrame, target: bool = False) -> list[dict]:
    columns = FEATURES + (["progression"] if target else [])
    return [{k: (int(v) if k == "sex" else float(v)) for k, v in r.items()}
            for r in frame[columns].to_dict("records")]


def test_served_validated_and_documented_by_its_own_columns(client, table) -> None:
    _, frame = table
    _, http = client
    resp = http.post("/predict", json={"instances": _rows(frame.head(5))})
    assert resp.status_code == 200, resp.get_json()
    assert len(resp.get_json()["predictions"]) == 5
    text_sex = {**_rows(frame.head(1))[0], "sex": "2"}  # a code as text is the same level
    assert http.post("/predict", json=text_sex).status_code == 200
    document = http.get("/openapi.json").get_json()
    row = document["components"]["schemas"]["Row"]
    assert row["required"] == FEATURES
    assert set(document["components"]["schemas"]["LabelledRow"]["properties"]) == {
        *FEATURES, "progression"}


@pytest.mark.parametrize(("field", "value", "says"), [
    ("bmi", "high", "bmi must be a number"),  # a numerical column sent as text
    ("sex", "female", "unknown sex 'female'"),  # a category the table never had
    ("sex", 3, "unknown sex '3'"),
    ("price", 1.0, "unexpected field 'price'"),  # another model's column
])
def test_a_column_whose_type_changed_is_refused_naming_it(client, table, field: str,
                                                          value, says: str) -> None:
    _, frame = table
    _, http = client
    row = {**_rows(frame.head(1))[0], field: value}
    resp = http.post("/predict", json=row)
    assert resp.status_code == 422
    body = resp.get_json()
    assert body["field"] == field and says in body["error"]


def test_monitored_and_exported_under_its_feature_names(client, table) -> None:
    _, frame = table
    app, http = client
    sample = frame.sample(400, random_state=1)
    assert http.post("/predict", json={"instances": _rows(sample)}).status_code == 200
    feedback = http.post("/feedback", json={"instances": _rows(sample, target=True)})
    assert feedback.status_code == 200 and feedback.get_json()["accepted"] == 400
    Monitor(state_of(app).config).tick()
    report = http.get("/drift").get_json()
    assert list(report["data"]["features"]) == FEATURES
    assert report["data"]["samples"] == 400
    assert report["concept"]["samples"] == 400
    metrics = http.get("/metrics").get_data(as_text=True)
    assert 'driftkeeper_feature_drift{feature="bmi",method=' in metrics
    assert 'feature="carat"' not in metrics


def test_the_report_reads_its_target(trained: Path, table, tmp_path: Path) -> None:
    _, frame = table
    current = frame.sample(300, random_state=2)
    current = current.assign(progression=current["progression"] * 1.5)  # the world changed
    current.to_csv(tmp_path / "current.csv", index=False)
    page = report_from_csv(trained, tmp_path / "current.csv", tmp_path / "report.html")
    html = page.read_text()
    assert "bmi" in html and "carat" not in html
    assert 'id="concept"' in html and "No labels" not in html


def test_retraining_on_a_table_whose_column_changed_type_names_the_column(
        trained: Path, table, tmp_path: Path) -> None:
    _, frame = table
    changed = frame.astype({"bmi": str})
    changed.loc[changed.index[:10], "bmi"] = "n/a"
    changed.to_csv(tmp_path / "changed.csv", index=False)
    schema = ModelStore(trained).load(with_estimator=False).schema
    with pytest.raises(DataError, match="column bmi has 10 missing or non-numeric"):
        train(tmp_path / "m", TrainingConfig(data=str(tmp_path / "changed.csv")),
              schema=schema)
    assert not (tmp_path / "m" / "current").exists()


def test_predictions_match_the_estimator_on_its_rows(trained: Path, table) -> None:
    _, frame = table
    bundle = ModelStore(trained).load()
    X = bundle.schema.encode(frame)
    assert bundle.predictor_path is not None
    from driftkeeper.model.predictor import TreePredictor

    np.testing.assert_allclose(TreePredictor.load(bundle.predictor_path).predict(X),
                               bundle.model.predict(X), rtol=1e-9)


def test_a_small_table_is_cross_validated_not_split(trained: Path, table) -> None:
    """442 rows: every row is held out once, so the concept reference has 442 residuals
    (an 80/20 split would leave 89), and the served model learnt from all of them."""
    _, frame = table
    bundle = ModelStore(trained).load()
    assert bundle.metrics["evaluation"] == "5-fold cross-validation on 442 rows"
    assert bundle.metrics["holdout_rows"] == 442
    assert bundle.profile.residuals.n == 442
    X = bundle.schema.encode(frame)
    in_sample = frame["progression"].to_numpy() - bundle.model.predict(X)
    # Out-of-fold errors are honest: far above the model's error on rows it trained on.
    assert bundle.metrics["rmse"] > 1.5 * float(np.sqrt(np.mean(in_sample**2)))


def test_the_base_table_is_recorded_by_its_absolute_path(table, tmp_path: Path,
                                                          monkeypatch) -> None:
    """Retraining reads the base table again, from another directory (the driver's, a
    Job's): a relative path given to `train` is stored resolved."""
    path, frame = table
    monkeypatch.chdir(path.parent)
    schema = infer_schema(frame, "progression", categorical=["sex"])
    train(tmp_path / "m", TrainingConfig(data=path.name, calibration_trials=300),
          schema=schema)
    stored = ModelStore(tmp_path / "m").load(with_estimator=False).metadata["training"]
    assert stored["data"] == str(path.resolve())

"""The Flask app in-process: endpoints, bad input, hot reload and policy reload.

The same behaviour is checked again over real HTTP under gunicorn in tests/integration.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from bad_inputs import (
    BAD_FEEDBACK_INPUTS,
    BAD_PREDICT_INPUTS,
    GOOD_ROW,
    oversized_body,
    too_many_rows,
)
from driftkeeper.drift.profile import ReferenceProfile
from driftkeeper.model.predictor import TreePredictor
from driftkeeper.model.train import TrainingConfig, train
from driftkeeper.schema import DIAMONDS_SCHEMA, FeatureSchema
from driftkeeper.serving.app import state_of
from driftkeeper.serving.monitor_process import Monitor
from inprocess import in_process_app


def _app(model_dir: Path, tmp_path: Path, policy: Path | None = None, **kw):
    return in_process_app(model_dir, tmp_path, policy=policy, **kw)


@pytest.fixture
def served(model_dir: Path, tmp_path: Path):
    app, client = _app(model_dir, tmp_path)
    yield app, client
    state_of(app).stop()


def test_predict_one_row_and_a_batch(served, diamonds) -> None:
    app, client = served
    resp = client.post("/predict", json=GOOD_ROW)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["model_version"] == "v1" and body["request_id"]
    assert resp.headers["X-Request-ID"] == body["request_id"]
    from driftkeeper.model.store import ModelStore

    estimator = ModelStore(state_of(app).config.model_dir).load().model
    rows = diamonds.head(20)
    instances = [{k: (v if isinstance(v, str) else float(v)) for k, v in r.items()}
                 for r in rows.drop(columns="price").astype({"cut": str, "color": str,
                                                             "clarity": str}).to_dict("records")]
    batch = client.post("/predict", json={"instances": instances}).get_json()
    expected = estimator.predict(DIAMONDS_SCHEMA.encode(rows))
    np.testing.assert_allclose(batch["predictions"], expected)
    # the service's exported predictor returns exactly what scikit-learn returns
    one = client.post("/predict", json=instances[3]).get_json()["prediction"]
    assert one == expected[3]


def test_request_id_is_echoed(served) -> None:
    _, client = served
    resp = client.post("/predict", json=GOOD_ROW, headers={"X-Request-ID": "abc-123"})
    assert resp.get_json()["request_id"] == "abc-123"
    bogus = client.post("/predict", json=GOOD_ROW, headers={"X-Request-ID": "<script>"})
    assert bogus.get_json()["request_id"] != "<script>"


@pytest.mark.parametrize(("name", "body", "status", "field"), BAD_PREDICT_INPUTS,
                         ids=[c[0] for c in BAD_PREDICT_INPUTS])
def test_bad_predict_input_is_a_4xx_naming_the_field(served, name, body, status, field) -> None:
    _, client = served
    resp = client.post("/predict", data=body, content_type="application/json")
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.is_json
    assert resp.get_json()["field"] == field
    assert client.post("/predict", json=GOOD_ROW).status_code == 200


@pytest.mark.parametrize(("name", "body", "status", "field"), BAD_FEEDBACK_INPUTS,
                         ids=[c[0] for c in BAD_FEEDBACK_INPUTS])
def test_bad_feedback_is_a_4xx_naming_the_field(served, name, body, status, field) -> None:
    _, client = served
    resp = client.post("/feedback", data=body, content_type="application/json")
    assert resp.status_code == status
    assert resp.get_json()["field"] == field


def test_too_many_rows_and_oversized_body(served) -> None:
    _, client = served
    resp = client.post("/predict", data=too_many_rows(50), content_type="application/json")
    assert resp.status_code == 413 and resp.get_json()["field"] == "instances"
    resp = client.post("/predict", data=oversized_body(64 * 1024),
                       content_type="application/json")
    assert resp.status_code == 413 and resp.is_json and resp.get_json()["field"] == "body"


def test_unknown_routes_and_methods_are_json(served) -> None:
    _, client = served
    assert client.get("/nope").get_json()["status"] == 404
    assert client.get("/predict").status_code == 405
    assert client.get("/predict").is_json


def test_feedback_lands_in_the_store(served, model_dir: Path) -> None:
    app, client = served
    rows = [{**GOOD_ROW, "price": 1500.0}, {**GOOD_ROW, "carat": 1.1, "price": 5100.0}]
    resp = client.post("/feedback", json={"instances": rows})
    assert resp.status_code == 200 and resp.get_json()["accepted"] == 2
    state_of(app).stop()  # closes the segment
    stored = state_of(app).feedback_store(state_of(app).models.model).read()
    assert list(stored["price"]) == [1500.0, 5100.0]
    assert list(stored["model_version"]) == ["v1", "v1"]
    assert (model_dir / "feedback").is_dir()


def test_drift_report_after_an_evaluation(served, diamonds) -> None:
    app, client = served
    sample = diamonds.sample(300, random_state=1)
    rows = sample.astype({"cut": str, "color": str, "clarity": str}).to_dict("records")
    for chunk in (rows[:50], rows[50:100], rows[100:150], rows[150:200], rows[200:250]):
        client.post("/predict", json={"instances": [{k: v for k, v in r.items() if k != "price"}
                                                    for r in chunk]})
    Monitor(state_of(app).config).tick()  # the pod's monitor process, one tick
    report = client.get("/drift").get_json()
    assert report["data"]["samples"] == 250
    assert report["data"]["drift"] is False
    assert report["concept"]["drift"] is None  # no labels yet: insufficient data
    assert report["model_version"] == "v1"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "\ndata_drift " in metrics
    assert 'driftkeeper_feature_drift{feature="carat",method="psi"}' in metrics
    assert 'driftkeeper_feature_bin_total{bin="' in metrics
    assert 'driftkeeper_residual_squares_total{model_version="v1"}' in metrics
    assert "driftkeeper_residual_log_loss_total" not in metrics  # a classifier's only
    assert "driftkeeper_residual_correct_total" not in metrics


def test_reference_serves_the_versions_profile(served, model_dir: Path) -> None:
    _, client = served
    resp = client.get("/reference")
    assert resp.status_code == 200 and resp.headers["ETag"] == '"v1"'
    doc = resp.get_json()
    assert doc["model_version"] == "v1"
    stored = json.loads((model_dir / "versions" / "v1" / "profile.json").read_text())
    assert doc["profile"] == stored
    assert ReferenceProfile.from_dict(doc["profile"]).schema.names == DIAMONDS_SCHEMA.names


def test_schema_serves_the_versions_feature_schema(served, tmp_path: Path) -> None:
    _, client = served
    resp = client.get("/schema")
    assert resp.status_code == 200
    doc = resp.get_json()
    assert doc["model_version"] == "v1"
    assert FeatureSchema.from_dict(doc["schema"]) == DIAMONDS_SCHEMA
    assert doc["schema"]["target"]["name"] == "price"
    empty, empty_client = _app(tmp_path / "no-model", tmp_path / "empty")
    try:
        missing = empty_client.get("/schema")
        assert missing.status_code == 503 and "driftkeeper train" in missing.get_json()["error"]
    finally:
        state_of(empty).stop()


def test_reference_predictor_serves_the_exported_arrays(served, model_dir: Path,
                                                        encoded) -> None:
    _, client = served
    resp = client.get("/reference/predictor")
    assert resp.status_code == 200 and resp.headers["X-Model-Version"] == "v1"
    assert resp.mimetype == "application/octet-stream"
    fetched = TreePredictor.load(io.BytesIO(resp.data))
    local = TreePredictor.load(model_dir / "versions" / "v1" / "predictor.npz")
    np.testing.assert_array_equal(fetched.predict(encoded[:300]), local.predict(encoded[:300]))
    # A version served from its pickle has no arrays to give: a JSON 404 saying so.
    version = model_dir / "versions" / "v1"
    (version / "predictor.npz").unlink()
    meta = json.loads((version / "metadata.json").read_text())
    del meta["files"]["predictor.npz"]  # as a version that was never exported records it
    (version / "metadata.json").write_text(json.dumps(meta))
    other, other_client = _app(model_dir, model_dir.parent / "other")
    try:
        missing = other_client.get("/reference/predictor")
        assert missing.status_code == 404 and "pickle" in missing.get_json()["error"]
    finally:
        state_of(other).stop()


def test_readyz_waits_for_a_model_and_hot_reloads(tmp_path: Path) -> None:
    empty = tmp_path / "empty-model"
    app, client = _app(empty, tmp_path)
    try:
        assert client.get("/readyz").status_code == 503
        resp = client.post("/predict", json=GOOD_ROW)
        assert resp.status_code == 503 and "driftkeeper train" in resp.get_json()["error"]
        assert client.get("/healthz").status_code == 200
        train(empty, TrainingConfig(calibration_trials=1000))
        state_of(app).refresh()
        assert client.get("/readyz").get_json()["model_version"] == "v1"
        assert client.post("/predict", json=GOOD_ROW).status_code == 200
        train(empty, TrainingConfig(seed=3, calibration_trials=1000))
        state_of(app).refresh()
        assert client.post("/predict", json=GOOD_ROW).get_json()["model_version"] == "v2"
        # The replaced version's series is gone: one per worker, however many promotions.
        info = [line for line in client.get("/metrics").get_data(as_text=True).splitlines()
                if line.startswith("driftkeeper_model_info{")]
        assert len(info) == 1 and 'version="v2"' in info[0]
    finally:
        state_of(app).stop()


def test_broken_new_version_keeps_the_old_model(served, model_dir: Path) -> None:
    app, client = served
    broken = model_dir / "versions" / "v2"
    broken.mkdir()
    for name in ("model.joblib", "profile.json", "metrics.json", "metadata.json"):
        (broken / name).write_text("garbage")
    tmp_link = model_dir / "tmp-link"
    os.symlink("versions/v2", tmp_link)
    os.replace(tmp_link, model_dir / "current")
    state_of(app).refresh()
    assert client.post("/predict", json=GOOD_ROW).get_json()["model_version"] == "v1"


def test_policy_file_is_reloaded_and_bad_policy_rejected(model_dir: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    doc = {"apiVersion": "driftkeeper.io/v1alpha1", "kind": "DriftPolicy",
           "metadata": {"name": "p1"}, "spec": {"window": {"size": 300, "minSamples": 50}}}
    policy.write_text(yaml.safe_dump(doc))
    app, client = _app(model_dir, tmp_path, policy=policy)
    try:
        state = Monitor(state_of(app).config)  # the policy is the monitor's
        assert state.policy.policy.data_window.size == 300
        doc["spec"]["window"]["size"] = 400
        doc["metadata"]["name"] = "p2"
        policy.write_text(yaml.safe_dump(doc))
        os.utime(policy, (1, 1))  # a different mtime, whatever the clock's resolution
        state.refresh()
        assert state.policy.policy.name == "p2" and state.policy.policy.data_window.size == 400
        doc["spec"]["window"]["size"] = -5
        policy.write_text(yaml.safe_dump(doc))
        os.utime(policy, (2, 2))
        state.refresh()
        assert state.policy.policy.name == "p2"  # the previous policy stays
        assert "spec.window.size" in state.policy.error
        state.tick()
        assert client.get("/drift").get_json()["policy_error"]
    finally:
        state_of(app).stop()


def test_index_and_openapi(served) -> None:
    from openapi_spec_validator import validate

    _, client = served
    index = client.get("/").get_json()
    assert {"predict", "feedback", "drift", "metrics", "schema", "healthz", "readyz",
            "openapi"} <= set(index["endpoints"])
    doc = client.get("/openapi.json").get_json()
    validate(doc)
    row = doc["components"]["schemas"]["Row"]
    assert row["properties"]["cut"]["enum"][-1] == "Ideal"
    # Every way a request can fail is documented, with the error's JSON shape.
    responses = doc["paths"]["/predict"]["post"]["responses"]
    assert {"200", "400", "413", "422", "503"} <= set(responses)
    assert "/schema" in doc["paths"]
    assert responses["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}


def test_http_errors_are_json_naming_what_was_wrong(served) -> None:
    _, client = served
    resp = client.get("/predict")
    assert resp.status_code == 405
    assert resp.headers["Allow"] and "POST" in resp.headers["Allow"]  # RFC 9110
    assert resp.get_json()["field"] == "method"
    resp = client.get("/no/such/page")
    assert resp.status_code == 404 and resp.get_json()["field"] == "path"


def test_drift_is_read_from_the_published_report_never_evaluated_on_request(
        served, diamonds) -> None:
    app, client = served
    resp = client.get("/drift?histograms=1")
    assert resp.status_code == 503 and "no drift report yet" in resp.get_json()["error"]
    rows = diamonds.head(60).drop(columns="price").astype(
        {"cut": str, "color": str, "clarity": str}).to_dict("records")
    client.post("/predict", json={"instances": rows[:40]})
    Monitor(state_of(app).config).tick()
    client.post("/predict", json={"instances": rows[40:]})  # after the evaluation
    doc = client.get("/drift?histograms=1").get_json()
    assert doc["data"]["samples"] == 40  # what was evaluated, not re-evaluated now
    carat = doc["histograms"]["features"]["carat"]
    assert sum(carat["current"]) == 40 and len(carat["reference"]) == len(carat["current"])

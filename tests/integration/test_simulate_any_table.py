"""The simulator against a real service serving a model that is not about diamonds: it reads
the schema from the service, samples the user's table, and the labels arrive under the
model's own target name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import requests
from sklearn.datasets import load_diabetes

from driftkeeper.errors import DataError
from driftkeeper.inference import infer_schema
from driftkeeper.model.feedback import FeedbackStore
from driftkeeper.model.train import TrainingConfig, train
from driftkeeper.simulate.runner import SimulationConfig, SimulationError, simulate
from driftkeeper.simulate.world import Overrides
from service_process import running_service

pytestmark = pytest.mark.slow

REQUESTS, BATCH = 40, 10  # 400 rows at 50 requests a second: under a second of traffic


@pytest.fixture(scope="module")
def diabetes_service(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("any-table")
    frame = load_diabetes(as_frame=True).frame
    frame["sex"] = np.where(frame["sex"] > 0, "male", "female")
    csv = tmp / "diabetes.csv"
    frame.to_csv(csv, index=False)
    schema = infer_schema(frame, "target")
    model_dir = tmp / "model"
    train(model_dir, TrainingConfig(data=str(csv), calibration_trials=1000), schema=schema)
    with running_service(model_dir, tmp, workers=1) as svc:
        yield svc, csv, schema, model_dir


def test_labels_arrive_under_the_models_target(diabetes_service) -> None:
    svc, csv, schema, model_dir = diabetes_service
    served = requests.get(svc.url + "/schema", timeout=5).json()["schema"]
    assert served["target"]["name"] == "target"
    result = simulate(SimulationConfig(url=svc.url, scenario="concept", rate=50,
                                       requests=REQUESTS, batch=BATCH, label_delay=0.1,
                                       seed=1, data=str(csv)))
    assert result.errors == 0, result.last_error
    assert result.sent == REQUESTS and result.labelled == REQUESTS * BATCH
    assert result.phase == "target x1.25 where sex in male"
    stored = FeedbackStore(model_dir / "feedback", schema).read()
    assert len(stored) == REQUESTS * BATCH
    assert "target" in stored.columns and "price" not in stored.columns
    # Labels are the table's own, but from the onset (request 12 of 40) male rows' are 25 %
    # higher: the concept moved in its segment and only there.
    real = set(load_diabetes(as_frame=True).frame["target"])
    after = np.arange(len(stored)) >= 12 * BATCH
    male = (stored["sex"].astype(str) == "male").to_numpy()
    y = stored["target"].to_numpy()
    assert male[after].any() and (~male[after]).any()
    assert all(v in real for v in y[~(after & male)])
    assert all(round(v / 1.25, 6) in real for v in y[after & male])
    metrics = requests.get(svc.url + "/metrics", timeout=5).text
    assert f"driftkeeper_feedback_total {float(REQUESTS * BATCH)}" in metrics


def test_a_model_of_another_table_needs_its_data(diabetes_service) -> None:
    svc, csv, _, _ = diabetes_service
    with pytest.raises(SimulationError, match=r"serves a model of target; pass --data CSV"):
        simulate(SimulationConfig(url=svc.url, scenario="none", requests=5))
    with pytest.raises(SimulationError, match="--mix: sex has no level 'other'"):
        simulate(SimulationConfig(url=svc.url, scenario="category-mix", requests=5,
                                  data=str(csv), overrides=Overrides(mix="sex=other")))


def test_a_table_without_the_models_columns_is_refused(diabetes_service,
                                                       tmp_path: Path) -> None:
    svc = diabetes_service[0]
    partial = tmp_path / "partial.csv"
    load_diabetes(as_frame=True).frame.drop(columns="bmi").to_csv(partial, index=False)
    with pytest.raises(DataError, match=r"missing column\(s\) bmi"):
        simulate(SimulationConfig(url=svc.url, scenario="none", requests=5, data=str(partial)))

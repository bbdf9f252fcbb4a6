"""The first model of a deployment, from the user's table or model directory: `train
--keep-data` keeps the base table in the model directory and `import` copies a model trained
elsewhere, so that a retrain that sees only the model directory (a Kubernetes Job mounting
the model volume) still learns from the same base rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftkeeper.cli import EXIT_ERROR, EXIT_OK, main
from driftkeeper.errors import DataError
from driftkeeper.model.base_table import keep_table
from driftkeeper.model.feedback import FeedbackStore
from driftkeeper.model.retrain import PROMOTED, retrain
from driftkeeper.model.store import ModelStore
from driftkeeper.policy import parse_policy

ROWS = 3000
POLICY = {"retraining": {"trainingData": {"minFeedbackRows": 600}},
          "promotion": {"evaluationRows": 300}}


@pytest.fixture(scope="module")
def rents(tmp_path_factory) -> Path:
    """A table that is not diamonds: rent from size, age and zone."""
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"size": rng.uniform(1, 10, ROWS), "age": rng.uniform(0, 30, ROWS),
                          "zone": rng.choice(["north", "south", "east"], ROWS)})
    table["rent"] = 100 * table["size"] - 3 * table["age"] + rng.normal(0, 20, ROWS)
    path = tmp_path_factory.mktemp("tables") / "rents.csv"
    table.to_csv(path, index=False)
    return path


def _train(capsys, output: Path, table: Path, *extra: str) -> dict:
    code = main(["train", "--output", str(output), "--data", str(table), "--target", "rent",
                 "--json", *extra])
    out = capsys.readouterr()
    assert code == EXIT_OK, out.err
    return json.loads(out.out)


def _south_got_dearer(model_dir: Path, table: Path) -> None:
    """1,500 labelled rows of a world where the south's rents rose by 150."""
    world = pd.read_csv(table).sample(1500, random_state=1)
    rent = np.where(world["zone"] == "south", world["rent"] + 150.0, world["rent"])
    bundle = ModelStore(model_dir).load(with_estimator=False)
    rows = [{**r, "rent": float(y)} for r, y in zip(
        world[bundle.schema.names].to_dict("records"), rent, strict=True)]
    store = FeedbackStore(model_dir / "feedback", bundle.schema)
    store.append(rows, bundle.version, rent)
    store.close()


def test_keep_data_trains_from_a_copy_that_outlives_the_original(
        tmp_path: Path, rents: Path, quick_calibration, capsys) -> None:
    table = tmp_path / "mounted" / "rents.csv"  # a ConfigMap, gone once the pod is
    table.parent.mkdir()
    shutil.copyfile(rents, table)
    model_dir = tmp_path / "models"
    _train(capsys, model_dir, table, "--keep-data")
    recorded = ModelStore(model_dir).load(with_estimator=False).metadata["training"]["data"]
    kept = Path(recorded)
    assert kept.parent == (model_dir / "data").resolve()
    assert kept.read_bytes() == rents.read_bytes()
    shutil.rmtree(table.parent)
    _south_got_dearer(model_dir, rents)
    outcome = retrain(model_dir, parse_policy(POLICY), since=0.0)
    assert outcome.outcome == PROMOTED, outcome.reason
    candidate = ModelStore(model_dir).load(with_estimator=False)
    assert candidate.metadata["training"]["data"] == recorded
    assert candidate.metadata["training"]["rows"]["base"] == ROWS


def test_keep_data_needs_the_table(tmp_path: Path, capsys) -> None:
    assert main(["train", "--output", str(tmp_path / "m"), "--keep-data"]) == EXIT_ERROR
    assert "--keep-data keeps the table given with --data" in capsys.readouterr().err


def test_a_table_is_kept_once_under_its_content(tmp_path: Path, rents: Path) -> None:
    first = keep_table(tmp_path / "m", rents)
    assert keep_table(tmp_path / "m", rents) == first
    assert keep_table(tmp_path / "m", first) == first  # already inside: used in place
    other = tmp_path / "rents.csv"
    other.write_text(rents.read_text().replace("north", "west"))
    second = keep_table(tmp_path / "m", other)
    assert second != first and sorted(p.name for p in first.parent.iterdir()) == sorted(
        [first.name, second.name])
    assert keep_table(tmp_path / "elsewhere", first).name == first.name  # no second hash
    with pytest.raises(DataError, match="no such file"):
        keep_table(tmp_path / "m", tmp_path / "missing.csv")


def test_import_serves_the_same_model_and_retrains_from_its_kept_table(
        tmp_path: Path, rents: Path, quick_calibration, capsys) -> None:
    """Trained on a laptop with --keep-data, carried to another machine where the recorded
    path does not exist: the table travels in the directory's data/."""
    laptop = tmp_path / "laptop" / "model"
    _train(capsys, laptop, rents, "--keep-data")
    carried = tmp_path / "claim" / "model"
    shutil.copytree(laptop, carried, symlinks=True)
    shutil.rmtree(laptop)
    served = tmp_path / "models"
    assert main(["import", "--from", str(carried), "--output", str(served), "--if-empty",
                 "--json"]) == EXIT_OK
    result = json.loads(capsys.readouterr().out)
    assert result["version"] == "v1" and result["promoted"] is True
    original, imported = (ModelStore(d).load() for d in (carried, served))
    frame = pd.read_csv(rents).head(200)
    X = imported.schema.encode(frame)
    assert np.array_equal(imported.model.predict(X), original.model.predict(X))
    assert imported.profile.to_dict() == original.profile.to_dict()
    assert imported.metadata["imported"]["version"] == "v1"
    assert Path(result["base_table"]).parent == (served / "data").resolve()
    assert imported.metadata["training"]["data"] == result["base_table"]
    # The pod's init container again, after a restart: nothing to do.
    assert main(["import", "--from", str(carried), "--output", str(served),
                 "--if-empty"]) == EXIT_OK
    assert "already serves v1; nothing to import" in capsys.readouterr().out
    _south_got_dearer(served, rents)
    outcome = retrain(served, parse_policy(POLICY), since=0.0)
    assert outcome.outcome == PROMOTED, outcome.reason
    assert ModelStore(served).load(with_estimator=False).metadata["training"]["rows"][
        "base"] == ROWS


def test_import_takes_the_base_table_given(tmp_path: Path, rents: Path, trained_model_dir,
                                           capsys) -> None:
    assert main(["import", "--from", str(trained_model_dir), "--output",
                 str(tmp_path / "m"), "--data", str(rents), "--json"]) == EXIT_OK
    result = json.loads(capsys.readouterr().out)
    assert Path(result["base_table"]).read_bytes() == rents.read_bytes()


def test_a_diamonds_model_imports_without_a_table(tmp_path: Path, trained_model_dir,
                                                  capsys) -> None:
    assert main(["import", "--from", str(trained_model_dir), "--output",
                 str(tmp_path / "m")]) == EXIT_OK
    assert "the shipped diamonds table" in capsys.readouterr().out
    bundle = ModelStore(tmp_path / "m").load(with_estimator=False)
    assert bundle.metadata["training"]["data"] is None


def test_a_corrupt_or_missing_source_is_refused_and_nothing_written(
        tmp_path: Path, trained_model_dir, capsys) -> None:
    source = tmp_path / "source"
    shutil.copytree(trained_model_dir, source, symlinks=True)
    profile = source / "current" / "profile.json"
    profile.write_text(profile.read_text().replace('"', "'", 1))
    target = tmp_path / "models"
    assert main(["import", "--from", str(source), "--output", str(target)]) == EXIT_ERROR
    assert "corrupt: profile.json" in capsys.readouterr().err
    assert ModelStore(target).versions() == []
    assert main(["import", "--from", str(tmp_path / "nowhere"), "--output",
                 str(target)]) == EXIT_ERROR
    assert "is not a model directory" in capsys.readouterr().err

"""One retrain: plan, train, judge, compare-and-swap promotion, and its JSON outcome."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from driftkeeper.errors import PromotionConflictError
from driftkeeper.model import retrain as retrain_module
from driftkeeper.model.feedback import FeedbackStore
from driftkeeper.model.retrain import (
    FAILED,
    PROMOTED,
    REJECTED,
    TERMINATION_MESSAGE_LIMIT,
    WAITING,
    RetrainOutcome,
    plan_retrain,
    retrain,
)
from driftkeeper.model.store import ModelStore
from driftkeeper.policy import parse_policy
from driftkeeper.schema import DIAMONDS_SCHEMA
from traffic import to_rows

POLICY = {"retraining": {"trainingData": {"minFeedbackRows": 600}},
          "promotion": {"evaluationRows": 300}}


def _dearer_labels(model_dir: Path, diamonds, n: int, seed: int = 2) -> None:
    """Labels of a world where D/E/F diamonds got 25% dearer, in three batches."""
    rows = diamonds.sample(n, random_state=seed)
    dear = rows["color"].isin(["D", "E", "F"])
    rows = rows.assign(price=np.where(dear, rows["price"] * 1.25, rows["price"]))
    store = FeedbackStore(model_dir / "feedback", DIAMONDS_SCHEMA)
    for part in np.array_split(np.arange(n), 3):
        chunk = rows.iloc[part]
        store.append(to_rows(chunk, with_price=True), "v1", chunk["price"].to_numpy())
    store.close()


def test_plan_keeps_the_newest_rows_to_judge(model_dir: Path, diamonds) -> None:
    _dearer_labels(model_dir, diamonds, 1000)
    feedback = FeedbackStore(model_dir / "feedback", DIAMONDS_SCHEMA)
    plan = plan_retrain(feedback, parse_policy(POLICY), since=0.0)
    assert (plan.train_rows, plan.judge_rows) == (700, 300)
    rows = feedback.read()
    assert (rows["ts"] < plan.cutoff).sum() == 700  # distinct stamps even within a batch
    assert (rows["ts"] >= plan.cutoff).sum() == 300


def test_better_candidate_is_promoted(model_dir: Path, diamonds) -> None:
    _dearer_labels(model_dir, diamonds, 1500)
    store = ModelStore(model_dir)
    for old in ("v7", "v8", "v9"):  # older candidates on disk, never promoted
        shutil.copytree(store.path("v1"), store.path(old))
    outcome = retrain(model_dir, parse_policy(POLICY), since=0.0, keep_versions=2)
    assert outcome.outcome == PROMOTED, outcome.reason
    # Retention: the newest 2 (v10, the candidate, and v9) and the one it replaced (v1).
    assert sorted(outcome.pruned) == ["v7", "v8"]
    assert store.versions() == ["v1", "v9", "v10"]
    assert (outcome.serving, outcome.candidate) == ("v1", "v10")
    assert outcome.candidate_rmse < outcome.serving_rmse
    assert outcome.rows == {"train": 1200, "judge": 300}
    assert ModelStore(model_dir).current_version() == "v10"
    meta = ModelStore(model_dir).load().metadata["training"]
    assert meta["rows"]["feedback"] == 1200  # the judging rows never trained it


def test_a_candidate_is_not_promoted_over_a_newer_current(model_dir: Path, diamonds,
                                                           monkeypatch) -> None:
    """`current` moves while the candidate trains (another promoter): compare-and-swap
    refuses, the newer model stays."""
    _dearer_labels(model_dir, diamonds, 1500)
    store = ModelStore(model_dir)
    real_train = retrain_module.train

    def train_while_someone_promotes(*args, **kwargs):
        result = real_train(*args, **kwargs)
        (store.versions_dir / "v9").symlink_to(store.path("v1"))
        store.promote("v9")
        return result

    monkeypatch.setattr(retrain_module, "train", train_while_someone_promotes)
    outcome = retrain(model_dir, parse_policy(POLICY), since=0.0)
    assert outcome.outcome == REJECTED
    assert "current is v9, not v1" in outcome.reason
    assert store.current_version() == "v9"


def test_too_few_labels_wait_without_writing_anything(model_dir: Path, diamonds) -> None:
    """Fewer labels on disk than the driver counted is not a failure: the retrain says
    how many it found and needs, and the driver waits (engine: label_offset)."""
    _dearer_labels(model_dir, diamonds, 500)
    outcome = retrain(model_dir, parse_policy(POLICY), since=0.0)
    assert outcome.outcome == WAITING
    assert "500 labelled rows" in outcome.reason and "need 900" in outcome.reason
    assert outcome.rows == {"found": 500, "needed": 900}
    assert RetrainOutcome.from_dict(json.loads(outcome.to_json())) == outcome
    assert ModelStore(model_dir).versions() == ["v1"]
    assert ModelStore(model_dir).current_version() == "v1"


def test_compare_and_swap_on_the_store(model_dir: Path) -> None:
    store = ModelStore(model_dir)
    with pytest.raises(PromotionConflictError) as info:
        store.promote("v1", expected="v7")
    assert (info.value.expected, info.value.actual) == ("v7", "v1")
    store.promote("v1", expected="v1")  # the expected version: fine
    assert store.current_version() == "v1"


def test_outcome_fits_a_termination_message() -> None:
    outcome = RetrainOutcome(FAILED, "x" * 10_000, serving="v1")
    text = outcome.to_json()
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    doc = json.loads(text)
    assert doc["outcome"] == FAILED and doc["promoted"] is False
    assert doc["reason"].endswith("...")
    assert RetrainOutcome.from_dict(doc).serving == "v1"
    with pytest.raises(ValueError, match="not a retrain outcome"):
        RetrainOutcome.from_dict({"outcome": "maybe"})


@pytest.mark.slow
def test_cli_writes_the_outcome_to_stdout_and_the_termination_log(model_dir: Path, diamonds,
                                                                   tmp_path: Path) -> None:
    _dearer_labels(model_dir, diamonds, 1500)
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    log = tmp_path / "termination-log"
    done = subprocess.run([sys.executable, "-m", "driftkeeper.cli", "retrain", "--model-dir",
                           str(model_dir), "--policy", str(policy), "--since", "0",
                           "--termination-log", str(log)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = json.loads(done.stdout)
    assert printed == json.loads(log.read_text())
    assert printed["outcome"] == PROMOTED and printed["candidate"] == "v2"
    # A failing retrain exits 2 and still explains itself in the termination log.
    missing = tmp_path / "empty-model-dir"
    done = subprocess.run([sys.executable, "-m", "driftkeeper.cli", "retrain", "--model-dir",
                           str(missing), "--policy", str(policy), "--termination-log",
                           str(log)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    failed = json.loads(log.read_text())
    assert failed["outcome"] == FAILED and "no current model" in failed["reason"]


def test_retrain_on_another_table_uses_the_table_the_model_was_trained_on(
        tmp_path: Path) -> None:
    """No --data: the base rows are the serving version's training table, not diamonds."""
    import pandas as pd

    from driftkeeper.inference import infer_schema
    from driftkeeper.model.train import TrainingConfig, train

    rng = np.random.default_rng(0)
    n = 4000
    table = pd.DataFrame({"size": rng.uniform(1, 10, n), "age": rng.uniform(0, 30, n),
                          "zone": rng.choice(["north", "south", "east"], n)})
    table["rent"] = 100 * table["size"] - 3 * table["age"] + rng.normal(0, 20, n)
    csv = tmp_path / "rents.csv"
    table.to_csv(csv, index=False)
    schema = infer_schema(table, "rent")
    model_dir = tmp_path / "m"
    train(model_dir, TrainingConfig(data=str(csv), calibration_trials=300), schema=schema)
    world = table.sample(1500, random_state=1)
    south = (world["zone"] == "south").to_numpy()
    rent = np.where(south, world["rent"] + 150.0, world["rent"])  # the south got dearer
    rows = [{**r, "rent": float(y)} for r, y in zip(
        world[schema.names].to_dict("records"), rent, strict=True)]
    store = FeedbackStore(model_dir / "feedback", schema)
    store.append(rows, "v1", rent)
    store.close()
    outcome = retrain(model_dir, parse_policy(POLICY), since=0.0)
    assert outcome.outcome == PROMOTED, outcome.reason
    candidate = ModelStore(model_dir).load()
    assert candidate.metadata["training"]["data"] == str(csv)
    assert candidate.metadata["training"]["rows"]["base"] == n

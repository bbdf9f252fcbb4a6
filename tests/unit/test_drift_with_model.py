"""`driftkeeper drift --model DIR --current CSV`: a batch judged against the model's own
reference by every kind, as the service judges its traffic, with the policy's budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from driftkeeper.cli import EXIT_DRIFT, EXIT_ERROR, EXIT_INSUFFICIENT, EXIT_OK, main

LABEL_FREE = {"data", "prediction", "performance"}


@pytest.fixture(scope="module")
def batches(tmp_path_factory, diamonds) -> Path:
    root = tmp_path_factory.mktemp("batches")
    rows = diamonds.sample(1000, random_state=3)
    features = rows.drop(columns=["price"])
    features.to_csv(root / "quiet.csv", index=False)
    features.assign(carat=features["carat"] * 1.3).to_csv(root / "carat.csv", index=False)
    features.head(50).to_csv(root / "few.csv", index=False)
    rows.to_csv(root / "labelled.csv", index=False)
    repriced = rows["color"].isin(["D", "E", "F"])
    rows.assign(price=rows["price"].where(~repriced, rows["price"] * 1.4)).to_csv(
        root / "repriced.csv", index=False)
    return root


def _json(capsys, *args: str) -> tuple[int, dict]:
    code = main(["drift", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_a_quiet_batch_passes_every_label_free_kind(trained_model_dir, batches, capsys) -> None:
    code, doc = _json(capsys, "--model", str(trained_model_dir),
                      "--current", str(batches / "quiet.csv"))
    assert code == EXIT_OK
    assert doc["verdicts"] == {"data": False, "prediction": False, "performance": False}
    assert doc["drift"] is False and "concept" not in doc  # no labels, no concept verdict
    assert doc["model_version"] == "v1" and doc["data"]["samples"] == 1000


def test_a_shifted_batch_exits_one_with_each_kinds_verdict(trained_model_dir, batches,
                                                          capsys) -> None:
    code, doc = _json(capsys, "--model", str(trained_model_dir),
                      "--current", str(batches / "carat.csv"))
    assert code == EXIT_DRIFT and doc["drift"] is True
    assert set(doc["verdicts"]) == LABEL_FREE and all(doc["verdicts"].values())
    assert doc["data"]["features"]["carat"]["drift"] is True
    assert doc["performance"]["score"] > doc["performance"]["threshold"]


def test_labels_in_the_batch_judge_concept_drift_too(trained_model_dir, batches,
                                                     capsys) -> None:
    code, doc = _json(capsys, "--model", str(trained_model_dir),
                      "--current", str(batches / "labelled.csv"))
    assert code == EXIT_OK and doc["verdicts"]["concept"] is False
    code, doc = _json(capsys, "--model", str(trained_model_dir),
                      "--current", str(batches / "repriced.csv"))
    assert code == EXIT_DRIFT
    assert doc["verdicts"] == {"data": False, "prediction": False, "performance": False,
                               "concept": True}  # the inputs did not move; prices did
    assert doc["concept"]["segments"]["locations"][0]["feature"] == "color"


def test_the_policy_file_decides(trained_model_dir, batches, tmp_path, capsys) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({
        "apiVersion": "driftkeeper.io/v1alpha1", "kind": "DriftPolicy",
        "metadata": {"name": "nightly"},
        "spec": {"prediction": {"enabled": False}, "performance": {"enabled": False},
                 "data": {"features": {"carat": {"threshold": 10.0}}}}}))
    code, doc = _json(capsys, "--model", str(trained_model_dir), "--policy", str(policy),
                      "--current", str(batches / "carat.csv"))
    # carat's threshold is out of reach and the other kinds are off: no drift.
    assert code == EXIT_OK and doc["verdicts"] == {"data": False}
    assert doc["policy"] == "nightly"


def test_too_few_rows_and_the_text_table(trained_model_dir, batches, capsys) -> None:
    code = main(["drift", "--model", str(trained_model_dir),
                 "--current", str(batches / "few.csv")])
    out = capsys.readouterr().out
    assert code == EXIT_INSUFFICIENT
    assert "insufficient data" in out and "prediction" in out and "carat" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--current", "x.csv"], "--reference CSV, or --model DIR"),
    (["--current", "x.csv", "--model", "M", "--threshold", "0.2"], "--threshold only apply"),
    (["--current", "x.csv", "--model", "M", "--categorical", "cut", "--min-samples", "50"],
     "--min-samples, --categorical only apply"),
    (["--current", "x.csv", "--reference", "r.csv", "--policy", "p.yaml"],
     "--policy judges against the model's own reference"),
])
def test_flags_that_do_not_fit_name_themselves(args, message, capsys) -> None:
    assert main(["drift", *args]) == EXIT_ERROR
    assert message in capsys.readouterr().err

"""`driftkeeper drift` and `driftkeeper train` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftkeeper.cli import EXIT_DRIFT, EXIT_ERROR, EXIT_INSUFFICIENT, EXIT_OK, main
from driftkeeper.model.store import ModelStore
from driftkeeper.schema import FeatureSchema


@pytest.fixture(scope="module")
def csvs(tmp_path_factory, diamonds):
    root = tmp_path_factory.mktemp("csv")
    diamonds.sample(20000, random_state=1).to_csv(root / "reference.csv", index=False)
    current = diamonds.sample(1000, random_state=2)
    current.to_csv(root / "same.csv", index=False)
    current.assign(carat=current["carat"] * 1.3).to_csv(root / "carat.csv", index=False)
    current.head(50).to_csv(root / "few.csv", index=False)
    odd = current.astype({"cut": str}).copy()
    odd.loc[odd.index[:40], "cut"] = "Superb"
    odd.loc[odd.index[40:45], "depth"] = None
    odd.to_csv(root / "odd.csv", index=False)
    current.drop(columns=["table"]).to_csv(root / "missing.csv", index=False)
    return root


def _run(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


def test_no_drift_exits_zero(csvs: Path, capsys) -> None:
    code, out = _run(capsys, "drift", "--reference", str(csvs / "reference.csv"),
                     "--current", str(csvs / "same.csv"))
    assert code == EXIT_OK
    assert "data drift: ok" in out


def test_drift_exits_one_and_json_has_the_shape(csvs: Path, capsys) -> None:
    code, out = _run(capsys, "drift", "--reference", str(csvs / "reference.csv"),
                     "--current", str(csvs / "carat.csv"), "--json", "--method", "ks")
    assert code == EXIT_DRIFT
    report = json.loads(out)
    assert "concept" not in report
    data = report["data"]
    assert {"score", "threshold", "drift", "samples", "features"} <= set(data)
    assert data["drift"] is True and data["samples"] == 1000
    carat = data["features"]["carat"]
    assert carat["method"] == "ks" and carat["drift"] is True and carat["pvalue"] < 1e-6
    assert data["features"]["cut"]["method"] == "jensenshannon"


def test_exact_mode_and_per_feature_flags(csvs: Path, capsys) -> None:
    code, out = _run(capsys, "drift", "--reference", str(csvs / "reference.csv"),
                     "--current", str(csvs / "carat.csv"), "--json", "--exact",
                     "--method", "carat=wasserstein", "--threshold", "carat=0.3")
    report = json.loads(out)
    carat = report["data"]["features"]["carat"]
    assert report["mode"] == "exact"
    assert (carat["method"], carat["threshold"], carat["threshold_source"]) == (
        "wasserstein", 0.3, "policy")
    assert code == EXIT_DRIFT


def test_too_few_rows_is_no_verdict(csvs: Path, capsys) -> None:
    code, out = _run(capsys, "drift", "--reference", str(csvs / "reference.csv"),
                     "--current", str(csvs / "few.csv"))
    assert code == EXIT_INSUFFICIENT
    assert "insufficient data" in out


def test_unseen_and_invalid_values_are_reported(csvs: Path, capsys) -> None:
    code, out = _run(capsys, "drift", "--reference", str(csvs / "reference.csv"),
                     "--current", str(csvs / "odd.csv"), "--json")
    data = json.loads(out)["data"]
    assert data["features"]["cut"]["unseen"] == 40
    assert data["features"]["depth"]["invalid"] == 5
    assert code in (EXIT_OK, EXIT_DRIFT)


@pytest.mark.parametrize(("args", "message"), [
    (["--current", "missing.csv"], "missing column"),
    (["--current", "nowhere.csv"], "not found"),
    (["--current", "same.csv", "--method", "cut=ks"], "does not apply"),
    (["--current", "same.csv", "--method", "kl"], "unknown method"),
    (["--current", "same.csv", "--threshold", "carot=0.2"], "unknown feature"),
    (["--current", "same.csv", "--threshold", "high"], "threshold"),
])
def test_errors_exit_two_with_a_message(csvs: Path, capsys, args, message) -> None:
    args = [a if not a.endswith(".csv") else str(csvs / a) for a in args]
    code = main(["drift", "--reference", str(csvs / "reference.csv"), *args])
    assert code == EXIT_ERROR
    assert message in capsys.readouterr().err


def test_console_script_train_and_json(tmp_path: Path) -> None:
    """The installed `driftkeeper` entry point, as a user runs it."""
    exe = Path(sys.executable).with_name("driftkeeper")
    out = subprocess.run([str(exe), "train", "--output", str(tmp_path / "m"), "--json"],
                         capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout)
    assert result["version"] == "v1" and result["promoted"] is True
    assert result["metrics"]["rmse"] < 615.9
    assert (tmp_path / "m" / "current").is_symlink()


def test_train_if_empty_keeps_an_existing_model(model_dir: Path, capsys) -> None:
    assert main(["train", "--output", str(model_dir), "--if-empty"]) == 0
    assert "already serves v1" in capsys.readouterr().out
    assert ModelStore(model_dir).versions() == ["v1"]


def test_operator_local_needs_its_flags(capsys) -> None:
    assert main(["operator", "--local", "--policy", "p.yaml"]) == 2
    assert "--local needs --service, --model-dir" in capsys.readouterr().err


# -- training on any table ------------------------------------------------------------------

DIABETES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


@pytest.fixture(scope="module")
def diabetes_csv(tmp_path_factory) -> Path:
    """scikit-learn's bundled diabetes table (offline), its target named 'progression'."""
    from sklearn.datasets import load_diabetes

    path = tmp_path_factory.mktemp("diabetes") / "diabetes.csv"
    frame = load_diabetes(as_frame=True).frame.rename(columns={"target": "progression"})
    frame.to_csv(path, index=False)
    return path


def test_train_on_any_table(tmp_path: Path, diabetes_csv: Path, quick_calibration,
                            capsys) -> None:
    code, out = _run(capsys, "train", "--output", str(tmp_path / "m"), "--data",
                     str(diabetes_csv), "--target", "progression", "--json")
    assert code == EXIT_OK
    result = json.loads(out)
    assert [f["name"] for f in result["schema"]["features"]] == DIABETES
    assert result["schema"]["target"]["task"] == "regression"
    bundle = ModelStore(tmp_path / "m").load()
    assert bundle.version == "v1"
    assert bundle.profile.schema == FeatureSchema.from_dict(result["schema"])
    assert bundle.schema.names == DIABETES and bundle.schema.target.name == "progression"
    assert bundle.metadata["schema"] == result["schema"]
    frame = pd.read_csv(diabetes_csv)
    predictions = bundle.model.predict(bundle.schema.encode(frame))
    rmse = float(((predictions - frame["progression"]) ** 2).mean() ** 0.5)
    assert rmse < frame["progression"].std()  # it learned something
    assert bundle.predictor_path is not None  # the service can serve it without sklearn


def test_train_prints_what_it_inferred(tmp_path: Path, diabetes_csv: Path, quick_calibration,
                                       capsys) -> None:
    code, out = _run(capsys, "train", "--output", str(tmp_path / "m"), "--data",
                     str(diabetes_csv), "--target", "progression", "--categorical", "sex",
                     "--drop", "s5", "s6")
    assert code == EXIT_OK
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()
             if line.startswith("  ") and not line.startswith("  held-out")}
    assert list(lines) == ["progression", *DIABETES[:-2]]
    assert lines["progression"][:2] == ["regression", "target"]
    assert lines["sex"][:3] == ["categorical", "2", "levels:"]
    assert lines["bmi"][0] == "numerical" and lines["bmi"][1].startswith("(")
    assert "trained v1" in out
    assert ModelStore(tmp_path / "m").load(with_estimator=False).schema.feature(
        "sex").kind == "categorical"


@pytest.mark.parametrize(("args", "message"), [
    (["--target", "progression", "--task", "classification"],
     "progression has 214 classes; a classification takes at most 50"),
    (["--target", "sex", "--model", "rf"], "--model rf is for regression only"),
    (["--target", "weight"], "unknown target column 'weight'"),
    (["--target", "progression", "--drop", "bmi", "--categorical", "bmi"],
     "column bmi is both categorical and dropped"),
    ([], "without --target, --data must have the diamonds columns"),
    (["--target", "progression", "--schema", "nowhere.yaml"], "cannot read schema file"),
])
def test_train_on_a_table_refuses_with_a_message(tmp_path: Path, diabetes_csv: Path, capsys,
                                                 args: list[str], message: str) -> None:
    args = [str(tmp_path / a) if a.endswith(".yaml") else a for a in args]
    code = main(["train", "--output", str(tmp_path / "m"), "--data", str(diabetes_csv),
                 *args])
    assert code == EXIT_ERROR
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m" / "current").exists()


def test_table_flags_need_the_table(tmp_path: Path, capsys) -> None:
    assert main(["train", "--output", str(tmp_path / "m"), "--target", "price"]) == EXIT_ERROR
    assert "pass it with --data CSV" in capsys.readouterr().err


@pytest.fixture(scope="module")
def diabetes_halves(tmp_path_factory, diabetes_csv: Path) -> Path:
    """The diabetes table split in two; the second half also with bmi raised by 20 %."""
    root = tmp_path_factory.mktemp("diabetes-drift")
    frame = pd.read_csv(diabetes_csv).sample(frac=1.0, random_state=0)
    reference, current = frame.iloc[:240], frame.iloc[240:]
    reference.to_csv(root / "reference.csv", index=False)
    current.to_csv(root / "same.csv", index=False)
    current.assign(bmi=current["bmi"] + 0.2 * frame["bmi"].std() * 3).to_csv(
        root / "bmi.csv", index=False)
    return root


@pytest.mark.parametrize("columns", [["--target", "progression"], ["--model", "MODEL"]])
def test_drift_on_any_table(tmp_path: Path, diabetes_csv: Path, diabetes_halves: Path,
                            quick_calibration, capsys, columns: list[str]) -> None:
    if "--model" in columns:
        assert main(["train", "--output", str(tmp_path / "m"), "--data", str(diabetes_csv),
                     "--target", "progression", "--json"]) == EXIT_OK
        capsys.readouterr()
        columns = ["--model", str(tmp_path / "m")]
    base = ["drift", "--reference", str(diabetes_halves / "reference.csv"), "--min-samples",
            "100", "--json", *columns]
    code, out = _run(capsys, *base, "--current", str(diabetes_halves / "same.csv"))
    assert code == EXIT_OK, out
    assert set(json.loads(out)["data"]["features"]) == set(DIABETES)
    code, out = _run(capsys, *base, "--current", str(diabetes_halves / "bmi.csv"))
    assert code == EXIT_DRIFT
    assert json.loads(out)["data"]["drifted_features"] == ["bmi"]


def test_drift_without_a_schema_on_another_table_names_the_way_out(
        diabetes_halves: Path, capsys) -> None:
    code = main(["drift", "--reference", str(diabetes_halves / "reference.csv"),
                 "--current", str(diabetes_halves / "same.csv")])
    assert code == EXIT_ERROR
    err = capsys.readouterr().err
    assert "missing column(s) carat" in err and "--target" in err and "--model" in err


def test_drift_model_and_target_are_exclusive(diabetes_halves: Path, tmp_path: Path,
                                              capsys) -> None:
    code = main(["drift", "--reference", str(diabetes_halves / "reference.csv"),
                 "--current", str(diabetes_halves / "same.csv"), "--model", str(tmp_path),
                 "--target", "progression"])
    assert code == EXIT_ERROR
    assert "pass either" in capsys.readouterr().err


def test_simulate_passes_the_world_overrides(monkeypatch, capsys) -> None:
    from driftkeeper.simulate import runner
    from driftkeeper.simulate.world import Overrides

    seen = []
    monkeypatch.setattr(runner, "simulate", lambda config, on_progress: seen.append(config)
                        or runner.Progress(config.scenario, 1))
    assert main(["simulate", "--url", "http://127.0.0.1:1", "--scenario", "mixed",
                 "--data", "t.csv", "--tilt", "bmi", "--mix", "sex=male",
                 "--concept", "age>0.04"]) == EXIT_OK
    assert seen[0].data == "t.csv"
    assert seen[0].overrides == Overrides(tilt="bmi", mix="sex=male", concept="age>0.04")


def test_simulate_help_lists_generic_scenarios(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    out = capsys.readouterr().out
    assert "rows with a larger <tilt> arrive" in out and "--concept SEGMENT" in out


def test_replicas_starting_together_train_one_first_model(tmp_path: Path) -> None:
    """Two model pods' init containers on one volume, started at once (as a real node
    runs a two-replica Deployment): one trains, the other waits and keeps its model."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=800)
    pd.DataFrame({"x": x, "y": 3 * x + rng.normal(size=800)}).to_csv(tmp_path / "t.csv",
                                                                       index=False)
    command = [sys.executable, "-m", "driftkeeper.cli", "train", "--output",
               str(tmp_path / "m"), "--data", str(tmp_path / "t.csv"), "--target", "y",
               "--if-empty"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert ModelStore(tmp_path / "m").versions() == ["v1"]
    assert sum("nothing to train" in out for out, _ in outputs) == 1, outputs

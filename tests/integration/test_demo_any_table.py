"""`driftkeeper demo --data CSV --target COLUMN` on tables that are not about diamonds, as a
user runs it: the schema is inferred and printed, the service (2 workers), the local driver
and the simulator run as processes, the concept shift is detected where the scenario put
it, a retrain is promoted, and concept drift clears under the new model. One regression
(scikit-learn's diabetes), one binary classifier (its breast cancer table) and one of three
classes (its wine table)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

from driftkeeper.model.store import ModelStore

pytestmark = pytest.mark.slow


def _diabetes(path: Path) -> list[str]:
    """Unscaled (sex is 1 or 2), target `progression`."""
    frame = load_diabetes(as_frame=True, scaled=False).frame.rename(
        columns={"target": "progression"})
    frame.to_csv(path, index=False)
    return ["--target", "progression", "--categorical", "sex"]


CANCER = ["radius", "texture", "smoothness", "concave_points", "symmetry"]


def _cancer(path: Path) -> list[str]:
    """Five of the 'mean' measurements, the diagnosis as text."""
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns=lambda c: c.removeprefix("mean ").replace(" ", "_"))
    frame["diagnosis"] = [data.target_names[t] for t in data.target]
    frame[[*CANCER, "diagnosis"]].to_csv(path, index=False)
    return ["--target", "diagnosis"]


WINE = ["alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols",
        "flavanoids", "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue",
        "od280/od315_of_diluted_wines", "proline"]


def _wine(path: Path) -> list[str]:
    """All 13 measurements, the cultivar as text (3 classes)."""
    data = load_wine(as_frame=True)
    frame = data.frame.rename(columns={"target": "cultivar"})
    frame["cultivar"] = [("barolo", "grignolino", "barbera")[t] for t in data.target]
    frame.to_csv(path, index=False)
    return ["--target", "cultivar"]


CASES = {
    "diabetes": (_diabetes, 100, r"\n\s+sex\s+categorical\s+2 levels: 1, 2\n",
                 r"progression x1\.25 where", "where: sex 2: progression",
                 ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]),
    "cancer": (_cancer, 100, r"\n\s+diagnosis\s+classification target\s+2 classes",
               r"diagnosis 30% flipped where", "concept drift", CANCER),
    "wine": (_wine, 100, r"\n\s+cultivar\s+classification target\s+3 classes",
             r"cultivar 30% relabelled as the next\s+class where", "concept drift", WINE),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_demo_loop_on_another_table(case: str, tmp_path: Path) -> None:
    write, duration, schema_line, scenario, first_cause, features = CASES[case]
    csv = tmp_path / f"{case}.csv"
    flags = write(csv)
    demo = subprocess.run(
        [sys.executable, "-m", "driftkeeper.cli", "demo", "--workdir", str(tmp_path),
         "--data", str(csv), *flags, "--duration", str(duration), "--rate", "150",
         "--seed", "1"], capture_output=True, text=True, timeout=duration + 300)
    assert demo.returncode == 0, demo.stderr[-3000:]
    out = demo.stdout
    assert "schema inferred from" in out
    assert re.search(schema_line, out), out[:2000]
    assert re.search(scenario, out), out[-3000:]  # the scenario in the table's own columns
    run = tmp_path / "demo"
    lines = (run / "model" / "driver" / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines if line]
    reasons = [e["reason"] for e in events]
    detected = [e for e in events if e["reason"] == "DriftDetected"
                and e["message"].startswith("concept drift")]
    assert detected, reasons
    assert first_cause in detected[0]["message"], detected[0]
    assert reasons.count("ModelPromoted") == 1, reasons
    promoted = reasons.index("ModelPromoted")
    assert reasons.index("RetrainStarted") < promoted
    store = ModelStore(run / "model")
    assert store.current_version() == "v2"
    serving = store.load(with_estimator=False)
    assert serving.metadata["training"]["rows"]["feedback"] >= 2000
    final = json.loads((run / "state" / "report.json").read_text())
    assert final["model_version"] == "v2"
    assert final["concept"]["drift"] is False, final["concept"]
    assert list(final["data"]["features"]) == features
    # Concept drift cleared under v2 (the episode ends with a DriftCleared after it).
    cleared = [e for e in events[promoted:] if e["reason"] == "DriftCleared"
               and e["message"].startswith("concept drift")]
    assert cleared, reasons

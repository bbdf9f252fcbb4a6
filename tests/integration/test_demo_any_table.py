"""`driftkeeper demo --data CSV --target COLUMN` on a table that is not about diamonds, as a
user runs it: the schema is inferred and printed, the service (2 workers), the local driver
and the simulator run as processes, the concept shift is detected, a retrain is promoted,
and concept drift clears under the new model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.datasets import load_diabetes

from driftkeeper.model.store import ModelStore

pytestmark = pytest.mark.slow

DURATION = 70  # seconds of traffic; the shift starts at 30 % (21 s)


@pytest.fixture(scope="module")
def diabetes_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's diabetes table, unscaled (sex is 1 or 2), target `progression`."""
    frame = load_diabetes(as_frame=True, scaled=False).frame.rename(
        columns={"target": "progression"})
    path = tmp_path_factory.mktemp("table") / "diabetes.csv"
    frame.to_csv(path, index=False)
    return path


def _events(run: Path) -> list[dict]:
    lines = (run / "model" / "driver" / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line]


def test_the_demo_loop_on_the_diabetes_table(diabetes_csv: Path, tmp_path: Path) -> None:
    demo = subprocess.run(
        [sys.executable, "-m", "driftkeeper.cli", "demo", "--workdir", str(tmp_path),
         "--data", str(diabetes_csv), "--target", "progression", "--categorical", "sex",
         "--duration", str(DURATION), "--rate", "150", "--seed", "1"],
        capture_output=True, text=True, timeout=DURATION + 240)
    assert demo.returncode == 0, demo.stderr[-3000:]
    out = demo.stdout
    assert "schema inferred from" in out
    assert re.search(r"\n\s+sex\s+categorical\s+2 levels: 1, 2\n", out), out[:2000]
    assert "progression x1.25 where" in out  # the scenario in the table's own columns
    run = tmp_path / "demo"
    events = _events(run)
    reasons = [e["reason"] for e in events]
    detected = [e for e in events if e["reason"] == "DriftDetected"
                and e["message"].startswith("concept drift")]
    assert detected, reasons
    assert reasons.count("ModelPromoted") == 1, reasons
    promoted = reasons.index("ModelPromoted")
    assert reasons.index("RetrainStarted") < promoted
    # The shift itself, located where the scenario put it (not an artefact of replaying
    # rows the model trained on, which narrows residuals instead).
    assert "where: sex 2: progression" in detected[0]["message"], detected[0]
    assert "DriftCleared" in reasons[promoted:], reasons
    store = ModelStore(run / "model")
    assert store.current_version() == "v2"
    serving = store.load(with_estimator=False)
    assert serving.schema.target.name == "progression"
    assert serving.metadata["training"]["rows"]["feedback"] >= 2000
    final = json.loads((run / "state" / "report.json").read_text())
    assert final["model_version"] == "v2"
    assert final["concept"]["drift"] is False, final["concept"]
    assert list(final["data"]["features"]) == ["age", "sex", "bmi", "bp", "s1", "s2", "s3",
                                               "s4", "s5", "s6"]

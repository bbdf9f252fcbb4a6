"""The whole loop on real processes: gunicorn service, local driver, simulator.

`concept` must lead to exactly one retrain whose model is promoted and under which
concept drift falls back below its threshold; `none` and `lab` must lead to no retrain.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from driftkeeper.model.store import ModelStore
from service_process import running_service, stop_process

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _policy(path: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "driftkeeper.io/v1alpha1", "kind": "DriftPolicy",
        "metadata": {"name": "loop"},
        "spec": {"evaluation": {"interval": "1s", "consecutiveBreaches": 3},
                 "window": {"size": 1000, "minSamples": 200},
                 "concept": {"window": {"size": 1000, "minSamples": 200}},
                 "retraining": {"cooldown": "30m",
                                "trainingData": {"minFeedbackRows": 2000}},
                 "promotion": {"evaluationRows": 500}}}))
    return path


def run_loop(model_dir: Path, tmp_path: Path, scenario: str, duration: float,
             settle: int = 8) -> tuple[list[dict], list[dict]]:
    """Run the scenario through the loop; return the driver's events and the drift reports
    seen once a second while the loop settles afterwards."""
    policy = _policy(tmp_path / "policy.yaml")
    pushed = tmp_path / "service-policy.yaml"
    with running_service(model_dir, tmp_path, workers=2, policy=pushed) as svc, \
            open(tmp_path / "driver.log", "wb") as driver_log:
        driver = subprocess.Popen(
            [str(BIN / "driftkeeper"), "operator", "--local", "--policy", str(policy),
             "--service", svc.url, "--model-dir", str(model_dir),
             "--service-policy", str(pushed)],
            stdout=driver_log, stderr=subprocess.STDOUT)
        try:
            sim = subprocess.run(
                [str(BIN / "driftkeeper"), "simulate", "--url", svc.url, "--scenario", scenario,
                 "--rate", "150", "--duration", str(duration), "--label-delay", "1",
                 "--seed", "3"], capture_output=True, text=True, timeout=duration + 120)
            assert sim.returncode == 0, sim.stderr[-2000:]
            reports = []
            for _ in range(settle):
                time.sleep(1.0)
                reports.append(requests.get(svc.url + "/drift", timeout=5).json())
        finally:
            stop_process(driver)
    log = (tmp_path / "driver.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    events_file = model_dir / "driver" / "events.jsonl"
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    return events, reports


def _reasons(events: list[dict]) -> list[str]:
    return [e["reason"] for e in events]


def test_concept_shift_is_retrained_promoted_and_cleared(model_dir, tmp_path) -> None:
    events, reports = run_loop(model_dir, tmp_path, "concept", duration=80, settle=10)
    reasons = _reasons(events)
    assert reasons.count("RetrainStarted") == 1, reasons
    assert reasons.count("ModelPromoted") == 1, reasons
    assert "DriftDetected" in reasons and "DriftCleared" in reasons
    assert reasons.index("DriftDetected") < reasons.index("RetrainStarted") < reasons.index(
        "ModelPromoted") < len(reasons) - 1 - reasons[::-1].index("DriftCleared")
    assert ModelStore(model_dir).current_version() == "v2"
    assert {r["model_version"] for r in reports} == {"v2"}
    # Under v2, concept_drift stays below its threshold (evaluations of overlapping windows;
    # each may false-alarm ~1% of the time, so one stray breach would not be a failure).
    under = [r["concept"]["score"] < r["concept"]["threshold"] and r["concept"]["drift"] is False
             for r in reports]
    assert sum(under) >= 8, json.dumps([r["concept"] for r in reports])[:3000]


@pytest.mark.parametrize("scenario", ["none", "lab"])
def test_no_drift_scenarios_never_retrain(model_dir, tmp_path, scenario: str) -> None:
    events, reports = run_loop(model_dir, tmp_path, scenario, duration=40, settle=3)
    reasons = _reasons(events)
    assert "RetrainStarted" not in reasons, events
    assert ModelStore(model_dir).versions() == ["v1"]
    assert reports[-1]["data"]["drift"] is False and reports[-1]["concept"]["drift"] is False

"""Schemathesis against the real gunicorn service, from its own /openapi.json, with every
check: no 5xx, responses as documented (405 with Allow), every 4xx a JSON error naming
the field, and the service healthy afterwards."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from service_process import running_service

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
CONFIG = Path(__file__).resolve().parents[1] / "schemathesis.toml"


def test_schemathesis_finds_nothing(model_dir: Path, tmp_path: Path) -> None:
    with running_service(model_dir, tmp_path, workers=2) as svc:
        report = tmp_path / "schemathesis.ndjson"
        done = subprocess.run(
            [str(BIN / "schemathesis"), "--config-file", str(CONFIG), "run",
             svc.url + "/openapi.json", "--checks", "all",
             "--max-examples", "60", "--seed", "7", "--request-timeout", "10",
             "--report", "ndjson", "--report-ndjson-path", str(report)],
            capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-6000:]
        assert requests.get(svc.url + "/readyz", timeout=5).status_code == 200
        assert requests.post(svc.url + "/predict", timeout=5, json={
            "carat": 0.5, "cut": "Ideal", "color": "E", "clarity": "VS1", "depth": 61.5,
            "table": 55.0}).status_code == 200
        assert "Traceback" not in svc.log()
    # It really exercised the API: hundreds of cases, every operation of the document.
    generated = re.search(r"(\d+) generated", done.stdout)
    assert generated and int(generated.group(1)) > 200, done.stdout[-2000:]
    assert re.search(r"Tested: (\d+)", done.stdout).group(1) == re.search(
        r"Selected: (\d+)/", done.stdout).group(1)
    events = [json.loads(line) for line in report.read_text().splitlines() if line.strip()]
    labels = {e["ScenarioFinished"]["recorder"]["label"] for e in events
              if "ScenarioFinished" in e}
    assert {"POST /predict", "POST /feedback", "GET /drift", "GET /reference"} <= labels

"""`helm test` works for any model: the chart's test pod builds a request from the served
model's own schema (GET /schema). Its script, as the chart renders it, is run here against
real services: the diamonds regression and a two-class classifier of another table."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from driftkeeper.cli import main
from service_process import running_service
from tools import tool

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(tool("helm") is None, reason="helm not installed")]

ROOT = Path(__file__).resolve().parents[2]
IN_CLUSTER = "http://dk-driftkeeper:8080"


def _test_pod_script() -> str:
    done = subprocess.run([tool("helm"), "template", "dk", str(ROOT / "charts" / "driftkeeper")],
                          capture_output=True, text=True, check=True, timeout=60)
    (pod,) = [d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] == "Pod"
              and d["metadata"]["annotations"]["helm.sh/hook"] == "test"]
    command = pod["spec"]["containers"][0]["command"]
    assert command[:2] == ["python", "-c"] and IN_CLUSTER in command[2]
    return command[2]


def _run_against(url: str) -> subprocess.CompletedProcess:
    script = _test_pod_script().replace(IN_CLUSTER, url)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)


def test_helm_test_passes_for_the_diamonds_regression(model_dir: Path, tmp_path: Path) -> None:
    with running_service(model_dir, tmp_path, workers=1) as service:
        done = _run_against(service.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("model v1 predicts ") and "for price" in done.stdout


def test_helm_test_passes_for_a_classifier_of_another_table(tmp_path: Path) -> None:
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.iloc[:, [0, 1, 2, 3, 4]].assign(
        diagnosis=[data.target_names[t] for t in data.target])
    csv = tmp_path / "cancer.csv"
    frame.to_csv(csv, index=False)
    out = tmp_path / "model"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "--output", str(out), "--data", str(csv),
                     "--target", "diagnosis"]) == 0
    with running_service(out, tmp_path, workers=1) as service:
        done = _run_against(service.url)
    assert done.returncode == 0, done.stderr
    predicted = done.stdout.split(" predicts ")[1].split(" for ")[0]
    assert predicted in ("benign", "malignant") and "for diagnosis" in done.stdout


def test_helm_test_fails_when_the_service_is_not_there(tmp_path: Path) -> None:
    done = _run_against("http://127.0.0.1:9")
    assert done.returncode != 0 and "Connection refused" in done.stderr

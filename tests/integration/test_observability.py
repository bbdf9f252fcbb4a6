"""The dashboard's and the alert rules' queries against real data: the service under
simulated drift and the local driver, scraped by a real Prometheus with the labels the
chart's ServiceMonitors give. Every query must parse and return series; a query for a
metric nobody exports fails here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from prometheus_process import running_prometheus
from service_process import free_port, running_service, stop_process

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None,
                       reason="prometheus not installed (make test-tools installs it)"),
]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NAMESPACE, SERVICE, POLICY = "observed", "diamonds", "observed-policy"
VARIABLES = {"$namespace": NAMESPACE, "$service": SERVICE, "$policy": POLICY,
             "$__rate_interval": "30s", "${datasource}": "prometheus"}


def _substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def _dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads((ROOT / "charts" / "driftkeeper" / "files" / "dashboard.json")
                       .read_text())
    queries = [(f"panel {p['title']!r}", t["expr"]) for p in board["panels"]
               for t in p.get("targets", [])]
    queries += [(f"annotation {a['name']!r}", re.sub(r"\s*>\s*0$", "", a["expr"]))
                for a in board["annotations"]["list"] if "expr" in a]
    for variable in board["templating"]["list"]:
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", str(variable.get("query", "")))
        if match:  # Grafana's label_values(series, label) as plain PromQL
            queries.append((f"variable ${variable['name']}",
                            f"count by ({match.group(2)}) ({match.group(1)})"))
    return queries


def _alerts() -> list[dict]:
    groups = yaml.safe_load((ROOT / "charts" / "driftkeeper" / "files" / "alerts.yaml")
                            .read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _query(prometheus: str, promql: str) -> dict:
    return requests.get(prometheus + "/api/v1/query", params={"query": promql},
                        timeout=10).json()


def test_dashboard_and_alert_queries_return_series(model_dir, tmp_path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({
        "apiVersion": "driftkeeper.io/v1alpha1", "kind": "DriftPolicy",
        "metadata": {"name": POLICY},
        "spec": {"evaluation": {"interval": "1s", "consecutiveBreaches": 2},
                 "window": {"size": 500, "minSamples": 200},
                 "concept": {"window": {"size": 500, "minSamples": 200}}}}))
    pushed = tmp_path / "service-policy.yaml"
    metrics_port = free_port()
    with running_service(model_dir, tmp_path, workers=2, policy=pushed) as svc, \
            open(tmp_path / "driver.log", "wb") as log:
        driver = subprocess.Popen(
            [str(BIN / "driftkeeper"), "operator", "--local", "--policy", str(policy),
             "--service", svc.url, "--model-dir", str(model_dir), "--service-policy",
             str(pushed), "--metrics-port", str(metrics_port)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            target = svc.url.removeprefix("http://")
            prometheus_dir = tmp_path / "prometheus"
            prometheus_dir.mkdir()
            with running_prometheus([target], prometheus_dir,
                                    {"namespace": NAMESPACE, "service": SERVICE},
                                    extra_jobs={"driftkeeper-operator": (
                                        [f"127.0.0.1:{metrics_port}"],
                                        {"namespace": NAMESPACE})}) as prometheus:
                sim = subprocess.run(
                    [str(BIN / "driftkeeper"), "simulate", "--url", svc.url, "--scenario",
                     "mixed", "--rate", "60", "--duration", "45", "--label-delay", "1",
                     "--seed", "5"], capture_output=True, text=True, timeout=240)
                assert sim.returncode == 0, sim.stderr[-2000:]
                time.sleep(5)  # a few more scrapes after the traffic
                empty = []
                for where, expr in _dashboard_queries():
                    body = _query(prometheus, _substitute(expr))
                    assert body["status"] == "success", (where, expr, body)
                    if not body["data"]["result"]:
                        empty.append(f"{where}: {expr}")
                for rule in _alerts():
                    body = _query(prometheus, rule["expr"])
                    assert body["status"] == "success", (rule["alert"], body)
                    query = re.sub(r"\s*(==|>|<)\s*-?[0-9.]+$", "", rule["expr"])
                    if not _query(prometheus, query)["data"]["result"]:
                        empty.append(f"alert {rule['alert']}: {query}")
                assert not empty, "queries without series:\n" + "\n".join(empty)
                # The drift the simulator made is what the alerts see.
                drift = _query(prometheus, 'driftkeeper_policy_drift_detected{kind="data"}')
                assert float(drift["data"]["result"][0]["value"][1]) == 1.0
        finally:
            stop_process(driver)
    assert "Traceback" not in (tmp_path / "driver.log").read_text()

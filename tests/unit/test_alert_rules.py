"""The alert rules through promtool: valid, firing on drift series, silent on healthy ones
and on the "insufficient data" verdict (-1), and the same for the chart and compose."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools import tool

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts" / "driftkeeper" / "files" / "alerts.yaml"
RUNBOOK_BASE = "__RUNBOOK_BASE_URL__"  # the chart puts runbookBaseUrl in its place
PROMTOOL = tool("promtool")

needs_promtool = pytest.mark.skipif(PROMTOOL is None,
                                    reason="promtool not installed (make test-tools)")

POLICY = 'driftkeeper="operator", job="dk-driftkeeper-operator", namespace="ml", policy="diamonds"'
MODEL = 'driftkeeper="model", job="dk-driftkeeper", namespace="ml", service="diamonds"'


def _rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"]}


def _expected(alert: str, **labels: str) -> dict[str, Any]:
    """The alert promtool should report: the rule's labels plus the series' grouping labels,
    its annotations with those labels filled in."""
    rule = _rules()[alert]

    def fill(text: str) -> str:
        return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)

    return {"exp_labels": {**rule["labels"], **labels},
            "exp_annotations": {k: fill(v) for k, v in rule["annotations"].items()}}


def _case(series: list[tuple[str, str]], checks: list[tuple[str, str, list]]) -> dict:
    return {"interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "alert_rule_test": [{"eval_time": t, "alertname": a, "exp_alerts": e}
                                for t, a, e in checks]}


def _tests() -> list[dict[str, Any]]:
    p = {"namespace": "ml", "policy": "diamonds"}
    s = {"namespace": "ml", "service": "diamonds"}
    data = f'driftkeeper_policy_drift_detected{{{POLICY}, kind="data"}}'
    concept = f'driftkeeper_policy_drift_detected{{{POLICY}, kind="concept"}}'
    prediction = f'driftkeeper_policy_drift_detected{{{POLICY}, kind="prediction"}}'
    performance = f'driftkeeper_policy_drift_detected{{{POLICY}, kind="performance"}}'
    return [
        # Drift for longer than `for`: fires; not before.
        _case([(data, "1x15"), (concept, "0x15")],
              [("4m", "DriftkeeperDataDrift", []),
               ("10m", "DriftkeeperDataDrift", [_expected("DriftkeeperDataDrift", **p)]),
               ("10m", "DriftkeeperConceptDrift", [])]),
        # "Insufficient data" (-1) is not drift.
        _case([(data, "-1x15"), (concept, "-1x15")],
              [("10m", "DriftkeeperDataDrift", []), ("10m", "DriftkeeperConceptDrift", [])]),
        _case([(concept, "0 0 1x15")],
              [("10m", "DriftkeeperConceptDrift", [_expected("DriftkeeperConceptDrift", **p)])]),
        _case([(prediction, "-1 -1 1x15"), (data, "0x15")],
              [("4m", "DriftkeeperPredictionDrift", []),
               ("10m", "DriftkeeperPredictionDrift",
                [_expected("DriftkeeperPredictionDrift", **p)]),
               ("10m", "DriftkeeperDataDrift", [])]),
        _case([(performance, "-1 -1 0 1x15"), (prediction, "0x15")],
              [("5m", "DriftkeeperPerformanceDrift", []),
               ("10m", "DriftkeeperPerformanceDrift",
                [_expected("DriftkeeperPerformanceDrift", **p)]),
               ("10m", "DriftkeeperPredictionDrift", [])]),
        # A failed retrain fires at once and clears once out of the 30-minute range.
        _case([(f'driftkeeper_policy_retrains_total{{{POLICY}, outcome="failed"}}', "0 0 1x50"),
               (f'driftkeeper_policy_retrains_total{{{POLICY}, outcome="promoted"}}', "0 1x50")],
              [("1m", "DriftkeeperRetrainFailed", []),
               ("3m", "DriftkeeperRetrainFailed", [_expected("DriftkeeperRetrainFailed", **p)]),
               ("45m", "DriftkeeperRetrainFailed", [])]),
        _case([(f'driftkeeper_policy_phase{{{POLICY}, phase="Degraded"}}', "0 0 1x5"),
               (f'driftkeeper_policy_phase{{{POLICY}, phase="Monitoring"}}', "1 1 0x5")],
              [("1m", "DriftkeeperRetrainBudgetSpent", []),
               ("3m", "DriftkeeperRetrainBudgetSpent",
                [_expected("DriftkeeperRetrainBudgetSpent", **p)])]),
        # Every replica down for 2 minutes; one of two down is not "the service is down".
        _case([(f'up{{{MODEL}, pod="a"}}', "1 0x10"), (f'up{{{MODEL}, pod="b"}}', "1 0x10")],
              [("2m", "DriftkeeperModelServiceDown", []),
               ("5m", "DriftkeeperModelServiceDown",
                [_expected("DriftkeeperModelServiceDown", **s)])]),
        _case([(f'up{{{MODEL}, pod="a"}}', "1 0x10"), (f'up{{{MODEL}, pod="b"}}', "1x10")],
              [("5m", "DriftkeeperModelServiceDown", [])]),
        # Evaluations stopped at t=0: stale after 10 minutes, alerting 5 minutes later.
        _case([(f"driftkeeper_last_evaluation_timestamp_seconds{{{MODEL}, pod=\"a\"}}",
                "0x30"),
               (f"driftkeeper_policy_last_evaluation_timestamp_seconds{{{POLICY}}}", "0x30")],
              [("12m", "DriftkeeperNoEvaluation", []),
               ("20m", "DriftkeeperNoEvaluation", [_expected("DriftkeeperNoEvaluation", **s)]),
               ("20m", "DriftkeeperPolicyNotEvaluated",
                [_expected("DriftkeeperPolicyNotEvaluated", **p)])]),
        # Evaluated every minute: never stale.
        _case([(f"driftkeeper_last_evaluation_timestamp_seconds{{{MODEL}, pod=\"a\"}}",
                "0+60x30"),
               (f"driftkeeper_policy_last_evaluation_timestamp_seconds{{{POLICY}}}", "0+60x30")],
              [("25m", "DriftkeeperNoEvaluation", []),
               ("25m", "DriftkeeperPolicyNotEvaluated", [])]),
    ]


@needs_promtool
def test_rules_check(tmp_path: Path) -> None:
    done = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "SUCCESS: 9 rules found" in done.stdout, done.stderr


@needs_promtool
def test_rules_fire_on_drift_and_stay_silent_otherwise(tmp_path: Path) -> None:
    spec = tmp_path / "alerts_test.yaml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m",
                                    "tests": _tests()}, sort_keys=False))
    done = subprocess.run([PROMTOOL, "test", "rules", str(spec)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    tested = {t["alertname"] for case in _tests() for t in case["alert_rule_test"]}
    assert tested == set(_rules())  # every alert has a case


def test_generated_files_are_current() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "generate_monitoring.py"),
                           "--check"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    compose = ROOT / "deploy" / "compose" / "prometheus" / "alerts.yml"
    values = yaml.safe_load((ROOT / "charts" / "driftkeeper" / "values.yaml").read_text())
    runbooks = values["monitoring"]["prometheusRule"]["runbookBaseUrl"]
    assert compose.read_text() == RULES.read_text().replace(RUNBOOK_BASE, runbooks)


def test_every_alert_links_its_own_runbook_section() -> None:
    """runbook_url is <base>#<alert name in lower case>, and docs/runbooks.md has that
    section (a Markdown heading's anchor is its text in lower case), saying what it means,
    how to check and what to do."""
    text = (ROOT / "docs" / "runbooks.md").read_text()
    sections = {m.group(1).lower(): m.end() for m in re.finditer(r"^## (\w+)$", text, re.M)}
    for name, rule in _rules().items():
        assert rule["annotations"]["runbook_url"] == f"{RUNBOOK_BASE}#{name.lower()}"
        assert name.lower() in sections, f"docs/runbooks.md has no section {name}"
        start = sections[name.lower()]
        body = text[start:text.find("\n## ", start) if "\n## " in text[start:] else None]
        for part in ("Meaning", "Check", "Act"):
            assert f"**{part}.**" in body, (name, part)

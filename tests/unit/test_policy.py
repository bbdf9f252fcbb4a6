"""DriftPolicy documents: defaults, the custom-resource shape, and errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from driftkeeper.errors import PolicyError
from driftkeeper.policy import (
    API_VERSION,
    KIND,
    default_policy,
    load_policy,
    parse_duration,
    parse_policy,
)
from driftkeeper.schema import DIAMONDS_SCHEMA

EXAMPLES = Path(__file__).resolve().parents[2] / "k8s" / "examples"


def test_defaults() -> None:
    p = default_policy()
    assert p.interval == 5.0 and p.consecutive_breaches == 3
    assert (p.data_window.size, p.data_window.min_samples) == (1000, 200)
    assert p.monitor.data.rule == "any" and p.monitor.data.threshold == 0.15
    assert p.monitor.concept.threshold == "auto" and p.monitor.concept.min_score == 0.15
    assert p.retraining.triggers == ("data", "concept") and p.retraining.cooldown == 600
    assert p.spec["window"]["maxAge"] == "1h"  # defaults are filled into the spec too
    assert p.monitor.concept.bias_min_score == 0.15
    pred = p.monitor.prediction
    assert (pred.enabled, pred.method, pred.threshold, pred.min_score) == (True, "ks", "auto",
                                                                          0.05)
    assert pred.min_samples == p.data_window.min_samples  # judged on the input window
    perf = p.monitor.performance
    assert (perf.enabled, perf.threshold, perf.min_score) == (True, "auto", 0.1)
    assert perf.min_samples == p.data_window.min_samples
    segments = p.monitor.concept.segments
    assert (segments.enabled, segments.false_discovery_rate, segments.min_shift,
            segments.min_rows) == (True, 0.01, 0.05, 30)
    assert parse_policy({"concept": {"segments": {"minShift": 0.1, "minRows": 50}}}
                        ).monitor.concept.segments.min_rows == 50
    custom = parse_policy({"performance": {"threshold": 0.25, "enabled": False},
                           "retraining": {"triggers": ["performance"]}})
    assert custom.monitor.performance.threshold == 0.25
    assert custom.monitor.performance.enabled is False
    assert custom.retraining.triggers == ("performance",)


def _rates(spec: dict) -> tuple[float, ...]:
    m = parse_policy(spec).monitor
    return (m.data.false_alarm_rate, m.prediction.false_alarm_rate,
            m.performance.false_alarm_rate, m.concept.false_alarm_rate)


def test_one_false_alarm_budget_is_split_over_the_label_free_kinds() -> None:
    """spec.falseAlarmRate is family-wise over data, prediction and performance (Bonferroni
    over the enabled ones); concept drift keeps its own; a kind's own rate overrides."""
    assert _rates({}) == pytest.approx((0.01 / 3, 0.01 / 3, 0.01 / 3, 0.01))
    assert sum(_rates({})[:3]) == pytest.approx(0.01)
    assert _rates({"falseAlarmRate": 0.03, "concept": {"falseAlarmRate": 0.02}}) == \
        pytest.approx((0.01, 0.01, 0.01, 0.02))
    # A disabled kind takes no share: the others get more of the same budget.
    assert _rates({"prediction": {"enabled": False}})[:3:2] == pytest.approx((0.005, 0.005))
    assert _rates({"prediction": {"enabled": False}, "performance": {"enabled": False}}
                  )[0] == pytest.approx(0.01)
    # An explicit rate is the user's: kept as given, the others still share the budget.
    assert _rates({"data": {"falseAlarmRate": 0.002}})[:3] == pytest.approx(
        (0.002, 0.01 / 3, 0.01 / 3))
    with pytest.raises(PolicyError, match="falseAlarmRate"):
        parse_policy({"falseAlarmRate": 0})


def test_custom_resource_shape_and_per_feature_rules() -> None:
    doc = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "diamonds"},
           "spec": {"window": {"size": 500, "minSamples": 100},
                    "data": {"features": {"carat": {"method": "ks", "threshold": 0.1},
                                          "cut": {"threshold": "auto", "minScore": 0.05}}},
                    "retraining": {"cooldown": "90s", "triggers": ["concept"]}}}
    p = parse_policy(doc, DIAMONDS_SCHEMA)
    assert p.name == "diamonds"
    assert p.data_window.size == 500
    rule = p.monitor.data.rule_for(DIAMONDS_SCHEMA, "carat")
    assert (rule.method, rule.threshold) == ("ks", 0.1)
    cut = p.monitor.data.rule_for(DIAMONDS_SCHEMA, "cut")
    assert (cut.method, cut.threshold, cut.min_score) == ("jensenshannon", "auto", 0.05)
    assert p.retraining.cooldown == 90 and p.retraining.triggers == ("concept",)
    assert p.to_document()["spec"]["window"]["size"] == 500


@pytest.mark.parametrize(("spec", "field", "message"), [
    ({"window": {"size": 0}}, "spec.window.size", "minimum"),
    ({"window": {"size": 100, "minSamples": 200}}, "spec.window.minSamples", "exceeds"),
    ({"data": {"features": {"carat": {"threshold": "high"}}}},
     "spec.data.features.carat.threshold", "auto"),
    ({"data": {"features": {"carat": {"threshold": -1}}}},
     "spec.data.features.carat.threshold", "auto"),
    ({"data": {"features": {"carot": {}}}}, "spec.data.features.carot", "not a model feature"),
    ({"data": {"features": {"cut": {"method": "ks"}}}}, "spec.data.features.cut.method",
     "does not apply"),
    ({"data": {"rule": "most"}}, "spec.data.rule", "is not one of"),
    ({"evaluation": {"interval": "5 seconds"}}, "spec.evaluation.interval", "does not match"),
    ({"retraining": {"triggers": ["cosmic"]}}, "spec.retraining.triggers[0]", "is not one of"),
    ({"retraining": {"maxFailures": "3"}}, "spec.retraining.maxFailures", "not of type"),
    ({"windw": {}}, "spec", "windw"),
    ({"prediction": {"method": "chisquare"}}, "spec.prediction.method", "is not one of"),
    ({"prediction": {"threshold": "often"}}, "spec.prediction.threshold", "auto"),
    ({"performance": {"minScore": -1}}, "spec.performance.minScore", "minimum"),
    ({"concept": {"segments": {"minRows": 1}}}, "spec.concept.segments.minRows", "minimum"),
])
def test_invalid_documents_name_the_field(spec, field, message) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(spec, DIAMONDS_SCHEMA)
    assert info.value.field == field
    assert message in str(info.value)


def test_wrong_kind_or_api_version() -> None:
    with pytest.raises(PolicyError, match="apiVersion"):
        parse_policy({"apiVersion": "v1", "kind": KIND, "spec": {}})
    with pytest.raises(PolicyError, match="kind"):
        parse_policy({"apiVersion": API_VERSION, "kind": "ConfigMap", "spec": {}})


def test_load_from_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": API_VERSION, "kind": KIND,
                                    "metadata": {"name": "x"},
                                    "spec": {"evaluation": {"interval": "500ms"}}}))
    assert load_policy(path).interval == 0.5
    path.write_text("spec: [unclosed")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(path)
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_examples_are_valid(example: Path) -> None:
    parse_policy(yaml.safe_load(example.read_text()), DIAMONDS_SCHEMA)


@pytest.mark.parametrize(("text", "seconds"), [("500ms", 0.5), ("5s", 5), ("10m", 600),
                                               ("1.5h", 5400)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_duration() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")

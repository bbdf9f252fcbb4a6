"""DriftPolicy specs every validator must agree on: the parser, the CRD's schema and CEL
rule (unit tests), and a real API server (integration tests)."""

from __future__ import annotations

from typing import Any

GOOD: list[dict[str, Any]] = [
    {},
    {"concept": {"threshold": 0.2, "residualThreshold": "auto", "biasThreshold": 0}},
    {"concept": {"threshold": 3}},
    {"data": {"features": {"carat": {"method": "ks", "threshold": 0.1}}}},
    {"target": {"service": "diamonds", "prometheus": {"url": "http://prom:9090"}}},
    {"window": {"size": 500, "minSamples": 500}},
    {"prediction": {"method": "psi", "threshold": 0.1}, "retraining": {"triggers": ["prediction"]}},
    {"prediction": {"enabled": False, "minScore": 0, "falseAlarmRate": 0.05}},
    {"performance": {"threshold": 0.2}, "retraining": {"triggers": ["performance", "concept"]}},
    {"performance": {"enabled": False, "minScore": 0.05, "falseAlarmRate": 0.001}},
    {"data": {"minImpact": 0.02}, "concept": {"segments": {"falseDiscoveryRate": 0.05}}},
    {"falseAlarmRate": 0.05, "data": {"falseAlarmRate": 0.01}},
]

BAD: list[dict[str, Any]] = [
    {"concept": {"threshold": "aut0"}},
    {"concept": {"threshold": -0.1}},
    {"concept": {"threshold": True}},
    {"concept": {"threshold": {"value": 1}}},
    {"concept": {"threshold": [0.2]}},
    {"data": {"features": {"carat": {"threshold": "high"}}}},
    {"data": {"features": {"carat": {"method": "kss"}}}},
    {"data": {"methods": {"numerical": "jensenshannon"}}},
    {"window": {"size": "big"}},
    {"window": {"size": 100, "minSamples": 500}},  # a CEL rule
    {"concept": {"window": {"size": 100, "minSamples": 500}}},
    {"evaluation": {"interval": "5 minutes"}},
    {"promotion": {"evaluationRows": 10}},
    {"retraining": {"triggers": ["data", "weather"]}},
    {"prediction": {"method": "jensenshannon"}},
    {"prediction": {"threshold": "auto-ish"}},
    {"prediction": {"falseAlarmRate": 0}},
    {"performance": {"threshold": "soon"}},
    {"performance": {"minScore": -0.1}},
    {"performance": {"falseAlarmRate": 0.9}},
    {"falseAlarmRate": 0},
    {"falseAlarmRate": 0.6},
    {"data": {"minImpact": -0.01}},
    {"concept": {"segments": {"minShift": "big"}}},
    {"concept": {"segments": {"falseDiscoveryRate": 0}}},
    {"retraining": {"job": {"backoffLimit": -1}}},
    {"target": {"port": "http"}},
    {"target": {"service": "Not_A_Name"}},
    {"target": {"service": "diamonds", "prometheus": {"url": "prom:9090"}}},
]



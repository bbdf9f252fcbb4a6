"""Parse and validate DriftPolicy documents into typed settings."""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ..drift.segments import SegmentSettings
from ..drift.settings import (
    ConceptSettings,
    DataSettings,
    FeatureRule,
    MonitorSettings,
    PerformanceSettings,
    PredictionSettings,
)
from ..errors import PolicyError
from ..schema import FeatureSchema

API_VERSION = "driftkeeper.io/v1alpha1"
KIND = "DriftPolicy"

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration like ``500ms``, ``5s``, ``10m`` or ``1.5h``."""
    m = _DURATION.match(str(text).strip())
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 10m, 1h)")
    return float(m.group(1)) * _UNIT_SECONDS[m.group(2)]


@functools.cache
def spec_schema() -> dict[str, Any]:
    """The DriftPolicy spec's JSON schema (the single definition)."""
    text = (resources.files("driftkeeper.policy") / "driftpolicy.schema.yaml").read_text()
    return yaml.safe_load(text)


@dataclass(frozen=True)
class WindowSettings:
    size: int
    min_samples: int
    max_age: float  # seconds


# The settings below carry no defaults of their own: every default is in the schema
# (driftpolicy.schema.yaml), which parse_policy fills in, so there is one place for them.
@dataclass(frozen=True)
class RetrainingSettings:
    enabled: bool
    suspend: bool
    triggers: tuple[str, ...]
    cooldown: float  # seconds
    max_failures: int
    timeout: float  # seconds
    keep_versions: int
    model: str
    strategy: str
    include_base: bool
    feedback_rows: int
    min_feedback_rows: int
    feedback_share: float


@dataclass(frozen=True)
class PromotionSettings:
    min_improvement: float
    evaluation_rows: int


@dataclass(frozen=True)
class DriftPolicy:
    """A validated DriftPolicy with every default filled in."""

    name: str
    interval: float
    consecutive_breaches: int
    data_window: WindowSettings
    concept_window: WindowSettings
    monitor: MonitorSettings
    retraining: RetrainingSettings
    promotion: PromotionSettings
    spec: dict[str, Any]  # the normalised spec (defaults filled), for status and the service

    def to_document(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": self.name},
                "spec": copy.deepcopy(self.spec)}


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        return {**root["$defs"][ref.rsplit("/", 1)[-1]], **siblings}
    return schema


def _fill_defaults(schema: dict[str, Any], value: Any, root: dict[str, Any]) -> Any:
    schema = _resolve(schema, root)
    if schema.get("type") != "object" or not isinstance(value, dict):
        return value
    for key, sub in schema.get("properties", {}).items():
        sub_r = _resolve(sub, root)
        if key not in value:
            if "default" in sub_r:
                value[key] = copy.deepcopy(sub_r["default"])
            elif (sub_r.get("type") == "object" and "properties" in sub_r
                  and not sub_r.get("required")):  # an optional block stays absent
                value[key] = {}
        if key in value:
            value[key] = _fill_defaults(sub_r, value[key], root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in value:
            if key not in schema.get("properties", {}):
                value[key] = _fill_defaults(extra, value[key], root)
    return value


def _path(error: jsonschema.ValidationError) -> str:
    parts = ["spec"]
    for p in error.absolute_path:
        parts.append(f"[{p}]" if isinstance(p, int) else str(p))
    return ".".join(parts).replace(".[", "[")


def _validate_spec(spec: Any) -> None:
    schema = spec_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(spec), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        err = errors[0]
        message = err.message
        if err.validator == "anyOf":
            message = f"{err.instance!r} is neither a number >= 0 nor \"auto\""
        raise PolicyError(message, field=_path(err))


def parse_policy(document: dict[str, Any], schema: FeatureSchema | None = None) -> DriftPolicy:
    """Validate a DriftPolicy (the whole resource, or just its spec) and fill defaults.

    With a feature schema, per-feature entries are checked against the model's features too.
    Raises :class:`PolicyError` naming the offending field.
    """
    if not isinstance(document, dict):
        raise PolicyError("a DriftPolicy must be a mapping", field="")
    name = "default"
    if "spec" in document or "kind" in document or "apiVersion" in document:
        if document.get("apiVersion") != API_VERSION:
            raise PolicyError(f"must be {API_VERSION!r}, got {document.get('apiVersion')!r}",
                              field="apiVersion")
        if document.get("kind") != KIND:
            raise PolicyError(f"must be {KIND!r}, got {document.get('kind')!r}", field="kind")
        name = str((document.get("metadata") or {}).get("name", name))
        spec = document.get("spec") or {}
    else:
        spec = document
    spec = copy.deepcopy(spec)
    _validate_spec(spec)
    spec = _fill_defaults(spec_schema(), spec, spec_schema())
    policy = _build(name, spec)
    if schema is not None:
        try:
            policy.monitor.data.validate(schema)
        except ValueError as exc:
            raise PolicyError(str(exc).split(": ", 1)[-1],
                              field="spec.data." + str(exc).split(":", 1)[0]) from None
    return policy


def _window(w: dict[str, Any], field: str) -> WindowSettings:
    if w["minSamples"] > w["size"]:
        raise PolicyError(f"minSamples ({w['minSamples']}) exceeds size ({w['size']})",
                          field=f"{field}.minSamples")
    return WindowSettings(w["size"], w["minSamples"], parse_duration(w["maxAge"]))


def _segments(s: dict[str, Any]) -> SegmentSettings:
    return SegmentSettings(enabled=s["enabled"],
                           false_discovery_rate=float(s["falseDiscoveryRate"]),
                           min_shift=float(s["minShift"]), min_rows=int(s["minRows"]))


LABEL_FREE = ("data", "prediction", "performance")
"""The verdicts judged without labels, which share spec.falseAlarmRate."""


def label_free_rates(spec: dict[str, Any]) -> dict[str, float]:
    """Each label-free kind's false-alarm rate: its own ``falseAlarmRate`` when set, else an
    equal share (Bonferroni) of the family-wise ``spec.falseAlarmRate`` over the enabled
    kinds, so that an unchanged world sets off any of them at most that often. Bonferroni
    rather than Holm: the verdicts are thresholds calibrated per rate, not p-values, and
    the kinds are positively correlated (a prediction shift is an input shift), which only
    makes the bound more conservative. A disabled kind takes no share."""
    enabled = [k for k in LABEL_FREE if k == "data" or spec[k]["enabled"]]
    share = float(spec["falseAlarmRate"]) / len(enabled)
    return {k: float(spec[k]["falseAlarmRate"]) if spec[k].get("falseAlarmRate") is not None
            else share for k in LABEL_FREE}


def _build(name: str, spec: dict[str, Any]) -> DriftPolicy:
    data, concept, prediction = spec["data"], spec["concept"], spec["prediction"]
    performance = spec["performance"]
    default_methods = data["methods"]
    features = {}
    for fname, f in data.get("features", {}).items():
        features[fname] = FeatureRule(method=f.get("method"), threshold=f["threshold"],
                                      min_score=f.get("minScore"))
    rates = label_free_rates(spec)
    data_window = _window(spec["window"], "spec.window")
    concept_window = _window(concept["window"], "spec.concept.window")
    monitor = MonitorSettings(
        data=DataSettings(min_samples=data_window.min_samples, rule=data["rule"],
                          threshold=float(data["threshold"]),
                          share_threshold=float(data["shareThreshold"]),
                          false_alarm_rate=rates["data"], features=features,
                          default_methods=dict(default_methods),
                          min_impact=float(data["minImpact"])),
        concept=ConceptSettings(min_samples=concept_window.min_samples,
                                threshold=concept["threshold"],
                                min_score=float(concept["minScore"]),
                                residual_threshold=concept["residualThreshold"],
                                bias_threshold=concept["biasThreshold"],
                                bias_min_score=float(concept["biasMinScore"]),
                                false_alarm_rate=float(concept["falseAlarmRate"]),
                                segments=_segments(concept["segments"])),
        prediction=PredictionSettings(enabled=prediction["enabled"],
                                      method=prediction["method"],
                                      threshold=prediction["threshold"],
                                      min_score=float(prediction["minScore"]),
                                      min_samples=data_window.min_samples,
                                      false_alarm_rate=rates["prediction"]),
        performance=PerformanceSettings(enabled=performance["enabled"],
                                        threshold=performance["threshold"],
                                        min_score=float(performance["minScore"]),
                                        min_samples=data_window.min_samples,
                                        false_alarm_rate=rates["performance"]),
    )
    r = spec["retraining"]
    td = r["trainingData"]
    retraining = RetrainingSettings(
        enabled=r["enabled"], suspend=r["suspend"], triggers=tuple(r["triggers"]),
        cooldown=parse_duration(r["cooldown"]), max_failures=r["maxFailures"],
        keep_versions=r["keepVersions"], timeout=parse_duration(r["timeout"]),
        model=r["model"], strategy=r["strategy"],
        include_base=td["includeBase"], feedback_rows=td["feedbackRows"],
        min_feedback_rows=td["minFeedbackRows"], feedback_share=float(td["feedbackShare"]))
    p = spec["promotion"]
    return DriftPolicy(
        name=name, interval=parse_duration(spec["evaluation"]["interval"]),
        consecutive_breaches=spec["evaluation"]["consecutiveBreaches"],
        data_window=data_window, concept_window=concept_window, monitor=monitor,
        retraining=retraining,
        promotion=PromotionSettings(float(p["minImprovement"]), p["evaluationRows"]),
        spec=spec)


def policy_or_default(path: str | Path | None,
                      schema: FeatureSchema | None = None) -> DriftPolicy:
    """The policy file's settings (checked against ``schema``), or the defaults without
    one: what a one-off judgement (``driftkeeper drift --model``, ``report``) runs under."""
    return default_policy() if path is None else load_policy(path, schema)


def load_policy(path: str | Path, schema: FeatureSchema | None = None) -> DriftPolicy:
    """Read a DriftPolicy from a YAML or JSON file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path} is not valid YAML: {exc}") from exc
    return parse_policy(document or {}, schema)


def default_policy() -> DriftPolicy:
    return parse_policy({})

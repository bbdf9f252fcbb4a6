"""The engine on two CSV files: what ``driftkeeper drift`` runs."""

from __future__ import annotations

from pathlib import Path

from ..data import canonicalize, read_csv, read_current
from ..errors import DataError
from ..schema import FeatureSchema
from . import stats
from .evaluate import evaluate_data
from .profile import build_profile
from .report import DriftReport
from .settings import DEFAULT_METHOD, DataSettings, FeatureRule, Threshold
from .windows import data_window


def _threshold(text: str | None) -> Threshold:
    if text is None or text == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"threshold must be 'auto' or a number, got {text!r}") from None
    if value < 0:
        raise DataError(f"threshold must be >= 0, got {value}")
    return value


def settings_from_flags(schema: FeatureSchema, default_method: str | None,
                        methods: dict[str, str], default_threshold: str | None,
                        thresholds: dict[str, str], rule: str, min_samples: int,
                        false_alarm_rate: float) -> DataSettings:
    """DataSettings from CLI flags, with every name checked against the schema."""
    defaults = dict(DEFAULT_METHOD)
    if default_method:
        kinds = stats.METHODS[default_method].kinds if default_method in stats.METHODS else ()
        if not kinds:
            raise DataError(f"unknown method {default_method!r}; known: {sorted(stats.METHODS)}")
        for kind in kinds:
            defaults[kind] = default_method
    for name in {**methods, **thresholds}:
        if name not in schema.names:
            raise DataError(f"unknown feature {name!r}; features: {schema.names}")
    features = {f.name: FeatureRule(methods.get(f.name), _threshold(
        thresholds.get(f.name, default_threshold))) for f in schema.features}
    settings = DataSettings(min_samples=min_samples, rule=rule,  # type: ignore[arg-type]
                            false_alarm_rate=false_alarm_rate, features=features,
                            default_methods=defaults)
    try:
        settings.validate(schema)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    return settings


def compare_files(reference: str | Path, current: str | Path, *, schema: FeatureSchema,
                  default_method: str | None = None, methods: dict[str, str] | None = None,
                  default_threshold: str | None = None, thresholds: dict[str, str] | None = None,
                  rule: str = "any", min_samples: int = 200, false_alarm_rate: float = 0.01,
                  exact: bool = False, seed: int = 0, calibration_trials: int = 5000
                  ) -> DriftReport:
    """Data drift of ``current`` against ``reference`` (CSV files with the schema's columns).

    The reference must be clean (it defines the bins); the current file may hold unseen
    categories and invalid values, which are counted and reported, never fatal.
    """
    settings = settings_from_flags(schema, default_method, methods or {}, default_threshold,
                                   thresholds or {}, rule, min_samples, false_alarm_rate)
    ref_frame = canonicalize(read_csv(reference), schema, source=str(reference),
                             require_target=False)
    cur_raw = read_current(current, schema)
    ref = schema.encode(ref_frame)
    cur = schema.encode(cur_raw)
    profile = build_profile(schema, ref, keep_values=exact, seed=seed,
                            trials=calibration_trials)
    window = data_window(profile, cur)
    exact_values = None
    if exact:
        exact_values = {f.name: cur[:, j] for j, f in enumerate(schema.features)
                        if f.kind == "numerical"}
    verdict = evaluate_data(profile, window, settings, exact_values=exact_values)
    return DriftReport(verdict, None, mode="exact" if exact else "binned")

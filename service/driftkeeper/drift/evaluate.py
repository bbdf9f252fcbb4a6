"""Verdicts: a window against a reference profile under the monitor settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from . import stats
from .calibration import NullTable, effective_size
from .impact import feature_impacts
from .performance import EstimateWindow, relative_change
from .probability import segment_scales
from .profile import CategoricalProfile, NumericalProfile, ReferenceProfile, ResidualProfile
from .report import (
    STATISTICS,
    ConceptVerdict,
    DataVerdict,
    FeatureVerdict,
    PerformanceVerdict,
    ResidualTest,
)
from .segment_verdict import SegmentVerdict, evaluate_segments
from .segments import SegmentSettings, SegmentSums, segment_matrix, segment_sums
from .settings import (
    ConceptSettings,
    DataSettings,
    PerformanceSettings,
    PredictionSettings,
    Threshold,
)
from .windows import DataWindow, ResidualWindow


def _verdict(score: float | None, threshold: float, enough: bool) -> bool | None:
    if not enough or score is None:
        return None
    return bool(score > threshold)


def evaluate_data(profile: ReferenceProfile, window: DataWindow, settings: DataSettings,
                  exact_values: dict[str, np.ndarray] | None = None,
                  predict: Predict | None = None) -> DataVerdict:
    """Per-feature scores and verdicts, then the dataset verdict by ``settings.rule``.

    ``exact_values`` (raw current numerics by feature) switches KS and Wasserstein to their
    exact forms; the profile must then hold the raw reference (``keep_values=True``).
    ``predict`` (the serving model) lets each drifted feature say how much it moves the
    predictions, and ``settings.min_impact`` discount those that barely do.
    """
    schema = profile.schema
    per_feature_alpha = settings.false_alarm_rate / len(schema.features)
    verdicts: dict[str, FeatureVerdict] = {}
    for feat in schema.features:
        rule = settings.rule_for(schema, feat.name)
        prof = profile.features[feat.name]
        counts = window.features[feat.name]
        n = counts.n
        method = stats.method_for(rule.method, feat.kind)
        error_bound = None
        if n == 0:
            result = stats.StatResult(float("nan"))
        elif isinstance(prof, NumericalProfile):
            assert isinstance(counts, stats.NumericCounts)
            raw = None if exact_values is None else exact_values.get(feat.name)
            if raw is not None and method.numeric_exact is not None and prof.values is not None:
                raw = raw[np.isfinite(raw)]
                result = method.numeric_exact(prof.values, raw)
            else:
                assert method.numeric_window is not None
                result = method.numeric_window(prof.bins, counts)
                if rule.method == "ks":
                    error_bound = stats.ks_error_bound(prof.bins, counts.counts)
        else:
            assert isinstance(prof, CategoricalProfile) and method.categorical_window is not None
            assert isinstance(counts, stats.CategoricalCounts)
            result = method.categorical_window(prof.counts, counts)
        floor = method.floor if rule.min_score is None else rule.min_score
        threshold, source = _threshold(rule.threshold, prof.null.get(rule.method), n,
                                       profile.n_reference, per_feature_alpha, floor,
                                       exact=exact_values is not None and rule.method == "ks")
        score = None if n == 0 else float(result.score)
        verdicts[feat.name] = FeatureVerdict(
            method=rule.method, score=score, threshold=threshold,
            drift=_verdict(score, threshold, n >= settings.min_samples), samples=n,
            threshold_source=source, pvalue=result.pvalue,
            unseen=getattr(counts, "unseen", 0), invalid=counts.invalid,
            error_bound=error_bound)
    verdicts = _with_impacts(profile, window, verdicts, predict)
    return _dataset_verdict(window.rows, verdicts, settings)


Predict = Callable[[np.ndarray], np.ndarray]


def _with_impacts(profile: ReferenceProfile, window: DataWindow,
                  verdicts: dict[str, FeatureVerdict],
                  predict: Predict | None) -> dict[str, FeatureVerdict]:
    """Drifted features with their impact on the predictions (only those: the swap costs a
    predict call per feature, and a quiet window needs none)."""
    drifted = [name for name, v in verdicts.items() if v.drift]
    if predict is None or profile.sample is None or not drifted:
        return verdicts
    impacts = feature_impacts(predict, profile.sample, profile, window, drifted)
    return {name: (replace(v, impact_shift=impacts[name].shift, impact=impacts[name].change)
                   if name in impacts else v) for name, v in verdicts.items()}


def _threshold(setting: Threshold, null: NullTable | None, n: int, n_reference: int | None,
               alpha: float, floor: float, exact: bool = False) -> tuple[float, str]:
    """A fixed threshold, or max(calibrated null quantile at the window's size, floor).

    One-sample null tables are looked up at the two-sample effective size (``n_reference``
    given); two-sample tables (``n_reference`` None) at the window size itself.
    Returns the threshold and its source: "policy", "auto" (statistical) or "floor".
    """
    if setting != "auto":
        return float(setting), "policy"
    n_eff = float(max(n, 1)) if n_reference is None else effective_size(max(n, 1), n_reference)
    if exact:
        from scipy import stats as sps

        # Exact KS has a distribution-free null (conservative with ties).
        calibrated = float(sps.kstwo.isf(alpha, max(round(n_eff), 1)))
    else:
        assert null is not None
        calibrated = null.threshold(n_eff, alpha)
    return (calibrated, "auto") if calibrated >= floor else (floor, "floor")


def _dataset_verdict(rows: int, verdicts: dict[str, FeatureVerdict],
                     settings: DataSettings) -> DataVerdict:
    scores = [v.score for v in verdicts.values() if v.score is not None]
    mean = float(np.mean(scores)) if scores else None
    enough = rows >= settings.min_samples and mean is not None
    low_impact = [name for name, v in verdicts.items()
                  if v.drift and v.impact is not None and v.impact < settings.min_impact]
    drifted = [name for name, v in verdicts.items() if v.drift and name not in low_impact]
    share = len(drifted) / len(verdicts) if enough else None
    # Discounted features do not count under rule any: nor does their score in its statistic.
    counted = {name: v for name, v in verdicts.items() if name not in low_impact}
    statistic, threshold = _rule_statistic(settings, counted, mean, share)
    drift: bool | None = None
    if enough:
        assert mean is not None and share is not None
        drift = {"any": bool(drifted), "share": share >= settings.share_threshold,
                 "mean": mean > settings.threshold}[settings.rule]
    return DataVerdict(score=mean, threshold=threshold, drift=drift, samples=rows,
                       min_samples=settings.min_samples, rule=settings.rule, share=share,
                       share_threshold=settings.share_threshold,
                       false_alarm_rate=settings.false_alarm_rate,
                       drifted_features=drifted, features=verdicts,
                       statistic=statistic if enough else None,
                       statistic_name=STATISTICS[settings.rule][0],
                       mean_threshold=settings.threshold, low_impact=low_impact,
                       min_impact=settings.min_impact)


def _rule_statistic(settings: DataSettings, verdicts: dict[str, FeatureVerdict],
                    mean: float | None, share: float | None) -> tuple[float | None, float]:
    """What the rule compares, and against what: the gauges and messages show these, so a
    threshold is never shown beside a statistic the verdict did not use."""
    if settings.rule == "mean":
        return mean, settings.threshold
    if settings.rule == "share":
        return share, settings.share_threshold
    # A zero threshold (a policy may set one) makes any positive score drift: so does its ratio.
    ratios = [v.score / max(v.threshold, 1e-12) for v in verdicts.values()
              if v.score is not None]
    return (max(ratios) if ratios else None), 1.0


def evaluate_concept(profile: ReferenceProfile, window: ResidualWindow,
                     settings: ConceptSettings) -> ConceptVerdict:
    """Relative RMSE increase over the held-out RMSE, plus residual-KS and bias tests (and,
    for a multiclass model, the relative log-loss increase over the held-out log loss).

    The tests share ``false_alarm_rate`` (Bonferroni over those set to ``auto``; the
    log-loss test always is). The residual-KS test counts only when the window's RMSE is
    not below the reference's.
    """
    ref = profile.residuals
    if ref is None:
        raise ValueError("this profile has no residual reference")
    n = window.n
    enough = n >= settings.min_samples
    auto_tests = sum(t == "auto" for t in (settings.threshold, settings.residual_threshold,
                                           settings.bias_threshold))
    # A multiclass model's log loss is judged too (always calibrated: "auto").
    log_loss_null = ref.null.get("log_loss")
    log_loss_judged = log_loss_null is not None and window.log_loss_sum is not None
    alpha = settings.false_alarm_rate / max(auto_tests + log_loss_judged, 1)

    rmse = float(np.sqrt(window.total_sq / n)) if n else None
    score = (rmse - ref.rmse) / ref.rmse if rmse is not None and ref.rmse > 0 else None
    threshold, source = _threshold(settings.threshold, ref.null["rmse"], n, None, alpha,
                                   settings.min_score)
    ks_score = float(stats.ks_binned_scores(ref.bins, window.counts.counts)) if n else None
    ks_threshold, _ = _threshold(settings.residual_threshold, ref.null["ks"], n, ref.n, alpha,
                                 stats.METHODS["ks"].floor)
    bias = (window.total / n - ref.mean) if n else None
    bias_threshold, _ = _threshold(settings.bias_threshold, ref.null["bias"], n, None, alpha,
                                   settings.bias_min_score * ref.rmse)

    rmse_drift = _verdict(score, threshold, enough)
    ks_drift = _verdict(ks_score, ks_threshold, enough)
    if ks_drift and score is not None and score < 0:
        # Errors smaller than on held-out rows: a narrower residual distribution is a model
        # doing better (on easier rows, or on rows it trained on), not a stale one.
        ks_drift = False
    ks_test = ResidualTest(ks_score, ks_threshold, ks_drift)
    # A signed residual's bias is miscalibration either way. A multiclass residual is never
    # negative (drift/probability.py): a lower mean is a model doing better, so only a rise
    # counts (the two-sided null makes the one-sided test a little conservative).
    bias_score = None if bias is None else bias if profile.n_classes >= 3 else abs(bias)
    bias_test = ResidualTest(bias_score, bias_threshold,
                             _verdict(bias_score, bias_threshold, enough))
    log_loss_test = None
    if log_loss_judged and ref.log_loss:
        assert log_loss_null is not None and window.log_loss_sum is not None
        increase = window.log_loss_sum / n / ref.log_loss - 1.0 if n else None
        ll_threshold, _ = _threshold("auto", log_loss_null, n, None, alpha, settings.min_score)
        log_loss_test = ResidualTest(increase, ll_threshold,
                                     _verdict(increase, ll_threshold, enough))
    reasons = [name for name, hit in (("rmse", rmse_drift), ("residual_ks", ks_test.drift),
                                      ("bias", bias_test.drift),
                                      ("log_loss", log_loss_test and log_loss_test.drift))
               if hit]
    drift = None if not enough else bool(reasons)
    return ConceptVerdict(score=score, threshold=threshold, drift=drift, samples=n,
                          min_samples=settings.min_samples, rmse=rmse, rmse_reference=ref.rmse,
                          bias=bias, residual_ks=ks_test, bias_test=bias_test, reasons=reasons,
                          threshold_source=source, log_loss_test=log_loss_test,
                          **_classifier_measures(
                              ref, window, profile.schema.target.classes
                              if profile.n_classes >= 3 else None))


def _classifier_measures(ref: ResidualProfile, window: ResidualWindow,
                         classes: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A classifier's log loss, accuracy and calibration beside the held-out ones (nothing
    for a regression). They are reported, not tested: the RMSE (the Brier score's root),
    residual-KS and bias tests already judge the same residuals."""
    if ref.log_loss is None:
        return {}
    n = window.n
    measures = {"log_loss": window.log_loss_sum / n if n and window.log_loss_sum is not None
                else None,
                "log_loss_reference": ref.log_loss,
                "accuracy": window.correct / n if n and window.correct is not None else None,
                "accuracy_reference": ref.accuracy,
                "calibration": window.total / n if n else None}
    if classes is not None:
        # One-vs-rest: each class's observed rate minus its mean predicted probability
        # (the mean residual is not a calibration here: a multiclass one is never < 0).
        measures["calibration"] = None
        known = (n and window.class_rows is not None
                 and window.class_probabilities is not None)
        measures["class_calibration"] = (
            {c: float((window.class_rows[i] - window.class_probabilities[i]) / n)
             for i, c in enumerate(classes)} if known else None)
    return measures


def evaluate_prediction(profile: ReferenceProfile, window: stats.NumericCounts | None,
                        settings: PredictionSettings) -> FeatureVerdict | None:
    """The predictions' distribution against the held-out predictions, or None when the
    profile has no prediction reference or prediction drift is off."""
    return evaluate_predictions(profile, window, None, settings)[0]


def evaluate_predictions(profile: ReferenceProfile, window: stats.NumericCounts | None,
                         by_class: dict[str, stats.NumericCounts] | None,
                         settings: PredictionSettings
                         ) -> tuple[FeatureVerdict | None, dict[str, FeatureVerdict] | None]:
    """The prediction verdict and, for a multiclass model (``by_class``: each class's
    probability window), each class's. The kind's false-alarm rate is split evenly over
    the summary's test and the K classes' (Bonferroni); the verdict returned first is the
    test furthest over (or nearest to) its threshold, so it drifts when any test does and
    says which score did."""
    prof = profile.predictions
    if prof is None or window is None or not settings.enabled:
        return None, None
    classes = (profile.class_predictions
               if by_class is not None and profile.class_predictions is not None else None)
    alpha = settings.false_alarm_rate / (1 + (len(classes) if classes else 0))
    summary = _prediction_verdict(prof, window, settings, alpha)
    if classes is None:
        return summary, None
    each = {c: _prediction_verdict(classes[c], by_class[c], settings, alpha)  # type: ignore[index]
            for c in classes}
    return max([summary, *each.values()], key=_over_threshold), each


def _over_threshold(verdict: FeatureVerdict) -> float:
    if verdict.score is None:
        return float("-inf")
    return verdict.score / max(verdict.threshold, 1e-12)


def _prediction_verdict(prof: NumericalProfile, window: stats.NumericCounts,
                        settings: PredictionSettings, alpha: float) -> FeatureVerdict:
    """One predicted quantity's window against its held-out distribution."""
    method = stats.method_for(settings.method, "numerical")
    n = window.n
    error_bound = None
    if n == 0:
        result = stats.StatResult(float("nan"))
    else:
        assert method.numeric_window is not None
        result = method.numeric_window(prof.bins, window)
        if settings.method == "ks":
            error_bound = stats.ks_error_bound(prof.bins, window.counts)
    floor = method.floor if settings.min_score is None else settings.min_score
    threshold, source = _threshold(settings.threshold, prof.null.get(settings.method), n,
                                   prof.bins.n, alpha, floor)
    score = None if n == 0 else float(result.score)
    return FeatureVerdict(method=settings.method, score=score, threshold=threshold,
                          drift=_verdict(score, threshold, n >= settings.min_samples),
                          samples=n, threshold_source=source, pvalue=result.pvalue,
                          invalid=window.invalid, error_bound=error_bound)


def evaluate_performance(profile: ReferenceProfile, window: EstimateWindow | None,
                         settings: PerformanceSettings) -> PerformanceVerdict | None:
    """The estimated RMSE change against its calibrated threshold, or None when the
    profile has no loss model or estimated performance is off."""
    prof = profile.performance
    if prof is None or window is None or not settings.enabled:
        return None
    n = window.n
    score = relative_change(prof, window)
    threshold, source = _threshold(settings.threshold, prof.null, n, None,
                                   settings.false_alarm_rate, settings.min_score)
    return PerformanceVerdict(
        score=score, threshold=threshold,
        drift=_verdict(score, threshold, n >= settings.min_samples), samples=n,
        min_samples=settings.min_samples,
        rmse_estimated=None if score is None else prof.rmse * (1.0 + score),
        rmse_reference=prof.rmse, threshold_source=source)


def locate_concept_drift(profile: ReferenceProfile, X: np.ndarray, residuals: np.ndarray,
                         predictions: np.ndarray, settings: SegmentSettings,
                         labels: np.ndarray | None = None) -> SegmentVerdict | None:
    """Where the labelled window's residuals moved (None: off, or no segment reference).
    Callers ask only once concept drift is detected: naming segments of a quiet window
    would only add noise to a report that says all is well."""
    if profile.segments is None or not settings.enabled:
        return None
    window = segment_sums(profile.segments.layout, segment_matrix(X, labels), residuals,
                          segment_scales(profile.n_classes, predictions))
    return evaluate_segments(profile.segments, window, settings,
                             _shift_subject(profile))


def locate_in_sums(profile: ReferenceProfile, window: SegmentSums | None,
                   settings: SegmentSettings) -> SegmentVerdict | None:
    """The same from summed segment counters (the operator's fleet window)."""
    if profile.segments is None or window is None or not settings.enabled:
        return None
    return evaluate_segments(profile.segments, window, settings,
                             _shift_subject(profile))


def _shift_subject(profile: ReferenceProfile) -> str:
    """What a segment's shift is of, in its sentence: the target ("price 24 % above the
    model"), or for a multiclass model the error (its residual is sqrt(Brier / 2) and
    the segments include the classes themselves: "cultivar barolo: error 98 % above")."""
    return "error" if profile.n_classes >= 3 else profile.schema.target.name

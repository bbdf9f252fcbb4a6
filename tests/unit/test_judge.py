"""The one evaluation sequence (drift/judge.py) the pod, the operator and `report` share:
every kind judged, concept drift located only once it is found, no concept verdict
without labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from driftkeeper.drift.judge import Windows, evaluate_all
from driftkeeper.drift.segments import segment_sums
from driftkeeper.drift.windows import data_window, prediction_window, residual_window
from driftkeeper.model.store import ModelStore
from driftkeeper.policy import default_policy


@pytest.fixture(scope="module")
def bundle(trained_model_dir: Path):
    return ModelStore(trained_model_dir).load()


def _windows(bundle, diamonds, encoded: np.ndarray, shift: float, asked: list[int],
             labelled: bool = True) -> Windows:
    """1,000 real rows; the price ``shift`` x the prediction dearer when ``shift`` > 0."""
    rows = np.random.default_rng(3).choice(len(encoded), 1000, replace=False)
    X = encoded[rows]
    predictions = bundle.model.predict(X)
    residuals = diamonds["price"].to_numpy()[rows] - predictions + shift * predictions
    profile = bundle.profile

    def segments():
        asked.append(1)
        return segment_sums(profile.segments.layout, X, residuals, predictions)

    return Windows(data_window(profile, X), prediction_window(profile, predictions), None,
                   residual_window(profile, residuals) if labelled else None, segments)


def test_concept_drift_is_located_only_once_found(bundle, diamonds, encoded) -> None:
    settings = default_policy().monitor
    quiet: list[int] = []
    windows = _windows(bundle, diamonds, encoded, 0.0, quiet)
    report = evaluate_all(bundle.profile, windows, settings, "v1", 1.0)
    assert report.concept is not None and report.concept.drift is False
    assert quiet == [] and report.concept.segments is None
    assert report.prediction is not None and report.data.drift is False
    shifted: list[int] = []
    windows = _windows(bundle, diamonds, encoded, 0.5, shifted)
    report = evaluate_all(bundle.profile, windows, settings, "v1", 1.0)
    assert report.concept is not None and report.concept.drift is True
    assert shifted == [1] and report.concept.segments is not None
    assert (report.model_version, report.evaluated_at) == ("v1", 1.0)


def test_no_labels_no_concept_verdict(bundle, diamonds, encoded) -> None:
    asked: list[int] = []
    report = evaluate_all(bundle.profile,
                          _windows(bundle, diamonds, encoded, 0.5, asked, labelled=False),
                          default_policy().monitor, "v1", 1.0)
    assert report.concept is None and asked == []
    assert "concept" not in report.to_dict()

"""A pod's window counters as /metrics exposes them, for tests that parse that text (and a
classifier's profile for them)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from driftkeeper.drift.profile import (
    ReferenceProfile,
    build_residual_profile,
    numerical_profiles,
)
from driftkeeper.serving.metrics import TallyCollector
from driftkeeper.serving.tally import Tally


def tally_exposition(tally: Tally, directory: Path) -> str:
    """The text a scrape returns for ``tally`` (through the service's own collector)."""
    path = directory / "tally-exposed.json"
    tally.save(path)
    registry = CollectorRegistry()
    registry.register(TallyCollector(path))
    return generate_latest(registry).decode()


def classifier_residuals(n: int, seed: int) -> np.ndarray:
    """Residuals y - p of a binary classifier: p from a Beta, y drawn with probability p
    (a calibrated model), so |r| < 1 and some rows are misclassified."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.6, 0.6, n)
    return (rng.random(n) < p).astype(np.float64) - p


def as_classifier(profile: ReferenceProfile) -> ReferenceProfile:
    """``profile`` with a classifier's held-out residuals (log loss and accuracy): all the
    window counters need of a classifier, without training one."""
    residuals = build_residual_profile(classifier_residuals(2000, 0), np.random.default_rng(0),
                                       trials=500, classification=True)
    target = replace(profile.schema.target, task="classification", classes=("no", "yes"),
                     exclusive_minimum=None, maximum=None)
    return replace(profile, residuals=residuals,
                   schema=replace(profile.schema, target=target))


MULTICLASS = ("red", "green", "blue")


def as_multiclass(profile: ReferenceProfile) -> ReferenceProfile:
    """``profile`` as a 3-class model's: held-out residuals sqrt(Brier / 2) with their
    log losses and correct flags, and held-out probabilities of each class, without
    training one."""
    rng = np.random.default_rng(0)
    residuals = rng.uniform(0.0, 0.8, 2000)
    classifier = build_residual_profile(
        residuals, rng, trials=500, classification=True,
        measures=(rng.exponential(0.5, 2000), rng.random(2000) < 0.7))
    target = replace(profile.schema.target, task="classification", classes=MULTICLASS,
                     exclusive_minimum=None, maximum=None)
    held_out = rng.dirichlet(np.ones(len(MULTICLASS)), 2000)
    by_class = numerical_profiles({c: held_out[:, k] for k, c in enumerate(MULTICLASS)},
                                  rng, 20, 300)
    return replace(profile, residuals=classifier, class_predictions=by_class,
                   schema=replace(profile.schema, target=target))

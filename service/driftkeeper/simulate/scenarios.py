"""Drift scenarios: what the simulated world looks like at each point of a run.

A scenario turns a progress fraction t in [0, 1] into a batch of rows (features the service
sees) and their true target values (the labels that arrive later), sampled from a
:class:`~driftkeeper.simulate.world.World`. Covariate shifts *re-weight* which real rows
arrive instead of editing their features, so every label stays a real one: the
feature->target relation is untouched unless the scenario says it changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .catalog import CATALOG, ONSET, RECOVERY_END, Expectation, Role
from .world import World


@dataclass(frozen=True)
class Batch:
    rows: pd.DataFrame  # features, canonical dtypes
    labels: np.ndarray  # the true target values
    phase: str  # "normal", "drifted", ... for the progress line


Generator = Callable[[np.random.Generator, World, float, int], Batch]


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    expect_data: Expectation
    expect_concept: Expectation
    drifts: tuple[Role, ...]
    needs: tuple[Role, ...]
    _generate: Generator

    def generate(self, rng: np.random.Generator, world: World, t: float, n: int) -> Batch:
        """``n`` rows at progress ``t``; a SimulationError naming the scenario when the
        world has no columns for it (e.g. no categorical feature for `category-mix`)."""
        world.require(self.name, self.needs)
        return self._generate(rng, world, t, n)

    def drifted_features(self, world: World) -> tuple[str, ...]:
        """The features a correct monitor names as drifted, in this world."""
        return world.drifted_features(self.drifts)


def _resample(rng: np.random.Generator, table: pd.DataFrame, n: int,
              weights: np.ndarray | None = None) -> pd.DataFrame:
    p = None if weights is None else weights / weights.sum()
    return table.iloc[rng.choice(len(table), size=n, p=p)].reset_index(drop=True)


def _none(rng: np.random.Generator, world: World, t: float, n: int) -> Batch:
    return Batch(*world.split(_resample(rng, world.table, n)), "normal")


def _lab(rng: np.random.Generator, world: World, t: float, n: int) -> Batch:
    """The lab's perturbations, one draw per request: noise, not drift."""
    frame = _resample(rng, world.table, n)
    world.add_lab_noise(rng, frame)
    return Batch(*world.split(frame), "normal (lab noise)")


def _covariate_gradual(rng: np.random.Generator, world: World, t: float, n: int) -> Batch:
    frame = _resample(rng, world.table, n, world.tilt_weights(t))
    return Batch(*world.split(frame), f"larger {world.tilt_feature} x{t:.2f}")


def _covariate_sudden(rng: np.random.Generator, world: World, t: float, n: int) -> Batch:
    on = t >= ONSET
    frame = _resample(rng, world.table, n, world.tilt_weights(1.0) if on else None)
    return Batch(*world.split(frame), f"larger {world.tilt_feature}" if on else "normal")


def _category_mix(rng: np.random.Generator, world: World, t: float, n: int) -> Batch:
    on = t >= ONSET
    frame = _resample(rng, world.table, n, world.mix_weights() if on else None)
    return Batch(*world.split(frame),
                 f"fewer {world.mix_feature} = {world.mix_level}" if on else "normal")


def _class_prior(rng: np.random.Generator, world: World, t: float, n: int) -> Batch:
    on = t >= ONSET
    frame = _resample(rng, world.table, n, world.prior_weights() if on else None)
    return Batch(*world.split(frame),
                 f"fewer {world.target} = {world.prior_label}" if on else "normal")


def _concept(rng: np.random.Generator, world: World, t: float, n: int) -> Batch:
    on = t >= ONSET
    frame = _resample(rng, world.table, n)
    rows, labels = world.split(frame)
    if on:
        labels = world.shifted_labels(frame, rng)
    return Batch(rows, labels, world.describe_shift() if on else "normal")


def _mixed(rng: np.random.Generator, world: World, t: float, n: int) -> Batch:
    on = t >= ONSET
    frame = _resample(rng, world.table, n, world.tilt_weights(1.0) if on else None)
    rows, labels = world.split(frame)
    if on:
        labels = world.shifted_labels(frame, rng)
    return Batch(rows, labels, f"larger {world.tilt_feature}, {world.describe_shift()}"
                 if on else "normal")


def _recovery(rng: np.random.Generator, world: World, t: float, n: int) -> Batch:
    on = ONSET <= t < RECOVERY_END
    batch = _mixed(rng, world, 1.0 if on else 0.0, n)
    return Batch(batch.rows, batch.labels, "drifted" if on else (
        "recovered" if t >= RECOVERY_END else "normal"))


GENERATORS: dict[str, Generator] = {
    "none": _none, "lab": _lab, "covariate-gradual": _covariate_gradual,
    "covariate-sudden": _covariate_sudden, "category-mix": _category_mix,
    "class-prior": _class_prior, "concept": _concept, "mixed": _mixed, "recovery": _recovery,
}

SCENARIOS: dict[str, Scenario] = {
    name: Scenario(info.name, info.summary, info.expect_data, info.expect_concept,
                   info.drifts, info.needs, GENERATORS[name])
    for name, info in CATALOG.items()
}

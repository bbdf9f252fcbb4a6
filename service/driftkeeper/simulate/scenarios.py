"""Drift scenarios: what the simulated world looks like at each point of a run.

A scenario turns a progress fraction t in [0, 1] into a batch of rows (features the service
sees) and their true prices (the labels that arrive later). Covariate shifts *re-weight* which
real diamonds arrive instead of editing their features, so every label stays a real price:
the feature->price relation is untouched unless the scenario says it changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .catalog import CATALOG, ONSET, RECOVERY_END, Expectation


@dataclass(frozen=True)
class Batch:
    rows: pd.DataFrame  # features, canonical dtypes
    prices: np.ndarray  # the true prices, as labels
    phase: str  # "normal", "drifted", ... for the progress line


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    expect_data: Expectation
    expect_concept: Expectation
    drifted_features: tuple[str, ...]
    generate: Callable[[np.random.Generator, pd.DataFrame, float, int], Batch]


CARAT_TILT = 1.2
"""Sampling weight exp(tilt * z(carat)): at full strength heavy diamonds arrive far more
often (mean carat 0.80 -> ~1.2, PSI ~1)."""

IDEAL_WEIGHT = 0.4
"""Relative weight of Ideal cuts in `category-mix` (their share falls from 40% to ~21%)."""

CONCEPT_COLORS = ("D", "E", "F")
CONCEPT_FACTOR = 1.25
"""`concept`: the best colours become 25% dearer for the same diamond."""


def _resample(rng: np.random.Generator, table: pd.DataFrame, n: int,
              weights: np.ndarray | None = None) -> pd.DataFrame:
    p = None if weights is None else weights / weights.sum()
    return table.iloc[rng.choice(len(table), size=n, p=p)].reset_index(drop=True)


def _carat_weights(table: pd.DataFrame, strength: float) -> np.ndarray:
    carat = table["carat"].to_numpy()
    z = (carat - carat.mean()) / carat.std()
    return np.exp(CARAT_TILT * strength * z)


def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    return frame.drop(columns="price"), frame["price"].to_numpy(np.float64)


def _reprice(frame: pd.DataFrame) -> np.ndarray:
    dearer = frame["color"].isin(CONCEPT_COLORS).to_numpy()
    price = frame["price"].to_numpy(np.float64)
    return np.where(dearer, price * CONCEPT_FACTOR, price)


def _none(rng, table, t, n) -> Batch:
    rows, prices = _split(_resample(rng, table, n))
    return Batch(rows, prices, "normal")


def _lab(rng, table, t, n) -> Batch:
    """The lab's perturbations, one draw per request: noise, not drift."""
    frame = _resample(rng, table, n)
    frame["carat"] *= rng.uniform(0.98, 1.02)
    frame["depth"] *= rng.uniform(0.99, 1.01)
    frame["table"] *= rng.uniform(0.99, 1.01)
    frame["price"] += rng.normal(0.0, frame["price"] * 0.01)
    rows, prices = _split(frame)
    return Batch(rows, prices, "normal (lab noise)")


def _covariate_gradual(rng, table, t, n) -> Batch:
    rows, prices = _split(_resample(rng, table, n, _carat_weights(table, t)))
    return Batch(rows, prices, f"heavier x{t:.2f}")


def _covariate_sudden(rng, table, t, n) -> Batch:
    on = t >= ONSET
    frame = _resample(rng, table, n, _carat_weights(table, 1.0) if on else None)
    rows, prices = _split(frame)
    return Batch(rows, prices, "heavier diamonds" if on else "normal")


def _category_mix(rng, table, t, n) -> Batch:
    on = t >= ONSET
    weights = None
    if on:
        weights = np.where(table["cut"].to_numpy() == "Ideal", IDEAL_WEIGHT, 1.0)
    rows, prices = _split(_resample(rng, table, n, weights))
    return Batch(rows, prices, "fewer Ideal cuts" if on else "normal")


def _concept(rng, table, t, n) -> Batch:
    on = t >= ONSET
    frame = _resample(rng, table, n)
    prices = _reprice(frame) if on else frame["price"].to_numpy(np.float64)
    return Batch(frame.drop(columns="price"), prices, "D/E/F dearer" if on else "normal")


def _mixed(rng, table, t, n) -> Batch:
    on = t >= ONSET
    frame = _resample(rng, table, n, _carat_weights(table, 1.0) if on else None)
    prices = _reprice(frame) if on else frame["price"].to_numpy(np.float64)
    return Batch(frame.drop(columns="price"), prices,
                 "heavier and D/E/F dearer" if on else "normal")


def _recovery(rng, table, t, n) -> Batch:
    on = ONSET <= t < RECOVERY_END
    batch = _mixed(rng, table, 1.0 if on else 0.0, n)
    return Batch(batch.rows, batch.prices, "drifted" if on else (
        "recovered" if t >= RECOVERY_END else "normal"))


GENERATORS: dict[str, Callable[[np.random.Generator, pd.DataFrame, float, int], Batch]] = {
    "none": _none, "lab": _lab, "covariate-gradual": _covariate_gradual,
    "covariate-sudden": _covariate_sudden, "category-mix": _category_mix, "concept": _concept,
    "mixed": _mixed, "recovery": _recovery,
}

SCENARIOS: dict[str, Scenario] = {
    name: Scenario(info.name, info.summary, info.expect_data, info.expect_concept,
                   info.drifted_features, GENERATORS[name])
    for name, info in CATALOG.items()
}


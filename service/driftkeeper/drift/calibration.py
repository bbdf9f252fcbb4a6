"""Calibration of ``auto`` thresholds from the reference itself.

A fixed threshold cannot suit every window size: a KS statistic of 0.08 is noise for 200 rows
and a clear shift for 10,000. So at training time we draw many reference-vs-reference windows
(multinomial draws over the reference's bins, i.e. resampling the reference), compute each
statistic, and store high quantiles of its null distribution for a grid of window sizes.
At evaluation the threshold for the actual sample count and false-alarm rate is interpolated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

SIZES = (20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
"""Window sizes (rows) at which null distributions are tabulated."""

LEVELS = (0.5, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995)
"""Quantile levels stored per size; 1 - level is the false-alarm rate of one comparison."""

TAIL_FROM = 0.99
"""The levels from which the tail beyond the top level is extrapolated."""

TRIALS = 20_000
"""Null draws per size: enough for ten exceedances of the 0.9995 quantile."""


@dataclass(frozen=True)
class NullTable:
    """Quantiles of a statistic's no-drift distribution by window size."""

    sizes: np.ndarray
    levels: np.ndarray
    values: np.ndarray  # shape (len(sizes), len(levels))

    def threshold(self, n: float, alpha: float) -> float:
        """The score exceeded with probability ``alpha`` by an n-row no-drift window.

        Interpolates in -log(1 - level) between levels and log-log in n; beyond the largest
        size it extrapolates along the last segment's slope, below the smallest it holds the
        smallest size's value (no verdict is given there).

        A rate under the smallest tabulated one (1 - 0.9995: a wide table's share of the
        family-wise budget, e.g. 0.01 / 3 kinds / 50 features) is not clamped to it, which
        would multiply the false alarms: the quantile is extrapolated linearly in
        -log(alpha) with the slope of the levels from 0.99 up. That is exact for an
        exponential tail and conservative (higher) for the lighter tails of KS, PSI and
        Wasserstein (bench/wide_tables.py measures the resulting false-alarm rate).
        """
        level_x = -np.log(1.0 - np.asarray(self.levels))
        target = max(float(-np.log(alpha)), float(level_x[0]))
        if target > level_x[-1]:
            per_size = self._tail(level_x, target)
        else:
            per_size = np.array([np.interp(target, level_x, row) for row in self.values])
        log_n = np.log(np.asarray(self.sizes, dtype=np.float64))
        log_v = np.log(np.maximum(per_size, 1e-12))
        x = np.log(max(float(n), 1.0))
        if x <= log_n[0]:
            return float(per_size[0])
        if x < log_n[-1]:
            return float(np.exp(np.interp(x, log_n, log_v)))
        slope = (log_v[-1] - log_v[-2]) / (log_n[-1] - log_n[-2])
        return float(np.exp(log_v[-1] + slope * (x - log_n[-1])))

    def _tail(self, level_x: np.ndarray, target: float) -> np.ndarray:
        """Each size's quantile beyond the top level: the top value plus the least-squares
        slope over the levels >= TAIL_FROM (never negative) times the distance."""
        top = level_x >= -np.log(1.0 - TAIL_FROM)
        if top.sum() < 2:
            top = np.zeros_like(top)
            top[-2:] = True
        x = level_x[top] - level_x[top].mean()
        slopes = (self.values[:, top] - self.values[:, top].mean(axis=1, keepdims=True)) @ x
        slopes = np.maximum(slopes / float(x @ x), 0.0)
        return self.values[:, -1] + slopes * (target - level_x[-1])

    def to_dict(self) -> dict[str, Any]:
        return {"sizes": list(map(int, self.sizes)), "levels": list(map(float, self.levels)),
                "values": [[round(float(v), 8) for v in row] for row in self.values]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NullTable:
        return cls(np.asarray(d["sizes"], dtype=np.float64),
                   np.asarray(d["levels"], dtype=np.float64),
                   np.asarray(d["values"], dtype=np.float64))


def calibrate(probabilities: np.ndarray, statistics: dict[str, Callable[[np.ndarray], np.ndarray]],
              rng: np.random.Generator, sizes: tuple[int, ...] = SIZES,
              levels: tuple[float, ...] = LEVELS, trials: int = TRIALS) -> dict[str, NullTable]:
    """Tabulate null quantiles of several statistics over the same multinomial draws.

    ``probabilities`` are the reference's bin shares; each statistic maps a
    ``(trials, bins)`` count array to one score per trial.
    """
    return calibrate_members(probabilities, statistics, 1, rng, sizes, levels, trials)[0]


def calibrate_members(probabilities: np.ndarray,
                      statistics: dict[str, Callable[[np.ndarray], np.ndarray]], members: int,
                      rng: np.random.Generator, sizes: tuple[int, ...] = SIZES,
                      levels: tuple[float, ...] = LEVELS, trials: int = TRIALS
                      ) -> list[dict[str, NullTable]]:
    """Null tables of several features whose reference bin shares are the same, from one
    set of draws: a wide table's continuous features all have equal-frequency bins, so
    their draws are alike, and drawing them once per table instead of once per feature is
    what makes calibration cost about the same for 50 features as for one.

    A statistic maps a ``(trials, bins)`` count array to ``(trials,)`` scores when they
    depend on the shares only (one table for every member), or ``(trials, members)``.
    Each member's tables are what ``calibrate`` would give it with the same draws.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    p = p / p.sum()
    rows: dict[str, list[np.ndarray]] = {name: [] for name in statistics}
    for n in sizes:
        counts = rng.multinomial(n, p, size=trials)
        for name, stat in statistics.items():
            scores = stat(counts)
            quantiles = np.quantile(scores, levels, axis=0)  # (levels,) or (levels, members)
            rows[name].append(np.broadcast_to(quantiles.reshape(len(levels), -1),
                                               (len(levels), members)))
    sizes_ = np.asarray(sizes, dtype=np.float64)
    levels_ = np.asarray(levels, dtype=np.float64)
    return [{name: NullTable(sizes_, levels_, np.vstack([q[:, i] for q in per_size]))
             for name, per_size in rows.items()} for i in range(members)]


def effective_size(n_current: float, n_reference: float) -> float:
    """Two-sample effective size n·N/(n+N): a small reference adds its own sampling noise,
    which the draws (that treat the reference as the population) do not see."""
    if n_current <= 0:
        return 0.0
    return n_current * n_reference / (n_current + n_reference)

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

        Interpolates in -log(1 - level) between levels (clamped to the tabulated range) and
        log-log in n; beyond the largest size it extrapolates along the last segment's slope,
        below the smallest it holds the smallest size's value (no verdict is given there).
        """
        level_x = -np.log(1.0 - np.asarray(self.levels))
        target = float(np.clip(-np.log(alpha), level_x[0], level_x[-1]))
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
    p = np.asarray(probabilities, dtype=np.float64)
    p = p / p.sum()
    values: dict[str, list[np.ndarray]] = {name: [] for name in statistics}
    for n in sizes:
        counts = rng.multinomial(n, p, size=trials)
        for name, stat in statistics.items():
            values[name].append(np.quantile(stat(counts), levels))
    return {name: NullTable(np.asarray(sizes, dtype=np.float64), np.asarray(levels),
                            np.vstack(rows)) for name, rows in values.items()}


def effective_size(n_current: float, n_reference: float) -> float:
    """Two-sample effective size n·N/(n+N): a small reference adds its own sampling noise,
    which the draws (that treat the reference as the population) do not see."""
    if n_current <= 0:
        return 0.0
    return n_current * n_reference / (n_current + n_reference)

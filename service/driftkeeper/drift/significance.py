"""Significance arithmetic in the standard library only: normal and chi-square tails and
the Benjamini-Hochberg correction, for code that runs in gunicorn workers (where scipy
would cost ~50 MB per worker). The tests check every function against scipy."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def normal_two_sided(z: float) -> float:
    """Two-sided standard normal tail probability P(|Z| >= |z|)."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def chi2_sf(x: float, df: int) -> float:
    """Exact chi-square survival function for an integer ``df`` >= 1 (closed forms: a
    Poisson sum for even df, erfc plus a series for odd df)."""
    if df < 1:
        raise ValueError(f"df must be at least 1, got {df}")
    if x <= 0.0:
        return 1.0
    half = x / 2.0
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for j in range(1, df // 2):
            term *= half / j
            total += term
        return min(1.0, math.exp(-half) * total)
    root = math.sqrt(x)
    term, total = root, 0.0
    for j in range(1, (df + 1) // 2):
        total += term
        term *= x / (2 * j + 1)
    density = math.exp(-half) / math.sqrt(2.0 * math.pi)
    return min(1.0, math.erfc(root / math.sqrt(2.0)) + 2.0 * density * total)


def chi2_z(x: float, df: int) -> float:
    """Wilson-Hilferty normal equivalent of a chi-square statistic: ranks statistics of
    different df on one scale, and never underflows the way a p-value does."""
    c = 2.0 / (9.0 * df)
    return ((max(x, 0.0) / df) ** (1.0 / 3.0) - (1.0 - c)) / math.sqrt(c)


def bh_adjust(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (step-up, monotone, capped at 1)."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution (the limit of sqrt(n) * D_n), by its
    alternating series 2 * sum (-1)^(k-1) exp(-2 k^2 x^2); below x = 0.2 it is 1 to
    within 1e-50 (scipy's ``kstwobign.sf``)."""
    if x <= 0.2:
        return 1.0
    total, k = 0.0, 1
    while True:
        term = math.exp(-2.0 * k * k * x * x)
        total += term if k % 2 else -term
        if term < 1e-17:
            break
        k += 1
    return min(max(2.0 * total, 0.0), 1.0)


def ks_two_sample_sf(d: float, n_ref: int, n_cur: int) -> float:
    """Asymptotic p-value of a two-sample KS statistic: the Kolmogorov limit at the
    effective size n*m/(n+m). The pod's binned KS uses it (scipy would cost each worker
    ~65 MB for one number); never below scipy's finite-size ``kstwo`` and within 0.02 of it
    once the effective size reaches 200."""
    en = n_ref * n_cur / max(n_ref + n_cur, 1)
    return kolmogorov_sf(math.sqrt(en) * d)

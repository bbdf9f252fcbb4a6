"""Reference and current distributions side by side, for people: the report's raw material.

Numerical features keep the profile's quantile bins (edges plus under/overflow), categorical
features their levels plus 'unseen'; residuals their held-out quantile bins. Counts only, so
the same document comes from a service's merged windows or from a CSV.
"""

from __future__ import annotations

from typing import Any

from .profile import NumericalProfile, ReferenceProfile
from .windows import DataWindow, ResidualWindow


def histograms(profile: ReferenceProfile, data: DataWindow,
               residuals: ResidualWindow | None = None) -> dict[str, Any]:
    """``{"features": {name: {...}}, "residuals": {...} | None}`` with reference/current
    counts on the same bins."""
    features: dict[str, Any] = {}
    for name, prof in profile.features.items():
        window = data.features[name]
        if isinstance(prof, NumericalProfile):
            features[name] = {"kind": "numerical", "edges": prof.bins.edges.tolist(),
                              "reference": prof.bins.counts.astype(int).tolist(),
                              "current": window.counts.astype(int).tolist(),
                              "invalid": window.invalid}
        else:
            features[name] = {"kind": "categorical", "levels": list(prof.levels),
                              "reference": prof.counts.astype(int).tolist(),
                              "current": window.counts.astype(int).tolist(),
                              "unseen": getattr(window, "unseen", 0),
                              "invalid": window.invalid}
    out: dict[str, Any] = {"features": features, "residuals": None}
    if residuals is not None and profile.residuals is not None:
        ref = profile.residuals
        out["residuals"] = {"edges": ref.bins.edges.tolist(),
                            "reference": ref.bins.counts.astype(int).tolist(),
                            "current": residuals.counts.counts.astype(int).tolist(),
                            "rmse_reference": ref.rmse, "mean_reference": ref.mean,
                            "rmse": (residuals.total_sq / residuals.n) ** 0.5 if residuals.n
                            else None,
                            "mean": residuals.total / residuals.n if residuals.n else None}
    return out

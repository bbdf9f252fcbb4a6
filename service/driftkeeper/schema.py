"""The feature schema: names, kinds, category levels and domain bounds of the model's inputs.

One object describes the inputs for training, the drift engine and request validation, so the
three can never disagree. It is stored with every model version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:  # pandas is imported where frames are handled, never by the service
    import pandas as pd

Kind = Literal["numerical", "categorical"]

UNSEEN_CODE = -1.0
"""Encoded value of a category the schema does not know."""


@dataclass(frozen=True)
class Feature:
    """One model input. Numerical bounds are physical limits, not the reference range:
    values outside the reference range are drift and must reach the monitor, values outside
    the domain (a negative or 10⁶-carat diamond) are errors."""

    name: str
    kind: Kind
    levels: tuple[str, ...] = ()
    exclusive_minimum: float | None = None
    maximum: float | None = None
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "categorical":
            out["levels"] = list(self.levels)
        else:
            out["exclusive_minimum"] = self.exclusive_minimum
            out["maximum"] = self.maximum
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Feature:
        return cls(
            name=d["name"],
            kind=d["kind"],
            levels=tuple(d.get("levels", ())),
            exclusive_minimum=d.get("exclusive_minimum"),
            maximum=d.get("maximum"),
            description=d.get("description", ""),
        )


@dataclass(frozen=True)
class Target:
    """The label the model predicts and feedback carries."""

    name: str
    exclusive_minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class FeatureSchema:
    """Ordered inputs plus the target; the order is the column order of encoded matrices."""

    features: tuple[Feature, ...]
    target: Target
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {f.name: i for i, f in enumerate(self.features)})

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def index(self, name: str) -> int:
        return self._index[name]

    def feature(self, name: str) -> Feature:
        return self.features[self._index[name]]

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode a frame to a float matrix: numerics as floats, categories as level codes.

        Unknown categories become ``UNSEEN_CODE`` and missing values NaN, so the drift
        engine can count them instead of failing.
        """
        import pandas as pd

        out = np.empty((len(frame), len(self.features)), dtype=np.float64)
        for j, feat in enumerate(self.features):
            col = frame[feat.name]
            if feat.kind == "numerical":
                out[:, j] = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
            else:
                codes = {level: float(i) for i, level in enumerate(feat.levels)}
                values = col.astype("object").map(codes).to_numpy(dtype=np.float64, copy=True)
                unseen = np.isnan(values) & col.notna().to_numpy()
                values[unseen] = UNSEEN_CODE
                out[:, j] = values
        return out

    def complete_rows(self, encoded: np.ndarray) -> np.ndarray:
        """Rows a model can score: every value finite and every category known."""
        valid = np.isfinite(encoded).all(axis=1)
        for j, feat in enumerate(self.features):
            if feat.kind == "categorical":
                valid &= encoded[:, j] >= 0
        return valid

    def decode(self, matrix: np.ndarray) -> pd.DataFrame:
        """Inverse of :meth:`encode` for valid rows, with the canonical dtypes."""
        import pandas as pd

        data: dict[str, Any] = {}
        for j, feat in enumerate(self.features):
            col = matrix[:, j]
            if feat.kind == "numerical":
                data[feat.name] = col.astype(np.float64)
            else:
                data[feat.name] = pd.Categorical.from_codes(
                    col.astype(np.int64), categories=list(feat.levels), ordered=True
                )
        return pd.DataFrame(data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": [f.to_dict() for f in self.features],
            "target": {
                "name": self.target.name,
                "exclusive_minimum": self.target.exclusive_minimum,
                "maximum": self.target.maximum,
            },
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSchema:
        t = d["target"]
        return cls(
            features=tuple(Feature.from_dict(f) for f in d["features"]),
            target=Target(t["name"], t.get("exclusive_minimum"), t.get("maximum")),
        )


# ggplot2's level order (worst to best), which is also the order of the ordinal codes.
CUT_LEVELS = ("Fair", "Good", "Very Good", "Premium", "Ideal")
COLOR_LEVELS = ("D", "E", "F", "G", "H", "I", "J")
CLARITY_LEVELS = ("I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF")

DIAMONDS_SCHEMA = FeatureSchema(
    features=(
        Feature("carat", "numerical", exclusive_minimum=0.0, maximum=100.0,
                description="weight in carats"),
        Feature("cut", "categorical", levels=CUT_LEVELS, description="quality of the cut"),
        Feature("color", "categorical", levels=COLOR_LEVELS, description="D (best) to J (worst)"),
        Feature("clarity", "categorical", levels=CLARITY_LEVELS,
                description="I1 (worst) to IF (best)"),
        Feature("depth", "numerical", exclusive_minimum=0.0, maximum=100.0,
                description="total depth percentage"),
        Feature("table", "numerical", exclusive_minimum=0.0, maximum=100.0,
                description="width of the top relative to the widest point, percent"),
    ),
    target=Target("price", exclusive_minimum=0.0, maximum=10_000_000.0),
)

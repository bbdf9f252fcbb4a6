"""The feature schema: names, kinds, category levels and domain bounds of the model's inputs.

One object describes the inputs for training, the drift engine and request validation, so the
three can never disagree. It is stored with every model version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:  # pandas is imported where frames are handled, never by the service
    import pandas as pd

Kind = Literal["numerical", "categorical"]
Task = Literal["regression", "classification"]

UNSEEN_CODE = -1.0
"""Encoded value of a category the schema does not know."""


def level_text(value: Any) -> str:
    """A category value as the text levels are written in: a category is compared as text,
    so 1, 1.0 (an integer column with a gap reads back as floats) and "1" are one level, and
    True is "True"."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    return str(value)


def as_text(col: pd.Series) -> pd.Series:
    """A column's values as level text (:func:`level_text`), missing values kept missing."""
    import pandas as pd

    values = col.astype("object")
    if isinstance(col.dtype, pd.StringDtype) or (  # already text: the common, fast case
            isinstance(col.dtype, pd.CategoricalDtype)
            and all(type(c) is str for c in col.dtype.categories)):
        return values
    texts = {v: level_text(v) for v in values.dropna().unique()}
    if all(type(v) is str and t == v for v, t in texts.items()):
        return values  # already text: nothing to convert
    return values.map(texts)


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
    """The label the model predicts and feedback carries. A regression target has numeric
    bounds (as a feature has); a classification target has its classes instead, as text
    (compared as category levels are, :func:`level_text`); a binary model predicts the
    probability of ``classes[1]``, a multiclass one every class's probability. A schema
    stored before targets had a task is a regression."""

    name: str
    exclusive_minimum: float | None = None
    maximum: float | None = None
    task: Task = "regression"
    classes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "task": self.task,
                               "exclusive_minimum": self.exclusive_minimum,
                               "maximum": self.maximum}
        if self.task == "classification":
            out["classes"] = list(self.classes)
        return out

    @property
    def is_classification(self) -> bool:
        return self.task == "classification"

    @property
    def n_classes(self) -> int:
        """0 for a regression; 2 for a binary classifier (one probability per row); 3 or
        more for one that predicts each class's probability."""
        return len(self.classes) if self.is_classification else 0

    def encode_labels(self, values: Iterable[Any]) -> np.ndarray:
        """Class labels as class indices (floats), compared as text: 1, 1.0 and "1" name
        one class. A missing or unknown label is NaN, for the caller to refuse or drop."""
        codes = {c: float(i) for i, c in enumerate(self.classes)}
        return np.array([np.nan if v is None else codes.get(level_text(v), np.nan)
                         for v in values], dtype=np.float64)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Target:
        return cls(d["name"], d.get("exclusive_minimum"), d.get("maximum"),
                   task=d.get("task", "regression"), classes=tuple(d.get("classes", ())))


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
                values = as_text(col).map(codes).to_numpy(dtype=np.float64, copy=True)
                unseen = np.isnan(values) & col.notna().to_numpy()
                values[unseen] = UNSEEN_CODE
                out[:, j] = values
        return out

    def encode_target(self, values: Any) -> np.ndarray:
        """The target as the numbers models learn: a regression target's values, a
        classification target's class indices (:meth:`Target.encode_labels`); NaN where
        missing, non-numeric or an unknown class."""
        if self.target.is_classification:
            return self.target.encode_labels(values)
        import pandas as pd

        return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(np.float64)

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
            "target": self.target.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSchema:
        return cls(
            features=tuple(Feature.from_dict(f) for f in d["features"]),
            target=Target.from_dict(d["target"]),
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

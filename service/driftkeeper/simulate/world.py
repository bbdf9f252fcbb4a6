"""The simulated world: the rows that exist and the columns each scenario moves.

A scenario (``scenarios.py``) says *how* the world changes: rows with a larger value of one
numerical feature arrive more often (the *tilt*), one category level becomes rarer (the
*mix*), the target shifts in one segment (the *concept*). A :class:`World` says *which*
columns, for whatever table the served model was trained on:

- :meth:`World.for_diamonds`: the lab's hand-picked world (carat, cut = Ideal, colours
  D/E/F 25 % dearer, the lab's noise on carat, depth, table and price);
- :meth:`World.infer`: read from the schema and the table (the rules are in its docstring);
- :meth:`World.with_overrides`: any of the three chosen by name (``--tilt``, ``--mix``,
  ``--concept``), checked against the schema.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ..errors import SimulationError
from ..schema import Feature, FeatureSchema
from .catalog import Role

TILT = 1.2
"""Sampling weight exp(TILT · strength · z(tilt feature)): at full strength rows with a large
value arrive far more often (diamonds: mean carat 0.80 -> ~1.2, PSI ~1)."""

MIX_WEIGHT = 0.4
"""Relative sampling weight of the mix level in `category-mix` (diamonds: Ideal cuts fall
from 40 % to ~21 % of traffic)."""

CONCEPT_FACTOR = 1.25
"""`concept` on a strictly positive target: 25 % more in the segment. Relative, as prices,
counts and durations change: it keeps the target positive and means the same at any scale."""

CONCEPT_STDS = 0.25
"""`concept` on a target that is not strictly positive (a score, a log, a difference): plus a
quarter of the target's standard deviation in the segment. A factor would do nothing near
zero and flip direction below it."""

SEGMENT_SHARE = (0.25, 0.5)
"""Share of rows an inferred categorical concept segment covers: enough rows for the labels
to show the shift within one window, few enough to be a segment and not the whole world."""

MIN_BAND_SHARE = 0.1
"""A numerical band (the upper quartile) is a usable segment only with at least this share
of rows: a column whose quartile is its maximum (a flag, a few values) has no band."""

CONCEPT_FLIP = 0.3
"""`concept` on a classification target: in the segment, each label becomes the next class
(binary: the other one; K classes: class k + 1 modulo K) with this probability, which a
classifier's log loss and calibration see within one window."""

PRIOR_WEIGHT = 0.4
"""Relative sampling weight of the prior class in `class-prior`: rows of a classifier's most
frequent class arrive at 0.4 times their rate (its share of 40 % falls to ~21 %)."""

LAB_NOISE = 0.01
"""An inferred world's lab noise: every numerical feature times U(0.99, 1.01) per request,
the target plus N(0, 1 % of its magnitude) per row."""

DIAMONDS_NOISE = (("carat", 0.98, 1.02), ("depth", 0.99, 1.01), ("table", 0.99, 1.01))
DIAMONDS_CONCEPT_COLORS = ("D", "E", "F")


@dataclass(frozen=True)
class Overrides:
    """World parameters chosen by name, as the command line spells them (None: inferred)."""

    tilt: str | None = None  # FEATURE (numerical)
    mix: str | None = None  # FEATURE=LEVEL (categorical)
    concept: str | None = None  # FEATURE=LEVEL[,LEVEL...] or FEATURE>VALUE


@dataclass(frozen=True)
class Segment:
    """Where the concept shifts: levels of a categorical, or a numerical band above a bound."""

    feature: str
    levels: tuple[str, ...] = ()
    above: float | None = None

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        if self.above is None:
            return frame[self.feature].isin(self.levels).to_numpy()
        return frame[self.feature].to_numpy(np.float64) > self.above

    def __str__(self) -> str:
        if self.above is None:
            return f"{self.feature} in {', '.join(self.levels)}"
        return f"{self.feature} > {self.above:.4g}"


@dataclass(frozen=True)
class World:
    """The rows a simulation samples (features and target) and the columns scenarios move.

    ``None`` for a role the table cannot play (no numerical feature to tilt, no categorical
    to re-mix, no segment): scenarios needing it refuse to run, naming themselves.
    """

    table: pd.DataFrame = field(repr=False, compare=False)
    target: str
    tilt_feature: str | None
    mix_feature: str | None
    mix_level: str | None
    concept: Segment | None
    concept_factor: float = 1.0
    concept_offset: float = 0.0
    noise: tuple[tuple[str, float, float], ...] = ()  # (feature, low, high) factor ranges
    target_noise: float = LAB_NOISE
    classes: tuple[str, ...] = ()  # a classifier's: the table's target holds class indices
    concept_flip: float = 0.0  # a classifier's concept: labels flipped in the segment
    prior_class: int | None = None  # a classifier's most frequent class (`class-prior`)

    # -- construction ----------------------------------------------------------------

    @classmethod
    def for_diamonds(cls, table: pd.DataFrame) -> World:
        """The lab's world, exactly as the simulator has always played it."""
        return cls(table, "price", "carat", "cut", "Ideal",
                   Segment("color", DIAMONDS_CONCEPT_COLORS), CONCEPT_FACTOR, 0.0,
                   DIAMONDS_NOISE, LAB_NOISE)

    @classmethod
    def infer(cls, schema: FeatureSchema, table: pd.DataFrame) -> World:
        """A world for any table, read from its schema and its rows.

        - tilt: the numerical feature with the largest |Spearman correlation| with the
          target, so a covariate shift moves what the model's predictions depend on;
        - mix: the first categorical feature with two or more levels present, and its most
          frequent level (the rarer it becomes, the more the mix changes);
        - concept segment: levels of a categorical (another than the mix feature when one
          qualifies), most frequent first, skipping any that would take the segment past
          half the rows, until it covers a quarter; else the upper quartile band of a
          numerical feature (another than the tilt feature when one qualifies);
        - concept shift: x1.25 on a strictly positive target, else +0.25 standard deviations.
        """
        target = schema.target.name
        if schema.target.is_classification:
            return cls._infer_classifier(schema, table)
        y = table[target].to_numpy(np.float64)
        positive = bool((y > 0).all())
        tilt = _most_correlated(schema, table, y)
        mix = _first_mix(schema, table)
        return cls(table, target, tilt, *(mix or (None, None)),
                   _segment(schema, table, tilt, mix[0] if mix else None),
                   CONCEPT_FACTOR if positive else 1.0,
                   0.0 if positive else CONCEPT_STDS * float(np.std(y)),
                   tuple((f.name, 1 - LAB_NOISE, 1 + LAB_NOISE) for f in schema.features
                         if f.kind == "numerical"), LAB_NOISE)

    @classmethod
    def _infer_classifier(cls, schema: FeatureSchema, table: pd.DataFrame) -> World:
        """A classifier's world: the table's labels become class indices, the tilt is the
        feature that separates the classes best (binary: ranked by correlation with the
        label), the concept moves labels to the next class in the segment, the prior
        class is the most frequent one, and the lab's noise leaves labels alone."""
        target, classes = schema.target.name, schema.target.classes
        y = schema.encode_target(table[target])
        if np.isnan(y).any():
            raise SimulationError(f"{target} has labels outside its classes {list(classes)}")
        table = table.assign(**{target: y})
        tilt = (_most_correlated(schema, table, y) if len(classes) == 2
                else _most_separating(schema, table, y))
        mix = _first_mix(schema, table)
        return cls(table, target, tilt, *(mix or (None, None)),
                   _segment(schema, table, tilt, mix[0] if mix else None), 1.0, 0.0,
                   tuple((f.name, 1 - LAB_NOISE, 1 + LAB_NOISE) for f in schema.features
                         if f.kind == "numerical"), 0.0, classes, CONCEPT_FLIP,
                   int(np.bincount(y.astype(np.intp), minlength=len(classes)).argmax()))

    @classmethod
    def for_schema(cls, schema: FeatureSchema, table: pd.DataFrame,
                   overrides: Overrides | None = None) -> World:
        """The diamonds world when the schema has its columns, else an inferred one; then
        the overrides."""
        world = cls.for_diamonds(table) if _is_diamonds(schema) else cls.infer(schema, table)
        return world.with_overrides(schema, overrides or Overrides())

    def with_overrides(self, schema: FeatureSchema, overrides: Overrides) -> World:
        """This world with the roles the user named; a name the schema does not have, or of
        the wrong kind, is a SimulationError saying what would do."""
        world = self
        if overrides.tilt is not None:
            world = replace(world, tilt_feature=_feature(schema, overrides.tilt, "numerical",
                                                         "--tilt").name)
        if overrides.mix is not None:
            feat, level = _parse_mix(schema, overrides.mix)
            world = replace(world, mix_feature=feat, mix_level=level)
        if overrides.concept is not None:
            segment = _parse_concept(schema, overrides.concept)
            if not segment.mask(self.table).any():
                raise SimulationError(f"--concept {overrides.concept}: no row of the table is "
                                      f"in {segment}")
            world = replace(world, concept=segment)
        return world

    # -- what scenarios use --------------------------------------------------------------

    def require(self, scenario: str, roles: Iterable[Role]) -> None:
        """Refuse a scenario whose columns this table does not have."""
        missing = {"tilt": (self.tilt_feature, "a numerical feature to shift"),
                   "mix": (self.mix_feature, "a categorical feature to re-mix"),
                   "concept": (self.concept, "a segment to shift the target in"),
                   "prior": (self.prior_class, "a classifier's classes to re-weight")}
        for role in roles:
            value, what = missing[role]
            if value is None:
                raise SimulationError(f"scenario {scenario} needs {what}; this table has none "
                                      f"(features: {', '.join(self.features)})")

    @property
    def features(self) -> list[str]:
        return [c for c in self.table.columns if c != self.target]

    def drifted_features(self, roles: Iterable[Role]) -> tuple[str, ...]:
        """The features a scenario moving these roles shifts (a concept moves none)."""
        names = {"tilt": self.tilt_feature, "mix": self.mix_feature}
        return tuple(n for r in roles if (n := names.get(r)) is not None)

    def tilt_weights(self, strength: float) -> np.ndarray:
        return np.exp(TILT * strength * self._tilt_z)

    @functools.cached_property
    def _tilt_z(self) -> np.ndarray:
        values = self.table[self.tilt_feature].to_numpy()
        return (values - values.mean()) / values.std()

    def mix_weights(self) -> np.ndarray:
        return np.where(self.table[self.mix_feature].to_numpy() == self.mix_level,
                        MIX_WEIGHT, 1.0)

    def prior_weights(self) -> np.ndarray:
        return np.where(self.table[self.target].to_numpy() == self.prior_class,
                        PRIOR_WEIGHT, 1.0)

    @property
    def prior_label(self) -> str:
        return "-" if self.prior_class is None else self.classes[self.prior_class]

    def split(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """Features and labels of sampled rows."""
        return frame.drop(columns=self.target), frame[self.target].to_numpy(np.float64)

    def shifted_labels(self, frame: pd.DataFrame,
                       rng: np.random.Generator | None = None) -> np.ndarray:
        """The labels after the concept shift: changed in the segment only (a classifier's
        flipped there with probability ``concept_flip``, drawn from ``rng``)."""
        assert self.concept is not None
        y = frame[self.target].to_numpy(np.float64)
        inside = self.concept.mask(frame)
        if self.classes:
            assert rng is not None, "flipping labels needs the scenario's generator"
            flip = inside & (rng.random(len(y)) < self.concept_flip)
            return np.where(flip, (y + 1.0) % len(self.classes), y)
        return np.where(inside, y * self.concept_factor + self.concept_offset, y)

    def label(self, y: float) -> float | str:
        """A label as the service takes it: the number, or a classifier's class."""
        return self.classes[int(y)] if self.classes else float(y)

    def add_lab_noise(self, rng: np.random.Generator, frame: pd.DataFrame) -> None:
        """One noise factor per feature for the whole request, per-row noise on the target."""
        for name, low, high in self.noise:
            frame[name] *= rng.uniform(low, high)
        if not self.classes:
            frame[self.target] += rng.normal(0.0, frame[self.target].abs() * self.target_noise)

    def describe_shift(self) -> str:
        """The concept shift in words, for progress lines: "price x1.25 where color in D..."."""
        if self.classes:
            shift = (f"{self.concept_flip:.0%} flipped" if len(self.classes) == 2 else
                     f"{self.concept_flip:.0%} relabelled as the next class")
        else:
            shift = (f"x{self.concept_factor:g}" if self.concept_offset == 0.0
                     else f"+{self.concept_offset:.4g}")
        return f"{self.target} {shift} where {self.concept}"

    def words(self) -> Mapping[str, str]:
        """The world's columns as the scenario summaries name them."""
        return {"tilt": self.tilt_feature or "-",
                "mix": f"{self.mix_feature} = {self.mix_level}" if self.mix_feature else "-",
                "concept": self.describe_shift() if self.concept else "-",
                "prior": f"{self.target} = {self.prior_label}"}


def _is_diamonds(schema: FeatureSchema) -> bool:
    kinds = {f.name: f for f in schema.features}
    numerical = all(n in kinds and kinds[n].kind == "numerical" for n, _, _ in DIAMONDS_NOISE)
    return (schema.target.name == "price" and numerical
            and "Ideal" in _levels(kinds.get("cut"))
            and set(DIAMONDS_CONCEPT_COLORS) <= set(_levels(kinds.get("color"))))


def _levels(feat: Feature | None) -> tuple[str, ...]:
    return feat.levels if feat is not None and feat.kind == "categorical" else ()


def _most_separating(schema: FeatureSchema, table: pd.DataFrame,
                     y: np.ndarray) -> str | None:
    """The numerical feature whose ranks the classes explain best (the correlation ratio:
    between-class over total variance; the first on ties). Class indices have no order,
    so a correlation with them would mean nothing for K >= 3."""
    best, best_eta = None, -1.0
    for feat in schema.features:
        if feat.kind != "numerical":
            continue
        ranks = table[feat.name].rank().to_numpy()
        total = float(ranks.var())
        means = pd.Series(ranks).groupby(y).transform("mean").to_numpy()
        eta = 0.0 if total == 0 else float(means.var()) / total
        if eta > best_eta:
            best, best_eta = feat.name, eta
    return best


def _most_correlated(schema: FeatureSchema, table: pd.DataFrame, y: np.ndarray) -> str | None:
    """The numerical feature with the largest |Spearman correlation| with the target (the
    first on ties; a constant column correlates with nothing)."""
    ranks = pd.Series(y).rank().to_numpy()
    best, best_r = None, -1.0
    for feat in schema.features:
        if feat.kind != "numerical":
            continue
        x = table[feat.name].rank().to_numpy()
        r = 0.0 if x.std() == 0 or ranks.std() == 0 else abs(float(np.corrcoef(x, ranks)[0, 1]))
        if r > best_r:
            best, best_r = feat.name, r
    return best


def _level_counts(table: pd.DataFrame, feat: Feature) -> pd.Series:
    """Rows per level, in the schema's level order."""
    return table[feat.name].value_counts().reindex(list(feat.levels), fill_value=0)


def _first_mix(schema: FeatureSchema, table: pd.DataFrame) -> tuple[str, str] | None:
    for feat in schema.features:
        if feat.kind == "categorical":
            counts = _level_counts(table, feat)
            if (counts > 0).sum() >= 2:
                return feat.name, str(counts.idxmax())
    return None


def _segment(schema: FeatureSchema, table: pd.DataFrame, tilt: str | None,
             mix: str | None) -> Segment | None:
    categoricals = [f for f in schema.features if f.kind == "categorical"]
    for feat in sorted(categoricals, key=lambda f: f.name == mix):  # stable: mix last
        levels = _covering_levels(_level_counts(table, feat) / len(table))
        if levels:
            return Segment(feat.name, levels)
    numericals = [f for f in schema.features if f.kind == "numerical"]
    for feat in sorted(numericals, key=lambda f: f.name == tilt):
        values = table[feat.name].to_numpy(np.float64)
        above = float(np.quantile(values, 0.75))
        if MIN_BAND_SHARE <= (values > above).mean() <= SEGMENT_SHARE[1]:
            return Segment(feat.name, above=above)
    return None


def _covering_levels(shares: pd.Series) -> tuple[str, ...]:
    """The most frequent levels, skipping any that would pass half the rows, until they
    cover a quarter; () when no such set exists."""
    low, high = SEGMENT_SHARE
    chosen: list[str] = []
    total = 0.0
    for level, share in shares.sort_values(ascending=False, kind="stable").items():
        if share > 0 and total + share <= high:
            chosen.append(str(level))
            total += share
            if total >= low:
                return tuple(chosen)
    return ()


def _feature(schema: FeatureSchema, name: str, kind: str, flag: str) -> Feature:
    if name in schema.names and schema.feature(name).kind == kind:
        return schema.feature(name)
    what = (f"a {schema.feature(name).kind} feature" if name in schema.names
            else "not a feature of the served model")
    wanted = [f.name for f in schema.features if f.kind == kind]
    raise SimulationError(f"{flag} {name}: {what}; it needs one of the {kind} features: "
                          f"{', '.join(wanted) or 'none'}")


def _parse_mix(schema: FeatureSchema, text: str) -> tuple[str, str]:
    name, sep, level = text.partition("=")
    if not sep or not name or not level:
        raise SimulationError(f"--mix {text}: expected FEATURE=LEVEL, e.g. cut=Ideal")
    feat = _feature(schema, name.strip(), "categorical", "--mix")
    return feat.name, _known_level(feat, level.strip(), "--mix")


_BAND = re.compile(r"^\s*(?P<name>[^<>=]+?)\s*>\s*(?P<value>\S+)\s*$")


def _parse_concept(schema: FeatureSchema, text: str) -> Segment:
    band = _BAND.match(text)
    if band is not None:
        feat = _feature(schema, band["name"], "numerical", "--concept")
        try:
            above = float(band["value"])
        except ValueError:
            raise SimulationError(f"--concept {text}: {band['value']!r} is not a number") from None
        if not np.isfinite(above):
            raise SimulationError(f"--concept {text}: the bound must be finite")
        return Segment(feat.name, above=above)
    name, sep, levels = text.partition("=")
    if not sep or not name or not levels.strip(","):
        raise SimulationError(f"--concept {text}: expected FEATURE=LEVEL[,LEVEL...] or "
                              f"FEATURE>VALUE, e.g. color=D,E,F or carat>1.5")
    feat = _feature(schema, name.strip(), "categorical", "--concept")
    chosen = [_known_level(feat, level.strip(), "--concept") for level in levels.split(",")
              if level.strip()]
    return Segment(feat.name, tuple(dict.fromkeys(chosen)))


def _known_level(feat: Feature, level: str, flag: str) -> str:
    if level not in feat.levels:
        raise SimulationError(f"{flag}: {feat.name} has no level {level!r}; its levels: "
                              f"{', '.join(feat.levels)}")
    return level

"""A feature schema inferred from a table, so a model can be trained on any CSV.

``infer_schema(frame, target)`` reads what it can from the data; what it cannot know (the
order of ordinal levels, physical limits, a numeric code that is really a category) the
user declares with ``--categorical``, ``--drop`` or a small schema file. The rules:

- **Features** are the table's columns in order, minus the target and dropped columns.
- **Kind**: numeric dtypes are numerical unless listed as categorical; text, object,
  category and boolean dtypes are categorical. Dates and other dtypes must be dropped.
- **Levels** of a categorical, compared as text (``schema.level_text``): a pandas category
  dtype keeps its own order (it was declared); numbers are sorted by value; anything else
  sorted as strings. At most ``MAX_LEVELS`` (1,000): past that a column is an identifier or
  free text, to be dropped, or a quantity, to be declared numerical.
- **Bounds** of a numerical: ``(min - k·range, max + k·range]`` with ``k = BOUNDS_MARGIN``
  (10), rounded outwards to three significant digits of the margin; when every value is
  positive the lower bound is never below 0 (a positive quantity stays positive). Bounds
  are where a request stops being a measurement and becomes an error (a value 10 ranges
  past anything seen, a negative weight); anything inside them, however unusual, reaches
  the drift monitor. The training data must lie inside bounds declared in a schema file.
- **Task** (``--task``, else inferred): regression for a numeric (not boolean) target
  with more than ``MAX_CLASSES`` (20) distinct values, otherwise classification. A
  regression target gets bounds by the same rule (they check feedback labels); a
  classification target its classes, sorted as levels are.

Every refusal is a :class:`SchemaError` naming the column and the way out. pandas is
imported here, never by ``schema.py`` (the model pod does not load it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd

from .errors import SchemaError
from .model.feedback import CHECK_COLUMN, META_COLUMNS
from .schema import Feature, FeatureSchema, Kind, Target, Task, as_text, level_text

BOUNDS_MARGIN = 10.0
"""k in ``(min - k·range, max + k·range]``: generous, so drift (a mean doubling, a new
range) is measured rather than refused, while sentinels (99999, -1 in a positive column)
and unit mistakes by orders of magnitude are refused."""

MAX_LEVELS = 1_000
"""Most levels a categorical may have."""

MAX_CLASSES = 20
"""A numeric target with at most this many distinct values is a classification."""

RESERVED_NAMES = (*META_COLUMNS, CHECK_COLUMN, "instances")
"""Names a feature or target cannot have: the feedback store's own columns, and the key of a
batch request."""

TASKS: tuple[str, ...] = get_args(Task)
KINDS: tuple[str, ...] = get_args(Kind)


@dataclass(frozen=True)
class ColumnDeclaration:
    """What a schema file says about one column; ``None`` leaves it to inference."""

    kind: Kind | None = None
    levels: tuple[str, ...] | None = None
    exclusive_minimum: float | None = None
    maximum: float | None = None
    description: str = ""


@dataclass(frozen=True)
class SchemaFile:
    """A parsed schema file: target, task and dropped columns (flags win over them) and
    declarations per column."""

    target: str | None = None
    task: Task | None = None
    drop: tuple[str, ...] = ()
    columns: Mapping[str, ColumnDeclaration] = field(default_factory=dict)


_FILE_KEYS = {"target", "task", "drop", "columns"}
_COLUMN_KEYS = {"kind", "levels", "exclusive_minimum", "maximum", "description"}


def read_schema_file(path: str | Path) -> SchemaFile:
    """Parse a schema file (YAML)::

        target: price
        task: regression                # optional
        drop: [id, notes]               # optional
        columns:                        # optional; every key of a column is optional
          carat: {kind: numerical, exclusive_minimum: 0, maximum: 100}
          cut: {levels: [Fair, Good, Very Good, Premium, Ideal]}   # this order
          zip: {kind: categorical}
          price: {exclusive_minimum: 0}  # the target takes bounds only

    Unknown keys and wrong types are refused, naming the key or column.
    """
    import yaml

    where = str(path)
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SchemaError(f"cannot read schema file {where}: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SchemaError(f"schema file {where} is not valid YAML: {exc}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise SchemaError(f"schema file {where}: expected a mapping with {sorted(_FILE_KEYS)}, "
                          f"got {type(doc).__name__}")
    unknown = sorted(str(k) for k in doc if k not in _FILE_KEYS)
    if unknown:
        raise SchemaError(f"schema file {where}: unknown key {unknown[0]!r}; "
                          f"allowed: {sorted(_FILE_KEYS)}")
    target = doc.get("target")
    if target is not None and not isinstance(target, str):
        raise SchemaError(f"schema file {where}: target must be a column name")
    task = doc.get("task")
    if task is not None and task not in TASKS:
        raise SchemaError(f"schema file {where}: task must be one of {list(TASKS)}, "
                          f"got {task!r}")
    drop = doc.get("drop") or []
    if isinstance(drop, str):
        drop = [drop]
    if not isinstance(drop, list) or not all(isinstance(d, str) for d in drop):
        raise SchemaError(f"schema file {where}: drop must be a list of column names")
    columns = doc.get("columns") or {}
    if not isinstance(columns, dict):
        raise SchemaError(f"schema file {where}: columns must map column names to "
                          f"declarations")
    return SchemaFile(target=target, task=task, drop=tuple(drop),
                      columns={str(name): _declaration(where, str(name), decl)
                               for name, decl in columns.items()})


def _declaration(where: str, name: str, decl: Any) -> ColumnDeclaration:
    def fail(message: str) -> SchemaError:
        return SchemaError(f"schema file {where}: column {name}: {message}", column=name)

    if decl is None:
        return ColumnDeclaration()
    if not isinstance(decl, dict):
        raise fail(f"expected a mapping with some of {sorted(_COLUMN_KEYS)}")
    unknown = sorted(str(k) for k in decl if k not in _COLUMN_KEYS)
    if unknown:
        raise fail(f"unknown key {unknown[0]!r}; allowed: {sorted(_COLUMN_KEYS)}")
    kind = decl.get("kind")
    if kind is not None and kind not in KINDS:
        raise fail(f"kind must be one of {list(KINDS)}, got {kind!r}")
    levels = decl.get("levels")
    if levels is not None:
        if not isinstance(levels, list) or not levels or any(
                v is None or isinstance(v, (list, dict)) for v in levels):
            raise fail("levels must be a non-empty list of values")
        levels = tuple(level_text(v) for v in levels)
        repeated = sorted({v for v in levels if levels.count(v) > 1})
        if repeated:
            raise fail(f"level {repeated[0]!r} is listed twice")
        if kind == "numerical":
            raise fail("a numerical column has no levels")
    bounds = {}
    for key in ("exclusive_minimum", "maximum"):
        value = decl.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value)):
                raise fail(f"{key} must be a finite number, got {value!r}")
            if kind == "categorical" or levels is not None:
                raise fail(f"a categorical column has no {key}")
            bounds[key] = float(value)
    if len(bounds) == 2 and bounds["exclusive_minimum"] >= bounds["maximum"]:
        raise fail("exclusive_minimum must be below maximum")
    description = decl.get("description", "")
    if not isinstance(description, str):
        raise fail("description must be text")
    return ColumnDeclaration(kind=kind, levels=levels, description=description, **bounds)


def infer_schema(frame: pd.DataFrame, target: str, *, task: str | None = None,
                 categorical: Iterable[str] = (), drop: Iterable[str] = (),
                 columns: Mapping[str, ColumnDeclaration] | None = None,
                 max_levels: int = MAX_LEVELS, margin: float = BOUNDS_MARGIN
                 ) -> FeatureSchema:
    """The schema of ``frame`` for predicting ``target`` (rules in the module docstring).

    ``categorical`` names numeric columns to treat as categories, ``drop`` columns to
    leave out, ``columns`` declarations (from a schema file) that override inference.
    """
    categorical, drop = list(dict.fromkeys(categorical)), list(dict.fromkeys(drop))
    columns = dict(columns or {})
    names = list(frame.columns)
    odd = [c for c in names if not isinstance(c, str)]
    if odd:
        raise SchemaError(f"column names must be text; got {odd[0]!r}", column=str(odd[0]))
    listing = ", ".join(names)
    if target not in frame.columns:
        raise SchemaError(f"unknown target column {target!r}; the table has: {listing}",
                          column=target)
    for option, listed in (("--categorical", categorical), ("--drop", drop),
                           ("the schema file", columns)):
        for name in listed:
            if name not in frame.columns:
                raise SchemaError(f"{option} names column {name!r}, which the table does "
                                  f"not have; it has: {listing}", column=name)
    for name in categorical:
        if name in drop:
            raise SchemaError(f"column {name} is both categorical and dropped; keep one",
                              column=name)
        if name == target:
            raise SchemaError(f"the target {name} cannot be a categorical feature; a "
                              f"categorical target is --task classification", column=name)
        if _declared_kind(columns.get(name)) == "numerical":
            raise SchemaError(f"column {name} is declared numerical in the schema file and "
                              f"listed as categorical; keep one", column=name)
    for name in drop:
        if name == target:
            raise SchemaError(f"the target {name} cannot be dropped", column=name)
        if name in columns:
            raise SchemaError(f"column {name} is dropped and declared in the schema file; "
                              f"keep one", column=name)
    if task is not None and task not in TASKS:
        raise SchemaError(f"task must be one of {list(TASKS)}, got {task!r}", column=target)

    schema_target = _target(frame[target], target, task, columns.get(target), max_levels,
                            margin)
    features = []
    for name in names:
        if name == target or name in drop:
            continue
        declared = columns.get(name, ColumnDeclaration())
        kind = _declared_kind(declared) or ("categorical" if name in categorical else None)
        features.append(_feature(frame[name], name, kind, declared, max_levels, margin))
    if not features:
        dropped = f" (dropped: {', '.join(drop)})" if drop else ""
        raise SchemaError(f"no feature columns left: the table has only the target "
                          f"{target}{dropped}", column=target)
    return FeatureSchema(features=tuple(features), target=schema_target)


def _declared_kind(declared: ColumnDeclaration | None) -> Kind | None:
    """The kind a declaration states or implies: levels make a categorical, bounds a
    numerical."""
    if declared is None or declared.kind is not None:
        return None if declared is None else declared.kind
    if declared.levels is not None:
        return "categorical"
    if declared.exclusive_minimum is not None or declared.maximum is not None:
        return "numerical"
    return None


def _check_column(col: pd.Series, name: str, what: str = "column") -> pd.Series:
    """The present values of a usable column, or a SchemaError naming it."""
    if name in RESERVED_NAMES:
        raise SchemaError(f"{what} {name}: the name is reserved ({', '.join(RESERVED_NAMES)} "
                          f"are Driftkeeper's own fields); rename the column", column=name)
    present = col.dropna()
    if present.empty:
        raise SchemaError(f"{what} {name} has no values (every row is missing); "
                          f"{_way_out(what, name)}", column=name)
    return present


def _way_out(what: str, name: str) -> str:
    """What to do about a column that cannot be used."""
    return ("choose another target" if what == "target"
            else f"drop it (--drop {name})")


def _feature(col: pd.Series, name: str, kind: Kind | None, declared: ColumnDeclaration,
             max_levels: int, margin: float) -> Feature:
    present = _check_column(col, name)
    dtype = col.dtype
    if kind is None:
        if pd.api.types.is_bool_dtype(dtype):
            kind = "categorical"
        elif pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
            kind = "numerical"
        elif (pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)
              or isinstance(dtype, pd.CategoricalDtype)):
            kind = "categorical"
        else:
            raise SchemaError(f"column {name} has dtype {dtype}, which is neither a number "
                              f"nor a category; drop it (--drop {name})", column=name)
    if kind == "categorical":
        levels = _levels(col, present, name, declared.levels, max_levels, "column")
        return Feature(name, "categorical", levels=levels, description=declared.description)
    values = _numbers(present, name, "column")
    lo, hi = _bounds(values, name, declared, margin, "column")
    return Feature(name, "numerical", exclusive_minimum=lo, maximum=hi,
                   description=declared.description)


def _numbers(present: pd.Series, name: str, what: str) -> np.ndarray:
    """The finite values of a column that must be numeric, or a SchemaError."""
    if pd.api.types.is_bool_dtype(present.dtype):
        present = present.astype(np.float64)
    numbers = pd.to_numeric(present, errors="coerce")
    bad = present[numbers.isna()]
    if not bad.empty:
        raise SchemaError(f"{what} {name} is numerical but holds {bad.iloc[0]!r}; declare "
                          f"it categorical or fix the data", column=name)
    values = numbers.to_numpy(dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise SchemaError(f"{what} {name} has no finite values; {_way_out(what, name)}",
                          column=name)
    if values.min() == values.max():
        raise SchemaError(f"{what} {name} is constant (every value is {values[0]:g}): "
                          f"nothing to learn from; {_way_out(what, name)}", column=name)
    return values


def _levels(col: pd.Series, present: pd.Series, name: str,
            declared: tuple[str, ...] | None, max_levels: int, what: str) -> tuple[str, ...]:
    texts = as_text(present)
    seen = list(dict.fromkeys(texts))
    if declared is not None:
        unknown = [v for v in seen if v not in set(declared)]
        if unknown:
            raise SchemaError(f"{what} {name} holds {unknown[0]!r}, which is not among the "
                              f"levels its schema file declares ({len(unknown)} distinct "
                              f"value(s) outside them)", column=name)
        levels = declared
    elif isinstance(col.dtype, pd.CategoricalDtype):
        levels = tuple(dict.fromkeys(level_text(c) for c in col.dtype.categories))
    elif pd.api.types.is_numeric_dtype(col.dtype):
        ordered = sorted(pd.unique(present), key=float)
        levels = tuple(dict.fromkeys(level_text(v) for v in ordered))
    else:
        levels = tuple(sorted(seen))
    if len(seen) == 1:
        raise SchemaError(f"{what} {name} is constant (every value is {seen[0]!r}): "
                          f"nothing to learn from; {_way_out(what, name)}", column=name)
    if len(levels) > max_levels:
        if what == "target":
            hint = "a quantity? --task regression"
        elif pd.api.types.is_numeric_dtype(col.dtype):
            hint = "a quantity? declare it numerical (leave it out of --categorical)"
        else:
            hint = f"an identifier or free text? drop it (--drop {name})"
        raise SchemaError(f"{what} {name} has {len(levels):,} distinct values, more than the "
                          f"{max_levels:,} levels a category may have; {hint}", column=name)
    return levels


def _bounds(values: np.ndarray, name: str, declared: ColumnDeclaration, margin: float,
            what: str) -> tuple[float, float]:
    low, high = float(values.min()), float(values.max())
    lo, hi = inferred_bounds(low, high, margin)
    if declared.exclusive_minimum is not None:
        lo = declared.exclusive_minimum
        if low <= lo:
            raise SchemaError(f"{what} {name} holds {low:g}, not above the exclusive_minimum "
                              f"{lo:g} its schema file declares", column=name)
    if declared.maximum is not None:
        hi = declared.maximum
        if high > hi:
            raise SchemaError(f"{what} {name} holds {high:g}, above the maximum {hi:g} its "
                              f"schema file declares", column=name)
    return lo, hi


def inferred_bounds(low: float, high: float, margin: float = BOUNDS_MARGIN
                    ) -> tuple[float, float]:
    """``(low - k·range, high + k·range]`` rounded outwards to three significant digits of
    the margin, the lower bound clamped at 0 when ``low`` is positive."""
    spread = margin * (high - low)
    if not math.isfinite(spread):  # a range near the largest float: no room for a margin
        return -float(np.finfo(np.float64).max), float(np.finfo(np.float64).max)
    exponent = math.floor(math.log10(spread)) - 2
    # in units of the last digit kept; round(…, 6) first so 29.000000000000004 stays 29
    scale = 10.0**-exponent
    lo = math.floor(round((low - spread) * scale, 6)) / scale
    hi = math.ceil(round((high + spread) * scale, 6)) / scale
    if low > 0:
        lo = max(lo, 0.0)
    return float(lo), float(hi)


def _target(col: pd.Series, name: str, task: str | None,
            declared: ColumnDeclaration | None, max_levels: int, margin: float) -> Target:
    declared = declared or ColumnDeclaration()
    if declared.kind is not None or declared.levels is not None or declared.description:
        raise SchemaError(f"the target {name} takes bounds only in a schema file (its kind "
                          f"is --task)", column=name)
    present = _check_column(col, name, "target")
    missing = int(col.isna().sum())
    if missing:
        first = int(np.flatnonzero(col.isna().to_numpy())[0])
        raise SchemaError(f"target {name} is missing in {missing} row(s), first at row "
                          f"{first}: every training row needs a label; remove those rows",
                          column=name)
    numeric = (pd.api.types.is_numeric_dtype(col.dtype)
               and not pd.api.types.is_bool_dtype(col.dtype))
    if task is None:
        task = "regression" if numeric and _quantity(present) else "classification"
    if task == "regression":
        if not numeric:
            example = present.iloc[0]
            raise SchemaError(f"target {name} is not numeric (e.g. {example!r}); regression "
                              f"needs numbers (--task classification for labels)", column=name)
        values = _numbers(present, name, "target")
        lo, hi = _bounds(values, name, declared, margin, "target")
        return Target(name, lo, hi, task="regression")
    if declared.exclusive_minimum is not None or declared.maximum is not None:
        raise SchemaError(f"the target {name} of a classification has classes, not bounds",
                          column=name)
    classes = _levels(col, present, name, None, max_levels, "target")
    return Target(name, task="classification", classes=classes)


def _quantity(present: pd.Series) -> bool:
    """A numeric target is a quantity (regression) when it has many distinct values."""
    return bool(present.nunique() > MAX_CLASSES)


def infer_from_csv(path: str | Path, target: str | None = None, *, task: str | None = None,
                   categorical: Iterable[str] = (), drop: Iterable[str] = (),
                   schema_file: str | Path | None = None) -> FeatureSchema:
    """Read a CSV and infer its schema; flags (``target``, ``task``) win over the schema
    file's, dropped columns add up."""
    from .data import read_csv

    declared = read_schema_file(schema_file) if schema_file is not None else SchemaFile()
    target = target or declared.target
    if target is None:
        raise SchemaError("no target column: pass --target COLUMN (or target: in the "
                          "schema file)")
    frame = read_csv(path)
    return infer_schema(frame, target, task=task or declared.task, categorical=categorical,
                        drop=[*declared.drop, *drop], columns=declared.columns)


def describe(schema: FeatureSchema, max_shown: int = 6) -> list[str]:
    """One line per column, the target first: kind, then bounds or levels (what
    ``driftkeeper train`` prints)."""
    t = schema.target
    rows = [(t.name, f"{t.task} target",
             _interval(t.exclusive_minimum, t.maximum) if t.task == "regression"
             else _some(t.classes, max_shown, "classes"))]
    rows += [(f.name, f.kind, _interval(f.exclusive_minimum, f.maximum)
              if f.kind == "numerical" else _some(f.levels, max_shown, "levels"))
             for f in schema.features]
    name_width = max(len(r[0]) for r in rows)
    kind_width = max(len(r[1]) for r in rows)
    return [f"  {name:<{name_width}}  {kind:<{kind_width}}  {detail}"
            for name, kind, detail in rows]


def _interval(lo: float | None, hi: float | None) -> str:
    return f"({'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}]"


def _some(values: tuple[str, ...], max_shown: int, noun: str) -> str:
    shown = ", ".join(values[:max_shown]) + (", …" if len(values) > max_shown else "")
    return f"{len(values)} {noun}: {shown}"

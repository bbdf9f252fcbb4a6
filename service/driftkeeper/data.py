"""The diamonds table, shipped with the package so everything works offline.

`seaborn.load_dataset("diamonds")` downloads from GitHub; the same 53,940 rows (ggplot2's
table, as packaged by plotnine) ship here gzip-compressed. Users bring their own data with a
CSV of the same columns (``--data``), or any table whose schema ``inference.py`` infers
(``--data`` with ``--target``), loaded through that schema by :func:`load_table`.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from .schema import DIAMONDS_SCHEMA, FeatureSchema, as_text

DIAMONDS_ROWS = 53_940


def bundled_diamonds() -> Path:
    """Where the shipped diamonds table is."""
    return Path(str(resources.files("driftkeeper") / "data" / "diamonds.csv.gz"))


def load_diamonds(path: str | Path | None = None,
                  schema: FeatureSchema = DIAMONDS_SCHEMA) -> pd.DataFrame:
    """Load the diamonds table (or a user CSV with the same columns) with canonical dtypes.

    Categorical features become ordered categoricals in the schema's level order and numerics
    become float64, whatever the CSV held. A row with an unknown category or a non-numeric value
    is an error naming the column: training on silently coerced data would be worse.
    """
    return load_table(path if path is not None else bundled_diamonds(), schema)


def load_table(path: str | Path, schema: FeatureSchema) -> pd.DataFrame:
    """Load a CSV through a schema: its features and target with canonical dtypes (see
    :func:`canonicalize`); other columns are left out."""
    return canonicalize(read_csv(path), schema, source=str(path))


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read a CSV as it is; every way of failing becomes a DataError naming the file."""
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not a CSV file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
            OSError) as exc:
        raise DataError(f"cannot read {path} as CSV: {exc}") from None


def read_current(path: str | Path, schema: FeatureSchema = DIAMONDS_SCHEMA) -> pd.DataFrame:
    """Read rows to check for drift. Unlike training data they may hold unknown categories
    and missing values (the engine counts those); only missing columns are an error."""
    frame = read_csv(path)
    missing = [name for name in schema.names if name not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected "
                        f"{', '.join(schema.names)} and optionally {schema.target.name}")
    return frame


def canonicalize(raw: pd.DataFrame, schema: FeatureSchema = DIAMONDS_SCHEMA,
                 source: str = "data", require_target: bool = True) -> pd.DataFrame:
    """Return the schema's columns (and the target) with canonical dtypes, or raise DataError."""
    wanted = schema.names + ([schema.target.name] if require_target else [])
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(missing)}")
    out = {}
    for feat in schema.features:
        col = raw[feat.name]
        if feat.kind == "categorical":
            values = as_text(col)  # levels are text: a column of 1, 2 has levels "1", "2"
            unknown = sorted(set(values.dropna()) - set(feat.levels))
            if unknown:
                raise DataError(
                    f"{source}: column {feat.name} has unknown categories {unknown[:5]}; "
                    f"allowed: {list(feat.levels)}"
                )
            if values.isna().any():
                raise DataError(f"{source}: column {feat.name} has missing values")
            out[feat.name] = pd.Categorical(values, categories=list(feat.levels), ordered=True)
        else:
            out[feat.name] = _numeric(col, feat.name, source)
    target = schema.target
    if target.name in raw.columns:
        out[target.name] = (_classes(raw[target.name], target.name, target.classes, source)
                            if target.is_classification
                            else _numeric(raw[target.name], target.name, source))
    return pd.DataFrame(out, index=raw.index).reset_index(drop=True)


def _classes(col: pd.Series, name: str, classes: tuple[str, ...],
             source: str) -> pd.Categorical:
    """A classification target as its class labels (text, as levels are compared); a
    missing or unknown label is an error naming the column and the classes."""
    values = as_text(col)
    if values.isna().any():
        first = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise DataError(f"{source}: column {name} has {int(values.isna().sum())} missing "
                        f"label(s), first at row {first}")
    unknown = sorted(set(values) - set(classes))
    if unknown:
        raise DataError(f"{source}: column {name} has unknown classes {unknown[:5]}; "
                        f"allowed: {list(classes)}")
    return pd.Categorical(values, categories=list(classes))


def _numeric(col: pd.Series, name: str, source: str) -> pd.Series:
    values = pd.to_numeric(col, errors="coerce").astype(np.float64)
    bad = ~np.isfinite(values.to_numpy())
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: column {name} has {int(bad.sum())} missing or non-numeric value(s), "
            f"first at row {first}: {col.iloc[first]!r}"
        )
    return values


def frame_hash(frame: pd.DataFrame) -> str:
    """A content hash of a frame, recorded in model metadata to tell which data trained it."""
    digest = hashlib.sha256()
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest.update(hashed.tobytes())
    digest.update(",".join(map(str, frame.columns)).encode())
    return "sha256:" + digest.hexdigest()

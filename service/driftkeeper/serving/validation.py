"""Request bodies to validated rows, or an error that names the field.

Hand-written rather than a JSON-schema validator: it runs on every prediction, and a
dictionary walk over six fields costs a few microseconds where a generic validator costs
~100 µs. The OpenAPI document (``openapi.py``) states the same rules for clients.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..schema import Feature, FeatureSchema, Target, level_text


class UnknownCategoryError(InvalidInputError):
    """A category the model never saw: a 4xx for the client, and a drift signal to count."""

    def __init__(self, message: str, field: str, row: int | None, feature: str) -> None:
        super().__init__(message, field=field, row=row, reason="unknown_category")
        self.feature = feature


def _reject_constant(name: str) -> float:
    raise InvalidInputError(f"{name} is not a valid JSON number", field="body", reason="json")


def parse_body(body: bytes) -> Any:
    """Parse a JSON body strictly: no NaN/Infinity literals, bounded nesting, UTF-8."""
    if not body or not body.strip():
        raise InvalidInputError("request body is empty; send a JSON object", field="body",
                                reason="empty")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise InvalidInputError("request body is nested too deeply", field="body",
                                reason="json") from None
    except UnicodeDecodeError:
        raise InvalidInputError("request body is not UTF-8 text", field="body",
                                reason="json") from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"request body is not valid JSON: {exc.msg} at line "
                                f"{exc.lineno} column {exc.colno}", field="body",
                                reason="json") from None


def extract_rows(payload: Any, max_rows: int) -> tuple[list[dict[str, Any]], bool]:
    """The rows of a payload: one object, or ``{"instances": [...]}``. Returns (rows, batch)."""
    if not isinstance(payload, dict):
        raise InvalidInputError(
            f"body must be a JSON object (one row, or {{\"instances\": [...]}}), "
            f"got {_type_name(payload)}", field="body", reason="json")
    if "instances" not in payload:
        return [payload], False
    extra = sorted(set(payload) - {"instances"})
    if extra:
        raise InvalidInputError(f"unexpected field {extra[0][:40]!r} next to 'instances'",
                                field=extra[0][:40], reason="extra_field")
    rows = payload["instances"]
    if not isinstance(rows, list):
        raise InvalidInputError(f"instances must be a list of rows, got {_type_name(rows)}",
                                field="instances", reason="type")
    if not rows:
        raise InvalidInputError("instances is empty; send at least one row", field="instances",
                                reason="empty")
    if len(rows) > max_rows:
        raise InvalidInputError(f"too many rows: {len(rows)} > {max_rows}; split the batch",
                                field="instances", reason="too_many_rows")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidInputError(f"each row must be an object, got {_type_name(row)}",
                                    field=f"instances[{i}]", row=i, reason="type")
    return rows, True


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null", int: "a number", float: "a number"}.get(type(value),
                                                                       type(value).__name__)


def _field(name: str, row: int | None, batch: bool) -> str:
    return f"instances[{row}].{name}" if batch else name


def _check_number(value: Any, name: str, lo: float | None, hi: float | None, row: int,
                  batch: bool) -> float:
    field = _field(name, row, batch)
    r = row if batch else None
    if value is None:
        raise InvalidInputError(f"{name} must not be null", field=field, row=r, reason="null")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{name} must be a number, got {_type_name(value)}",
                                field=field, row=r, reason="type")
    try:
        x = float(value)
    except OverflowError:  # an integer too large for a float
        x = math.inf
    if not math.isfinite(x):
        raise InvalidInputError(f"{name} must be a finite number", field=field, row=r,
                                reason="out_of_range")
    if (lo is not None and x <= lo) or (hi is not None and x > hi):
        raise InvalidInputError(f"{name} must be > {lo:g} and <= {hi:g}, got {value}",
                                field=field, row=r, reason="out_of_range")
    return x


def _compile(feature: Feature) -> Callable[[Any, int, bool], float]:
    name = feature.name
    if feature.kind == "numerical":
        lo, hi = feature.exclusive_minimum, feature.maximum

        def check_numeric(value: Any, row: int, batch: bool) -> float:
            if type(value) is float and (lo is None or value > lo) and (
                    hi is None or value <= hi):
                return value  # the common case, without the error paths
            return _check_number(value, name, lo, hi, row, batch)
        return check_numeric

    codes = {level: float(i) for i, level in enumerate(feature.levels)}
    allowed = ", ".join(feature.levels)

    def check_category(value: Any, row: int, batch: bool) -> float:
        code = codes.get(value) if isinstance(value, str) else None
        if code is not None:
            return code
        field = _field(name, row, batch)
        r = row if batch else None
        if value is None:
            raise InvalidInputError(f"{name} must not be null", field=field, row=r,
                                    reason="null")
        if isinstance(value, (int, float)):  # a code sent as a number (bool is an int)
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidInputError(f"{name} must be a finite number or a string",
                                        field=field, row=r, reason="type")
            value = level_text(value)  # compared as text, as in training: 1 and 1.0 are "1"
            code = codes.get(value)
            if code is not None:
                return code
        if not isinstance(value, str):
            raise InvalidInputError(f"{name} must be a string (or a number naming a "
                                    f"level), got {_type_name(value)}", field=field, row=r,
                                    reason="type")
        raise UnknownCategoryError(f"unknown {name} {value[:40]!r}; allowed: {allowed}",
                                   field=field, row=r, feature=name)
    return check_category


def _compile_target(target: Target) -> Callable[[Any, int, bool], float]:
    """A regression label is a number within the target's bounds; a classification label
    names a class (text, or a number or boolean read as text, as a category) and becomes
    its class index. An unknown class is the client's error, not a drift signal."""
    if not target.is_classification:
        return lambda v, row, batch: _check_number(
            v, target.name, target.exclusive_minimum, target.maximum, row, batch)
    check = _compile(Feature(target.name, "categorical", levels=target.classes))

    def check_class(value: Any, row: int, batch: bool) -> float:
        try:
            return check(value, row, batch)
        except UnknownCategoryError as exc:
            raise InvalidInputError(str(exc).replace(f"unknown {target.name}",
                                                     f"unknown class of {target.name}"),
                                    field=exc.field, row=exc.row,
                                    reason="unknown_class") from None
    return check_class


class RowValidator:
    """Turns validated rows into the encoded matrix the model and the monitor use."""

    def __init__(self, schema: FeatureSchema, with_target: bool) -> None:
        self.schema = schema
        self.with_target = with_target
        self.names = schema.names
        self.expected = set(self.names) | ({schema.target.name} if with_target else set())
        self.checks = [_compile(f) for f in schema.features]
        self.target_check = _compile_target(schema.target)

    def encode(self, rows: list[dict[str, Any]], batch: bool
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """Validate rows; return the encoded features and (for feedback) the targets."""
        X = np.empty((len(rows), len(self.names)), dtype=np.float64)
        y = np.empty(len(rows), dtype=np.float64) if self.with_target else None
        for i, row in enumerate(rows):
            if len(row) != len(self.expected) or row.keys() != self.expected:
                self._field_error(row, i, batch)
            for j, (name, check) in enumerate(zip(self.names, self.checks, strict=True)):
                X[i, j] = check(row[name], i, batch)
            if y is not None:
                y[i] = self.target_check(row[self.schema.target.name], i, batch)
        return X, y

    def _field_error(self, row: dict[str, Any], i: int, batch: bool) -> None:
        r = i if batch else None
        missing = [n for n in (*self.names, self.schema.target.name)
                   if n in self.expected and n not in row]
        if missing:
            raise InvalidInputError(f"missing field {missing[0]!r}",
                                    field=_field(missing[0], i, batch), row=r,
                                    reason="missing_field")
        extra = sorted(str(k) for k in row if k not in self.expected)
        raise InvalidInputError(f"unexpected field {extra[0][:40]!r}; expected "
                                f"{sorted(self.expected)}", field=_field(extra[0][:40], i, batch),
                                row=r, reason="extra_field")

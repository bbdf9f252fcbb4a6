"""The OpenAPI 3 document of the service, generated from the model's feature schema so the
document and the validator cannot disagree."""

from __future__ import annotations

import math
from typing import Any

from .. import __version__
from ..schema import FeatureSchema, level_text


def _row_schema(schema: FeatureSchema, with_target: bool) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for f in schema.features:
        if f.kind == "numerical":
            props[f.name] = {"type": "number", "exclusiveMinimum": f.exclusive_minimum,
                             "maximum": f.maximum, "description": f.description}
        else:
            props[f.name] = {**_levels_schema(f.levels), "description": f.description}
    required = list(schema.names)
    if with_target:
        t = schema.target
        props[t.name] = ({**_levels_schema(t.classes), "description": "the actual class"}
                         if t.is_classification else
                         {"type": "number", "exclusiveMinimum": t.exclusive_minimum,
                          "maximum": t.maximum, "description": "the actual (observed) value"})
        required.append(t.name)
    return {"type": "object", "properties": props, "required": required,
            "additionalProperties": False}


def _levels_schema(levels: tuple[str, ...]) -> dict[str, Any]:
    """A category's levels as text, and as the JSON numbers or booleans that read as them
    (the validator compares categories as text: 1, 1.0 and "1" are one level)."""
    text = {"type": "string", "enum": list(levels)}
    numbers = [n for n in map(_as_number, levels) if n is not None]
    flags = [v for v in (True, False) if level_text(v) in levels]
    alternatives = [text] + ([{"type": "number", "enum": numbers}] if numbers else []) + (
        [{"type": "boolean", "enum": flags}] if flags else [])
    return text if len(alternatives) == 1 else {"oneOf": alternatives}


def _as_number(level: str) -> float | int | None:
    try:
        value = float(level)
    except ValueError:
        return None
    if not math.isfinite(value) or level_text(value) != level:
        return None
    return int(value) if value.is_integer() else value


def _predictions_schema(schema: FeatureSchema | None) -> dict[str, Any]:
    """A regression answers numbers; a classifier the predicted class (binary: classes[1]
    when its probability is over 0.5; else the most probable) and each class's
    probability."""
    value: dict[str, Any] = {"type": "number"}
    props: dict[str, Any] = {}
    if schema is not None and schema.target.is_classification:
        classes = list(schema.target.classes)
        value = {"type": "string", "enum": classes}
        per_class = {"type": "object", "required": classes, "additionalProperties": False,
                     "properties": {c: {"type": "number", "minimum": 0, "maximum": 1}
                                    for c in classes}}
        props = {"probabilities": {"oneOf": [per_class,
                                             {"type": "array", "items": per_class}]}}
    return {"type": "object", "required": ["model_version", "request_id"],
            "properties": {"prediction": value,
                           "predictions": {"type": "array", "items": value}, **props,
                           "model_version": {"type": "string"},
                           "request_id": {"type": "string"}}}


def _unknown_rows() -> dict[str, Any]:
    return {"type": "object", "description": "no model is loaded yet: a row's fields are "
            "the served model's features"}


def _body(row_ref: str, max_rows: int) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"oneOf": [
        {"$ref": row_ref},
        {"type": "object", "required": ["instances"], "additionalProperties": False,
         "properties": {"instances": {"type": "array", "minItems": 1, "maxItems": max_rows,
                                      "items": {"$ref": row_ref}}}},
    ]}}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document(schema: FeatureSchema | None, max_rows: int) -> dict[str, Any]:
    bad_input = {"400": _error("malformed body (not JSON, empty, NaN, too deep)"),
                 "413": _error("body too large or too many rows"),
                 "422": _error("a field is missing, unexpected, of the wrong type, out of "
                               "range or an unknown category; `field` names it"),
                 "503": _error("no model loaded yet")}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Driftkeeper model service", "version": __version__,
                 "description": "Predictions with live data- and concept-drift monitoring."},
        "paths": {
            "/predict": {"post": {
                "summary": "Predict one row or a batch",
                "requestBody": _body("#/components/schemas/Row", max_rows),
                "responses": {"200": _ok("prediction(s)", _predictions_schema(schema)),
                              **bad_input}}},
            "/feedback": {"post": {
                "summary": "Report actual values for rows (labels), at any later time",
                "requestBody": _body("#/components/schemas/LabelledRow", max_rows),
                "responses": {"200": _ok("rows accepted", {
                    "type": "object", "required": ["accepted", "model_version", "request_id"],
                    "properties": {"accepted": {"type": "integer"},
                                   "model_version": {"type": "string"},
                                   "request_id": {"type": "string"}}}), **bad_input}}},
            "/drift": {"get": {"summary": "The latest drift report",
                               "responses": {"200": _ok("drift report", {
                                   "$ref": "#/components/schemas/DriftReport"}),
                                   "503": _error("no model loaded yet")}}},
            "/reference": {"get": {
                "summary": "The serving version's reference profile (for fleet evaluation)",
                "responses": {"200": _ok("reference profile", {
                    "type": "object", "required": ["model_version", "profile"],
                    "properties": {"model_version": {"type": "string"},
                                   "profile": {"type": "object"}}}),
                    "503": _error("no model loaded yet")}}},
            "/reference/predictor": {"get": {
                "summary": "The serving version as exported arrays (numpy .npz, no pickle)",
                "responses": {"200": {"description": "predictor.npz",
                                      "content": {"application/octet-stream": {
                                          "schema": {"type": "string", "format": "binary"}}}},
                              "404": _error("the version is served from its pickle"),
                              "503": _error("no model loaded yet")}}},
            "/schema": {"get": {
                "summary": "The serving version's feature schema and target",
                "responses": {"200": _ok("feature schema", {
                    "type": "object", "required": ["model_version", "schema"],
                    "properties": {"model_version": {"type": "string"},
                                   "schema": {"type": "object",
                                              "required": ["features", "target"]}}}),
                    "503": _error("no model loaded yet")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
                "200": {"description": "text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/healthz": {"get": {
                "summary": "Liveness: this worker can serve and its background loop works",
                "responses": {"200": _ok("alive", {"type": "object"}),
                              "503": _ok("unhealthy: the failing checks", {
                                  "type": "object"})}}},
            "/readyz": {"get": {"summary": "Readiness: a model is loaded", "responses": {
                "200": _ok("ready", {"type": "object"}), "503": _error("no model loaded")}}},
            "/": {"get": {"summary": "Endpoint index", "responses": {
                "200": _ok("index", {"type": "object"})}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": _ok("OpenAPI 3 document", {"type": "object"})}}},
        },
        "components": {"schemas": {
            "Row": _row_schema(schema, with_target=False) if schema else _unknown_rows(),
            "LabelledRow": (_row_schema(schema, with_target=True) if schema
                            else _unknown_rows()),
            "Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string"}, "field": {"type": "string"},
                "row": {"type": "integer"}, "request_id": {"type": "string"}}},
            "Verdict": {"type": "object", "required": ["score", "threshold", "drift", "samples"],
                        "properties": {"score": {"type": ["number", "null"]},
                                       "threshold": {"type": "number"},
                                       "drift": {"type": ["boolean", "null"]},
                                       "samples": {"type": "integer"}}},
            "DriftReport": {"type": "object", "required": ["data", "concept"], "properties": {
                "data": {"$ref": "#/components/schemas/Verdict"},
                "concept": {"$ref": "#/components/schemas/Verdict"},
                "prediction": {"$ref": "#/components/schemas/Verdict"},
                "performance": {"allOf": [{"$ref": "#/components/schemas/Verdict"}],
                                "description": "The RMSE estimated from the inputs before "
                                "labels: score is its relative increase over the held-out "
                                "RMSE (rmse_estimated, rmse_reference)."},
                "model_version": {"type": "string"},
                "evaluated_at": {"type": ["number", "null"]}}},
        }},
    }

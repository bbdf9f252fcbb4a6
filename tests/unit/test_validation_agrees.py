"""The hand-written request validator and the published OpenAPI schema agree: every body
the validator rejects as a bad field the schema rejects too, and good rows pass both."""

from __future__ import annotations

import json

import jsonschema
import pytest

from bad_inputs import BAD_FEEDBACK_INPUTS, BAD_PREDICT_INPUTS, GOOD_ROW, too_many_rows
from driftkeeper.schema import DIAMONDS_SCHEMA
from driftkeeper.serving.openapi import openapi_document

MAX_ROWS = 50
DOCUMENT = openapi_document(DIAMONDS_SCHEMA, MAX_ROWS)


def _validator(path: str) -> jsonschema.Draft202012Validator:
    body = DOCUMENT["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    schema = {**body["schema"], "components": DOCUMENT["components"]}
    return jsonschema.Draft202012Validator(schema)


def _cases(table: list) -> list:
    """Cases whose body is JSON (the schema cannot judge what does not parse)."""
    out = []
    for name, body, status, field in table:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            continue
        if status == 422:
            out.append(pytest.param(document, field, id=name))
    return out


@pytest.mark.parametrize(("document", "field"), _cases(BAD_PREDICT_INPUTS))
def test_what_the_validator_rejects_the_schema_rejects(document, field: str) -> None:
    assert not _validator("/predict").is_valid(document), field


@pytest.mark.parametrize(("document", "field"), _cases(BAD_FEEDBACK_INPUTS))
def test_bad_feedback_is_rejected_by_the_schema(document, field: str) -> None:
    assert not _validator("/feedback").is_valid(document), field


def test_good_rows_and_batches_pass_the_schema() -> None:
    predict, feedback = _validator("/predict"), _validator("/feedback")
    assert predict.is_valid(GOOD_ROW)
    assert predict.is_valid({"instances": [GOOD_ROW] * MAX_ROWS})
    assert feedback.is_valid({**GOOD_ROW, "price": 1500.0})
    assert not predict.is_valid(json.loads(too_many_rows(MAX_ROWS)))  # 413 in the service

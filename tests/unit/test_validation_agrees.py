"""The hand-written request validator and the published OpenAPI schema agree: every body
the validator rejects as a bad field the schema rejects too, and good rows pass both."""

from __future__ import annotations

import json

import jsonschema
import pytest

from bad_inputs import BAD_FEEDBACK_INPUTS, BAD_PREDICT_INPUTS, GOOD_ROW, too_many_rows
from driftkeeper.errors import InvalidInputError
from driftkeeper.schema import DIAMONDS_SCHEMA, Feature, FeatureSchema, Target
from driftkeeper.serving.openapi import openapi_document
from driftkeeper.serving.validation import RowValidator

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


CODED = FeatureSchema(
    features=(Feature("sex", "categorical", levels=("1", "2")),
              Feature("smoker", "categorical", levels=("False", "True")),
              Feature("bmi", "numerical", exclusive_minimum=0.0, maximum=100.0)),
    target=Target("progression", exclusive_minimum=None, maximum=None))


@pytest.mark.parametrize(("sex", "smoker", "accepted"), [
    ("1", "True", True), (1, True, True), (2.0, False, True), (2, "False", True),
    (3, True, False), ("3", True, False), (1.5, True, False), (True, True, False),
    (1, 1, False), ([1], True, False), (None, True, False),
])
def test_categories_coded_as_numbers_are_accepted_by_both(sex, smoker, accepted: bool) -> None:
    """A table whose categories are numbers (sex 1/2) may send them as numbers or as text;
    the validator and the published schema agree on every value."""
    row = {"sex": sex, "smoker": smoker, "bmi": 25.0}
    document = openapi_document(CODED, MAX_ROWS)
    body = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    schema_accepts = jsonschema.Draft202012Validator(
        {**body["schema"], "components": document["components"]}).is_valid(row)
    try:
        X, _ = RowValidator(CODED, with_target=False).encode([row], batch=False)
        validator_accepts = True
    except InvalidInputError:
        validator_accepts = False
    assert (validator_accepts, schema_accepts) == (accepted, accepted)
    if accepted:
        assert X[0, 0] == float(str(sex)[0]) - 1 and X[0, 1] == float(str(smoker) == "True")


def test_the_document_without_a_model_names_no_features() -> None:
    from openapi_spec_validator import validate

    document = openapi_document(None, MAX_ROWS)
    validate(document)
    row = document["components"]["schemas"]["Row"]
    assert "properties" not in row and "no model" in row["description"]

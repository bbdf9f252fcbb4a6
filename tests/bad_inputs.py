"""Bad request bodies, shared by the in-process and the real-gunicorn tests.

Each case: (name, body bytes, expected HTTP status, expected `field` in the JSON error).
"""

from __future__ import annotations

import json

GOOD_ROW = {"carat": 0.5, "cut": "Ideal", "color": "E", "clarity": "VS1", "depth": 61.5,
            "table": 55.0}


def _row(**changes) -> bytes:
    row = dict(GOOD_ROW)
    for key, value in changes.items():
        if value is _DROP:
            row.pop(key)
        else:
            row[key] = value
    return json.dumps(row).encode()


_DROP = object()

BAD_PREDICT_INPUTS: list[tuple[str, bytes, int, str]] = [
    ("unknown category", _row(cut="Superb"), 422, "cut"),
    ("missing field", _row(depth=_DROP), 422, "depth"),
    ("extra field", _row(x=3.9), 422, "x"),
    ("wrong type string", _row(carat="0.5"), 422, "carat"),
    ("wrong type number for category", _row(color=3), 422, "color"),
    ("boolean as number", _row(table=True), 422, "table"),
    ("null value", _row(clarity=None), 422, "clarity"),
    ("NaN literal", b'{"carat": NaN, "cut": "Ideal", "color": "E", "clarity": "VS1", '
                    b'"depth": 61.5, "table": 55}', 400, "body"),
    ("Infinity literal", b'{"carat": Infinity, "cut": "Ideal", "color": "E", '
                         b'"clarity": "VS1", "depth": 61.5, "table": 55}', 400, "body"),
    ("huge number overflows to inf", b'{"carat": 1e400, "cut": "Ideal", "color": "E", '
                                     b'"clarity": "VS1", "depth": 61.5, "table": 55}', 422,
     "carat"),
    ("huge integer", b'{"carat": 1' + b"0" * 400 + b', "cut": "Ideal", "color": "E", '
                     b'"clarity": "VS1", "depth": 61.5, "table": 55}', 422, "carat"),
    ("negative carat", _row(carat=-0.3), 422, "carat"),
    ("zero carat", _row(carat=0), 422, "carat"),
    ("absurd carat", _row(carat=1e6), 422, "carat"),
    ("depth over 100 percent", _row(depth=250), 422, "depth"),
    ("empty body", b"", 400, "body"),
    ("whitespace body", b"   \n", 400, "body"),
    ("not JSON", b"carat=0.5&cut=Ideal", 400, "body"),
    ("truncated JSON", b'{"carat": 0.5, "cut": ', 400, "body"),
    ("JSON array at top", b"[1, 2, 3]", 400, "body"),
    ("JSON string at top", b'"hello"', 400, "body"),
    ("not UTF-8", b'{"cut": "\xff\xfe"}', 400, "body"),
    ("deep nesting", b"[" * 20_000 + b"]" * 20_000, 400, "body"),
    ("deep nesting in a field", b'{"carat": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", 400,
     "body"),
    ("instances not a list", json.dumps({"instances": {"a": 1}}).encode(), 422, "instances"),
    ("instances empty", json.dumps({"instances": []}).encode(), 422, "instances"),
    ("row not an object", json.dumps({"instances": [GOOD_ROW, 5]}).encode(), 422,
     "instances[1]"),
    ("bad field in a batch row", json.dumps({"instances": [GOOD_ROW, {**GOOD_ROW,
                                                                      "carat": -1}]}).encode(),
     422, "instances[1].carat"),
    ("extra key next to instances", json.dumps({"instances": [GOOD_ROW], "x": 1}).encode(),
     422, "x"),
]

BAD_FEEDBACK_INPUTS: list[tuple[str, bytes, int, str]] = [
    ("feedback without price", _row(), 422, "price"),
    ("feedback negative price", json.dumps({**GOOD_ROW, "price": -5}).encode(), 422, "price"),
    ("feedback price null", json.dumps({**GOOD_ROW, "price": None}).encode(), 422, "price"),
    ("feedback price string", json.dumps({**GOOD_ROW, "price": "cheap"}).encode(), 422,
     "price"),
]


def too_many_rows(max_rows: int) -> bytes:
    return json.dumps({"instances": [GOOD_ROW] * (max_rows + 1)}).encode()


def oversized_body(max_bytes: int) -> bytes:
    return b'{"pad": "' + b"x" * (max_bytes + 10) + b'"}'

"""The lean /predict path against Flask's own route: the same answers, every refused request
handed to Flask whole, and the monitoring done exactly once per answered row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bad_inputs import BAD_PREDICT_INPUTS, GOOD_ROW, oversized_body, too_many_rows
from driftkeeper.serving import metrics
from driftkeeper.serving.app import state_of
from driftkeeper.serving.fast_path import FastPredict
from driftkeeper.serving.rings import read_ring
from inprocess import in_process_app


@pytest.fixture
def served(model_dir: Path, tmp_path: Path):
    app, _ = in_process_app(model_dir, tmp_path)
    fast = app.wsgi_app
    assert isinstance(fast, FastPredict)
    flask_calls = []
    flask_only = fast.flask_wsgi

    def counted(environ, start_response):
        flask_calls.append(environ["PATH_INFO"])
        return flask_only(environ, start_response)

    fast.flask_wsgi = counted
    yield app, flask_only, flask_calls
    state_of(app).stop()


def _ring_rows(app) -> int:
    return sum(len(read_ring(p)) for p in state_of(app).config.windows_dir.glob("inputs-*"))


def _counter(metric, **labels) -> float:
    value = metric.labels(**labels) if labels else metric
    return sum(s.value for m in value.collect() for s in m.samples
               if s.name.endswith(("_total", "_count")))


def _answer(client, body: bytes, **headers):
    resp = client.post("/predict", data=body, content_type="application/json",
                       headers=headers)
    doc = resp.get_json()
    return resp.status_code, {k: v for k, v in doc.items() if k != "request_id"}, resp


BATCH = json.dumps({"instances": [GOOD_ROW, {**GOOD_ROW, "carat": 1.2}]}).encode()
CASES = [("one row", json.dumps(GOOD_ROW).encode()), ("a batch", BATCH),
         *[(c[0], c[1]) for c in BAD_PREDICT_INPUTS],
         ("too many rows", too_many_rows(51)), ("oversized", oversized_body(64 * 1024))]


@pytest.mark.parametrize(("name", "body"), CASES, ids=[c[0] for c in CASES])
def test_answers_are_flasks_own(served, name: str, body: bytes) -> None:
    app, flask_only, _ = served
    through_fast = _answer(app.test_client(), body)
    app.wsgi_app = flask_only  # the route alone, as before the fast path
    alone = _answer(app.test_client(), body)
    assert through_fast[:2] == alone[:2], name


def test_an_answered_row_is_recorded_once_and_never_reaches_flask(served) -> None:
    app, _, flask_calls = served
    client = app.test_client()
    rows, predicted = _ring_rows(app), _counter(metrics.PREDICTIONS)
    timed = _counter(metrics.REQUEST_SECONDS, endpoint="/predict")
    status, body, resp = _answer(client, BATCH, **{"X-Request-ID": "req-7"})
    assert status == 200 and len(body["predictions"]) == 2
    assert resp.headers["X-Request-ID"] == "req-7" == resp.get_json()["request_id"]
    assert flask_calls == []
    assert _ring_rows(app) == rows + 2
    assert _counter(metrics.PREDICTIONS) == predicted + 2
    assert _counter(metrics.REQUEST_SECONDS, endpoint="/predict") == timed + 1


def test_a_refused_request_goes_to_flask_whole_and_records_nothing(served) -> None:
    app, _, flask_calls = served
    client = app.test_client()
    rows, predicted = _ring_rows(app), _counter(metrics.PREDICTIONS)
    invalid = _counter(metrics.INVALID_INPUTS, endpoint="/predict", reason="unknown_category")
    status, body, _ = _answer(client, json.dumps({**GOOD_ROW, "cut": "Superb"}).encode())
    assert status == 422 and body["field"] == "cut"
    assert flask_calls == ["/predict"]
    assert _ring_rows(app) == rows and _counter(metrics.PREDICTIONS) == predicted
    assert _counter(metrics.INVALID_INPUTS, endpoint="/predict",
                    reason="unknown_category") == invalid + 1


def test_other_routes_and_methods_are_flasks(served) -> None:
    app, _, flask_calls = served
    client = app.test_client()
    assert client.get("/predict").status_code == 405
    assert client.get("/readyz").status_code == 200
    assert flask_calls == ["/predict", "/readyz"]

"""The Flask application: predict, feedback, drift, metrics, health and the API document."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from .. import __version__
from ..contract.rings import FeedbackRows
from ..drift.probability import score
from ..errors import InvalidInputError
from ..model.feedback import FeedbackStore
from ..model.store import ModelStore
from . import metrics, predicting
from .config import ServiceConfig
from .fast_path import FastPredict
from .health import LoopHealth, liveness
from .monitor_process import read_heartbeat
from .openapi import openapi_document
from .predicting import NotReadyError
from .rings import RingWriter
from .runtime import ModelHolder, ServingModel
from .validation import RowValidator, UnknownCategoryError, extract_rows, parse_body

log = logging.getLogger("driftkeeper.service")

class ServiceState:
    """Everything one worker process holds. Created after gunicorn forks the worker.

    A worker validates, predicts, appends rows to its ring and counts requests; its own
    small loop only reloads the model and prunes the feedback store. Counting and drift
    evaluation happen in the pod's monitor process (``monitor_process.py``)."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.models = ModelHolder(ModelStore(config.model_dir))
        self.health = LoopHealth()
        self._validators: dict[tuple[int, bool], RowValidator] = {}
        self._rings: dict[str, RingWriter] = {}
        self._feedback: FeedbackStore | None = None
        self._lazy_lock = threading.Lock()  # request threads create rings and stores lazily
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        config.windows_dir.mkdir(parents=True, exist_ok=True)
        self.refresh()

    # -- background work ---------------------------------------------------------------

    def refresh(self) -> None:
        self.models.refresh()

    def tick(self) -> None:
        """One step of the worker's loop: reload a new model, prune a full feedback store.
        A failing step is logged, counted and recorded for /healthz; the next tick tries
        again."""
        clean = self._step("reload", self.refresh)
        clean = clean and self.models.failure is None
        if self._feedback is not None and self._feedback.prune_due:
            clean = self._step("prune", self._feedback.prune) and clean
        self.health.tick_done(clean)

    def _step(self, name: str, work: Any) -> bool:
        """Run one step of a tick; False (logged, counted, recorded) when it fails."""
        try:
            work()
        except Exception as exc:  # one bad step must not stop the worker's loop
            log.exception("background %s failed", name)
            self.health.failed(name, exc)
            return False
        self.health.succeeded(name)
        return True

    def start(self) -> None:
        self.health.start()
        self._thread = threading.Thread(target=self._loop, name="driftkeeper-reload",
                                        daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.config.reload_interval):
            try:
                self.tick()
            except Exception as exc:  # tick() catches its steps' errors: this is a bug
                log.exception("worker tick failed")
                self.health.failed("tick", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for ring in self._rings.values():
            ring.close()
        if self._feedback is not None:
            self._feedback.close()

    # -- request-path helpers ----------------------------------------------------------

    def validator(self, model: ServingModel, with_target: bool) -> RowValidator:
        """The version's request validator, made once; a new version's replaces the old
        ones (bounded: at most two, with and without the target)."""
        key = (model.number, with_target)
        v = self._validators.get(key)
        if v is None:
            v = RowValidator(model.bundle.schema, with_target)
            validators = {k: old for k, old in self._validators.items()
                          if k[0] == model.number}  # a request in flight keeps its own
            validators[key] = v
            self._validators = validators  # one assignment: request threads never miss
        return v

    def ring(self, name: str, columns: int) -> RingWriter:
        ring = self._rings.get(name)
        if ring is not None and ring.columns == columns:
            return ring
        with self._lazy_lock:
            ring = self._rings.get(name)
            if ring is None or ring.columns != columns:
                # One name per writer, ever: a restarted container's worker may get a
                # dead one's pid, and must not replace its uncounted ring.
                path = (self.config.windows_dir
                        / f"{name}-{os.getpid()}.{uuid.uuid4().hex[:8]}.ring")
                ring = self._rings[name] = RingWriter(path, columns, self.config.ring_capacity)
            return ring

    def feedback_store(self, model: ServingModel) -> FeedbackStore:
        if self._feedback is None:
            with self._lazy_lock:
                if self._feedback is None:
                    self._feedback = FeedbackStore(self.config.feedback_dir,
                                                   model.bundle.schema,
                                                   max_rows=self.config.feedback_max_rows)
        return self._feedback

    def current_report(self, with_histograms: bool = False) -> dict[str, Any] | None:
        """The report the evaluator published last (with the distributions it was computed
        from, if asked), or None before the first evaluation. The request path reads files
        only: it never evaluates drift."""
        try:
            doc = json.loads(self.config.report_path.read_text())
            if with_histograms:
                doc["histograms"] = json.loads(self.config.histograms_path.read_text())
        except (OSError, ValueError):
            return None
        return doc


def _json(payload: Any, status: int = 200) -> Response:
    resp = Response(json.dumps(payload), status=status, mimetype="application/json")
    rid = getattr(g, "request_id", None)
    if rid:
        resp.headers["X-Request-ID"] = rid
    return resp


def create_app(config: ServiceConfig, start_background: bool = True) -> Flask:
    """Build the app for one worker; with ``start_background`` its reload loop runs."""
    app = Flask("driftkeeper")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    state = ServiceState(config)
    app.extensions["driftkeeper"] = state
    app.wsgi_app = FastPredict(app.wsgi_app, state)  # type: ignore[method-assign]
    if start_background:
        state.start()

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        g.request_id = predicting.request_id(request.headers.get("X-Request-ID"))

    @app.after_request
    def _observe(resp: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.REQUEST_SECONDS.labels(endpoint).observe(time.perf_counter() - g.started)
        return resp

    @app.errorhandler(InvalidInputError)
    def _invalid(exc: InvalidInputError) -> Response:
        reason = exc.reason
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.INVALID_INPUTS.labels(endpoint, reason).inc()
        if isinstance(exc, UnknownCategoryError):
            metrics.UNSEEN_CATEGORIES.labels(exc.feature).inc()
        status = 400 if exc.field == "body" else 413 if reason == "too_many_rows" else 422
        return _json({**exc.to_dict(), "request_id": g.request_id}, status)

    # What an HTTP-level error is about, for the JSON body's "field".
    http_fields = {404: "path", 405: "method", 413: "body", 415: "Content-Type"}

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        if exc.code == 413:  # the route, never the raw path: labels stay bounded
            endpoint = request.url_rule.rule if request.url_rule else "unmatched"
            metrics.INVALID_INPUTS.labels(endpoint, "too_large").inc()
        body = {"error": exc.description, "status": exc.code,
                "field": http_fields.get(exc.code or 0, "request")}
        resp = _json(body, exc.code or 500)
        for key, value in exc.get_headers():  # e.g. Allow on 405 (RFC 9110)
            if key.lower() != "content-type":
                resp.headers[key] = value
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.path)
        return _json({"error": "internal error", "request_id": g.get("request_id")}, 500)

    def _model() -> ServingModel:
        model = state.models.model
        if model is None:
            raise NotReadyError()
        return model

    @app.errorhandler(NotReadyError)
    def _not_ready(exc: Exception) -> Response:
        return _json({"error": f"no model loaded from {config.model_dir}; train one with "
                      f"`driftkeeper train --output {config.model_dir}`"}, 503)

    def _rows(max_rows: int) -> tuple[list[dict[str, Any]], bool]:
        return extract_rows(parse_body(request.get_data(cache=False)), max_rows)

    @app.post("/predict")
    def predict() -> Response:
        """Reached by what the fast path hands over (fast_path.py): the same steps."""
        prediction = predicting.prepare(state, request.get_data(cache=False))
        predicting.record(state, prediction)
        return _json(predicting.answer(prediction, g.request_id))

    @app.post("/feedback")
    def feedback() -> Response:
        model = _model()
        rows, batch = _rows(config.max_rows)
        X, y = state.validator(model, with_target=True).encode(rows, batch)
        assert y is not None
        classes = model.bundle.schema.target.n_classes
        outputs = model.predict(X)
        scored = score(classes, y, outputs)
        predictions = scored.summary
        now = time.time()
        layout = FeedbackRows(X.shape[1], classes)
        state.ring(layout.prefix, layout.width).append(
            layout.pack(predicting.timestamps(now, len(X)), model.number, scored.residual,
                        predictions, X, scored.outcome, y, outputs))
        store = state.feedback_store(model)
        # Answered only once the rows are on disk (a group commit shares the fsync with
        # concurrent requests); a full store is pruned by the background loop, not here.
        store.commit(store.append(rows, model.version, predictions, prune=False))
        metrics.FEEDBACK.inc(len(X))
        return _json({"accepted": len(X), "model_version": model.version,
                      "request_id": g.request_id})

    @app.get("/drift")
    def drift() -> Response:
        detail = request.args.get("histograms", "").lower() in ("1", "true", "yes")
        report = state.current_report(with_histograms=detail)
        if report is None:
            if state.models.model is None:
                raise NotReadyError()
            beat = read_heartbeat(config)
            why = ("the monitor process has not started yet" if beat is None else
                   "the first evaluation comes within the policy's interval of the first "
                   "rows")
            return _json({"error": f"no drift report yet: {why}", "monitor": beat}, 503)
        return _json(report)

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(metrics.render(config.report_path, config.tally_path),
                        mimetype="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/reference")
    def reference() -> Response:
        """The serving version's reference profile (bins, level counts, held-out residuals,
        null tables): what a fleet-level evaluator needs to judge summed counters."""
        model = _model()
        resp = Response(b'{"model_version":"' + model.version.encode() + b'","profile":'
                        + model.reference + b"}", mimetype="application/json")
        resp.headers["ETag"] = f'"{model.version}"'
        return resp

    @app.get("/reference/predictor")
    def reference_predictor() -> Response:
        """The serving version as exported arrays (``predictor.npz``, no pickle): lets the
        operator measure each drifted feature's impact on the fleet's predictions."""
        model = _model()
        path = model.bundle.predictor_path
        if path is None:
            return _json({"error": f"model {model.version} is not exported to arrays "
                                   "(it is served from its pickle)", "field": "model"}, 404)
        resp = Response(path.read_bytes(), mimetype="application/octet-stream")
        resp.headers["ETag"] = f'"{model.version}"'
        resp.headers["X-Model-Version"] = model.version
        return resp

    @app.get("/schema")
    def schema() -> Response:
        """The serving version's feature schema: lets a client (the simulator) build rows
        and labels for whatever table the model was trained on."""
        model = _model()
        return _json({"model_version": model.version,
                      "schema": model.bundle.schema.to_dict()})

    @app.get("/healthz")
    def healthz() -> Response:
        """Liveness of the worker that answers: can it serve, does its loop work (see
        serving/health.py); 503 with every check's detail when not. The monitor's last
        heartbeat is shown too, but never fails a worker: the monitor has its own."""
        ok, detail = liveness(state.models, state.health)
        return _json({**detail, "pid": os.getpid(), "monitor": read_heartbeat(config)},
                     200 if ok else 503)

    @app.get("/readyz")
    def readyz() -> Response:
        model = state.models.model
        if model is None:
            failure = state.models.failure
            reason = (f"model {failure.version} failed to load: {failure.error}" if failure
                      else "no model loaded")
            return _json({"status": "not ready", "reason": reason}, 503)
        return _json({"status": "ready", "model_version": model.version})

    @app.get("/")
    def index() -> Response:
        model = state.models.model
        return _json({
            "service": "driftkeeper", "version": __version__,
            "model_version": model.version if model else None,
            "endpoints": {
                "predict": "/predict (POST) one row, or {\"instances\": [rows]}",
                "feedback": "/feedback (POST) rows with the actual value (or class) of "
                            f"{model.bundle.schema.target.name if model else 'the target'}",
                "drift": "/drift (GET) the latest drift report; ?histograms=1 adds the "
                         "reference and current distributions",
                "metrics": "/metrics (GET) Prometheus metrics",
                "reference": "/reference (GET) the serving version's reference profile",
                "schema": "/schema (GET) the serving version's feature schema and target",
                "healthz": "/healthz (GET) liveness: this worker can serve and its "
                           "background loop works (503 with the failing checks)",
                "readyz": "/readyz (GET) readiness: a model is loaded",
                "openapi": "/openapi.json (GET) this API as OpenAPI 3",
            },
        })

    @app.get("/openapi.json")
    def openapi() -> Response:
        model = state.models.model
        return _json(openapi_document(model.bundle.schema if model else None, config.max_rows))

    return app


def state_of(app: Flask) -> ServiceState:
    return app.extensions["driftkeeper"]



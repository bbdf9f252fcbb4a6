"""One ``/predict``, in the steps both of its paths run: the Flask route (``app.py``) and
the lean WSGI path for well-formed requests (``fast_path.py``).

``prepare`` validates and predicts and has no side effect, so a request it refuses can be
handed to Flask whole, which refuses it again with the usual JSON error and metrics;
``record`` is the monitoring (the worker's ring, the prediction counter), done exactly once
for every answered row; ``answer`` is the response body.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..contract.rings import InputRows
from ..drift.probability import summaries
from ..schema import Target
from . import metrics
from .validation import extract_rows, parse_body

if TYPE_CHECKING:
    from .app import ServiceState
    from .runtime import ServingModel

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id(header: str | None) -> str:
    """The client's X-Request-ID when it is a safe token, else a new one."""
    return header if header and _REQUEST_ID.match(header) else uuid.uuid4().hex


@dataclass(frozen=True)
class Prediction:
    model: ServingModel
    X: np.ndarray  # the encoded rows
    predictions: np.ndarray  # the model's outputs (rows, or rows x K class probabilities)
    batch: bool  # {"instances": [...]} rather than one row


class NotReadyError(Exception):
    """No model is loaded yet."""


def prepare(state: ServiceState, body: bytes) -> Prediction:
    """Validate and predict; no side effect (raises ``InvalidInputError`` or
    ``NotReadyError`` for the caller to answer)."""
    model = state.models.model
    if model is None:
        raise NotReadyError()
    rows, batch = extract_rows(parse_body(body), state.config.max_rows)
    X, _ = state.validator(model, with_target=False).encode(rows, batch)
    return Prediction(model, X, model.predict(X), batch)


def timestamps(now: float, n: int) -> np.ndarray:
    """Distinct, ordered stamps for the rows of one request (window selection needs order)."""
    return now + np.arange(n) * 1e-6


def record(state: ServiceState, p: Prediction) -> None:
    """The rows go to this worker's ring (the monitor counts them from there) and the
    prediction counter; the request path does nothing else for monitoring."""
    layout = InputRows(p.X.shape[1], p.model.bundle.schema.target.n_classes)
    state.ring(layout.prefix, layout.width).append(
        layout.pack(timestamps(time.time(), len(p.X)), p.X, p.model.number,
                    summaries(p.predictions), p.predictions))
    metrics.PREDICTIONS.inc(len(p.X))


def answer(p: Prediction, rid: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model_version": p.model.version, "request_id": rid}
    body.update(predictions_body(p.model.bundle.schema.target, p.predictions, p.batch))
    return body


def predictions_body(target: Target, p: np.ndarray, batch: bool) -> dict[str, Any]:
    """The response's predictions: a regression's numbers; a classifier's labels (binary:
    classes[1] when its probability is over 0.5; else the most probable class) with the
    probability of each class."""
    if not target.is_classification:
        return {"predictions": p.tolist()} if batch else {"prediction": float(p[0])}
    if target.n_classes >= 3:
        classes = target.classes
        labels = [classes[k] for k in np.argmax(p, axis=1).tolist()]
        probabilities = [dict(zip(classes, row, strict=True)) for row in p.tolist()]
    else:
        negative, positive = target.classes
        labels = [positive if x > 0.5 else negative for x in p.tolist()]
        probabilities = [{negative: 1.0 - x, positive: x} for x in p.tolist()]
    if batch:
        return {"predictions": labels, "probabilities": probabilities}
    return {"prediction": labels[0], "probabilities": probabilities[0]}

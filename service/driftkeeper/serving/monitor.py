"""What the pod's monitor evaluates: every worker's rows against the serving reference.

The evaluator merges every worker's ring (mergeable windows), evaluates against the serving
model's reference profile, and publishes the report by atomic rename, so ``GET /drift`` and
``/metrics`` in any worker read the same verdict. It runs in the monitor process
(``monitor_process.py``), never in a request-serving worker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..contract.rings import FeedbackRows, InputRows
from ..drift.judge import Windows, evaluate_all
from ..drift.performance import estimate_window
from ..drift.report import DriftReport
from ..drift.segments import SegmentSums, segment_sums
from ..drift.windows import (
    DataWindow,
    ResidualWindow,
    data_window,
    prediction_window,
    residual_window,
)
from ..files import write_atomic
from ..policy import DriftPolicy, WindowSettings
from .rings import read_ring, read_rings, writer_alive
from .runtime import ServingModel

log = logging.getLogger("driftkeeper.monitor")

STAMP = 0  # both layouts (contract/rings.py) start with the row's time stamp


def _select(rings: list[np.ndarray], window: WindowSettings, now: float,
            keep: np.ndarray | None = None) -> list[np.ndarray]:
    """Each ring's rows that belong to the window: the ``size`` newest rows of all rings
    together, none older than ``max_age``. ``keep`` optionally pre-filters rows."""
    if keep is not None:
        rings = [r[keep_rows] for r, keep_rows in zip(rings, keep, strict=True)]
    oldest = now - window.max_age
    rings = [r[r[:, STAMP] >= oldest] for r in rings]
    stamps = np.concatenate([r[:, STAMP] for r in rings]) if rings else np.empty(0)
    if len(stamps) > window.size:
        # Exactly ``size`` rows, also when workers stamped rows alike at the cutoff.
        newest = np.zeros(len(stamps), dtype=bool)
        newest[np.argpartition(stamps, len(stamps) - window.size)[-window.size:]] = True
        bounds = np.cumsum([0, *(len(r) for r in rings)])
        rings = [r[newest[lo:hi]] for r, lo, hi in zip(rings, bounds[:-1], bounds[1:],
                                                        strict=True)]
    return rings


def evaluate(model: ServingModel, policy: DriftPolicy, windows_dir: Path,
             now: float | None = None) -> DriftReport:
    """Evaluate the merged windows of all workers against the model's reference."""
    return evaluate_windows(model, policy, windows_dir, now)[0]


def evaluate_windows(model: ServingModel, policy: DriftPolicy, windows_dir: Path,
                     now: float | None = None
                     ) -> tuple[DriftReport, DataWindow, ResidualWindow]:
    """The report plus the merged windows it was computed from."""
    now = time.time() if now is None else now
    profile = model.bundle.profile
    layout = InputRows(len(profile.schema.features))
    # A window is the newest `size` rows of all workers: each ring's newest `size` rows
    # hold them (rings are in time order, and newer rows are the serving version's).
    rings = [r for r in read_rings(windows_dir, layout.prefix, policy.data_window.size)
             if r.shape[1] == layout.width]  # not another schema's rings
    inputs = _select(rings, policy.data_window, now)
    data = DataWindow({}, 0)
    parts = [data_window(profile, layout.features(r)) for r in inputs if len(r)]
    if parts:
        data = parts[0]
        for p in parts[1:]:
            data = data + p  # mergeable: per-worker windows add up
    else:
        data = data_window(profile, layout.features(layout.empty()))

    # Predictions of the serving version only: an older model's are not this one's drift.
    served = _select(rings, policy.data_window, now,
                     keep=[layout.versions(r) == model.number for r in rings])
    served_rows = np.concatenate(served) if served else layout.empty()
    estimates = model.estimate_squared_errors(layout.features(served_rows),
                                              layout.predictions(served_rows))

    labels = FeedbackRows(layout.n_features)
    feedback = [r for r in read_rings(windows_dir, labels.prefix, policy.concept_window.size)
                if r.shape[1] == labels.width]
    current = [labels.versions(r) == model.number for r in feedback]
    labelled = _select(feedback, policy.concept_window, now, keep=current)
    residuals = residual_window(profile, np.empty(0))
    for r in labelled:
        if len(r):
            residuals = residuals + residual_window(profile, labels.residuals(r))

    def segments() -> SegmentSums | None:
        if profile.segments is None:
            return None
        rows = np.concatenate(labelled) if labelled else labels.empty()
        return segment_sums(profile.segments.layout, labels.features(rows),
                            labels.residuals(rows), labels.predictions(rows))

    windows = Windows(data, prediction_window(profile, layout.predictions(served_rows)),
                      None if estimates is None else estimate_window(estimates),
                      residuals, segments)
    report = evaluate_all(profile, windows, policy.monitor, model.version, now,
                          predict=model.predict)
    return report, data, residuals


def report_document(report: DriftReport, policy: DriftPolicy) -> dict[str, Any]:
    """The published JSON: the report plus the windows and policy it was evaluated under."""
    doc = report.to_dict()
    doc["policy"] = policy.name
    doc["windows"] = {
        "data": {"size": policy.data_window.size, "min_samples": policy.data_window.min_samples,
                 "max_age_seconds": policy.data_window.max_age},
        "concept": {"size": policy.concept_window.size,
                    "min_samples": policy.concept_window.min_samples,
                    "max_age_seconds": policy.concept_window.max_age},
    }
    return doc


def publish(doc: dict[str, Any], path: Path) -> None:
    """Atomically (readers see the previous report or this one); not fsynced: the report
    is derived state, evaluated again within one interval after a crash."""
    write_atomic(path, json.dumps(doc), durable=False)


def prune_rings(windows_dir: Path, horizon: float, now: float) -> None:
    """Delete rings of dead workers once all their rows are older than ``horizon`` seconds."""
    for path in windows_dir.glob("*.ring"):
        if writer_alive(path):
            continue
        rows = read_ring(path)
        if not rows.size or rows[:, STAMP].max() < now - horizon:
            with contextlib.suppress(OSError):
                path.unlink()

"""What the pod's monitor evaluates: every worker's rows against the serving reference.

The evaluator merges every worker's rows (mergeable windows), as the monitor's copy of the
rings holds them (``recent.py``), evaluates them against the serving model's reference
profile, and publishes the report by atomic rename, so ``GET /drift`` and ``/metrics`` in
any worker read the same verdict. It runs in the monitor process (``monitor_process.py``),
never in a request-serving worker.
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
from ..drift.probability import segment_scales
from ..drift.report import DriftReport
from ..drift.segments import SegmentSums, sums_by_segment
from ..drift.windows import (
    DataWindow,
    ResidualWindow,
    class_prediction_windows,
    data_window,
    prediction_window,
    residual_window,
)
from ..files import write_atomic
from ..policy import DriftPolicy, WindowSettings
from .recent import CORRECT, ESTIMATE, LOG_LOSS, SEGMENTS, Derivation, RecentRows
from .rings import read_ring, ring_head, writer_alive
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


def window_sizes(policy: DriftPolicy) -> dict[str, int]:
    """Rows the monitor keeps of each ring: a window is the newest ``size`` rows of all
    workers together, so each ring's newest ``size`` rows hold it."""
    return {InputRows.prefix: policy.data_window.size,
            FeedbackRows.prefix: policy.concept_window.size}


def derivation(model: ServingModel) -> Derivation:
    """What the serving version derives per row (its loss model's estimates, segments)."""
    return Derivation(model.bundle.profile, model.version, model.number,
                      model.estimate_squared_errors)


def evaluate(model: ServingModel, policy: DriftPolicy, windows_dir: Path,
             now: float | None = None) -> DriftReport:
    """Evaluate the rings as they are now, from a fresh copy (tools and tests; the
    monitor keeps its copy from tick to tick)."""
    recent = RecentRows()
    # Nothing to count here: start every ring at its head, so only a window's rows are read.
    heads = {}
    for path in windows_dir.glob("*.ring"):
        with contextlib.suppress(OSError):  # pruned meanwhile
            heads[path.name] = [path.stat().st_ino, ring_head(path)]
    for _ in recent.update(windows_dir, derivation(model), heads, window_sizes(policy)):
        pass
    return evaluate_windows(model, policy, recent, now)[0]


def evaluate_windows(model: ServingModel, policy: DriftPolicy, recent: RecentRows,
                     now: float | None = None
                     ) -> tuple[DriftReport, DataWindow, ResidualWindow]:
    """The report plus the merged windows it was computed from.

    The windows are cut from the monitor's copy of the rings' newest rows, whose derived
    columns (estimates, log losses, segments) were computed once, when they were read."""
    now = time.time() if now is None else now
    profile = model.bundle.profile
    derive = derivation(model)
    layout = derive.inputs
    rings = recent.held(InputRows.prefix)
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
    served = _stack(_select(rings, policy.data_window, now,
                            keep=[layout.versions(r) == model.number for r in rings]),
                    derive.derive_inputs(layout.empty()))
    estimates = (served[:, layout.width + ESTIMATE] if model.estimates_losses else None)

    labels = derive.feedback
    feedback = recent.held(FeedbackRows.prefix)
    labelled = _stack(_select(feedback, policy.concept_window, now,
                              keep=[labels.versions(r) == model.number for r in feedback]),
                      derive.derive_feedback(labels.empty()))
    extra = labelled[:, labels.width:]
    residuals = residual_window(profile, labels.residuals(labelled), extra[:, LOG_LOSS],
                                extra[:, CORRECT], labels.labels(labelled),
                                labels.probabilities(labelled))

    def segments() -> SegmentSums | None:
        if profile.segments is None:
            return None
        return sums_by_segment(profile.segments.layout, extra[:, SEGMENTS:],
                               labels.residuals(labelled),
                               segment_scales(profile.n_classes, labels.predictions(labelled)))

    windows = Windows(data, prediction_window(profile, layout.predictions(served)),
                      None if estimates is None else estimate_window(estimates),
                      residuals, segments,
                      class_prediction_windows(profile, layout.probabilities(served)))
    report = evaluate_all(profile, windows, policy.monitor, model.version, now,
                          predict=model.monitored)
    return report, data, residuals


def _stack(parts: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
    """The rings' selected rows as one array (``empty`` gives the width when none)."""
    parts = [p for p in parts if len(p)]
    return np.concatenate(parts) if parts else empty


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


MAX_DEAD_RINGS = 16
"""Dead workers' rings a restarted serving container keeps for the monitor to finish (a
crash-looping container must not fill the pod's state volume)."""


def drop_counted_rings(windows_dir: Path, counted: dict[str, list[int]],
                       keep: int = MAX_DEAD_RINGS) -> list[str]:
    """When the serving container restarts beside a running monitor (``--monitor
    external``): delete the dead workers' rings whose every row the monitor has counted
    (``counted``: its tally's positions, ring -> [inode, head]), keep the rest for it to
    read (the rows written just before a crash), at most ``keep`` of them, the newest.
    Returns the names deleted."""
    counted_rings, unread = [], []
    for path in windows_dir.glob("*.ring"):
        try:
            if writer_alive(path):
                continue
            stat, head = path.stat(), ring_head(path)
        except OSError:
            continue
        if counted.get(path.name) == [stat.st_ino, head]:
            counted_rings.append(path)
        else:
            unread.append((stat.st_mtime, path))
    unread.sort()
    too_many = [path for _, path in unread[:max(len(unread) - keep, 0)]]
    for path in too_many:
        log.warning("dropping %s, whose rows the monitor has not all counted: over %d "
                    "dead workers' rings", path.name, keep)
    deleted = []
    for path in counted_rings + too_many:
        with contextlib.suppress(OSError):
            path.unlink()
            deleted.append(path.name)
    return deleted


def prune_rings(windows_dir: Path, horizon: float, now: float) -> None:
    """Delete rings of dead workers once all their rows are older than ``horizon`` seconds."""
    for path in windows_dir.glob("*.ring"):
        if writer_alive(path):
            continue
        newest = read_ring(path, 1)  # rows are in time order: the newest is the last
        if not newest.size or newest[-1, STAMP] < now - horizon:
            with contextlib.suppress(OSError):
                path.unlink()

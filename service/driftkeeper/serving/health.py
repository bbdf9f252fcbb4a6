"""Whether a worker can serve and the monitor can monitor: liveness and readiness.

Liveness must fail only for what a restart would fix, never for a slow first model or a
drifting window: the kubelet restarts a container whose liveness probe keeps failing. So a
worker's ``/healthz`` fails when it cannot serve and will not recover by itself:

* its model: no model loaded while the current version has kept failing to load for
  ``LOAD_GRACE`` seconds (a transient failure is retried with backoff meanwhile);
* its background loop (reloading the model, pruning feedback): no tick completed without
  an error for ``STALE_AFTER`` seconds (it keeps failing, or it is stuck).

The monitor process (counting, evaluating) has its own loop record, the same rule, and its
own liveness (``monitor_process.py``): monitoring that fails restarts the monitor, never
the workers that serve.

Readiness (``/readyz``) fails without a model. Each answer lists every check, and every
failing step of the loop is counted in ``driftkeeper_background_errors_total{loop}``.
gunicorn hands a probe to whichever worker accepts it, so a probe judges one worker; one
that stays unhealthy fails enough probes to have the container restarted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import metrics
from .runtime import ModelHolder

LOAD_GRACE = 120.0  # seconds a model may keep failing to load before the worker is unhealthy
STALE_AFTER = 300.0  # seconds without a clean background tick before it is
STEPS = ("reload", "prune", "count", "evaluate", "tick")


@dataclass
class _Step:
    failures: int = 0  # in a row
    last_error: str | None = None


@dataclass
class LoopHealth:
    """The background loop's record, written by its thread, read by request threads."""

    clock: Callable[[], float] = time.monotonic
    last_clean_gauge: Any = metrics.BACKGROUND_LAST_CLEAN  # where a clean tick is shown
    running: bool = False
    started: float = 0.0
    last_clean: float | None = None  # the last tick with no failing step
    steps: dict[str, _Step] = field(default_factory=lambda: {s: _Step() for s in STEPS})
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def start(self) -> None:
        self.running, self.started = True, self.clock()

    def failed(self, step: str, exc: BaseException) -> None:
        metrics.BACKGROUND_ERRORS.labels(step).inc()
        with self._lock:
            record = self.steps[step]
            record.failures += 1
            record.last_error = f"{type(exc).__name__}: {exc}"[:500]

    def succeeded(self, step: str) -> None:
        with self._lock:
            self.steps[step].failures = 0

    def tick_done(self, clean: bool) -> None:
        if clean:
            self.last_clean = self.clock()
            self.last_clean_gauge.set(time.time())

    def check(self) -> dict[str, Any]:
        now = self.clock()
        since = self.last_clean if self.last_clean is not None else self.started
        stale = now - since
        with self._lock:
            failing = {name: {"failures_in_a_row": s.failures, "last_error": s.last_error}
                       for name, s in self.steps.items() if s.failures}
        ok = not self.running or stale < STALE_AFTER
        return {"ok": ok, "running": self.running,
                "seconds_since_clean_tick": round(stale, 1) if self.running else None,
                "failing": failing}


def model_check(models: ModelHolder) -> dict[str, Any]:
    """Serving, or failing to load for how long."""
    failure = models.failure
    loaded = models.model.version if models.model else None
    detail: dict[str, Any] = {"ok": True, "serving": loaded}
    if failure is not None:
        failing_for = models.clock() - failure.since
        detail.update(loading=failure.version, load_attempts=failure.attempts,
                      load_error=failure.error, failing_for_seconds=round(failing_for, 1))
        detail["ok"] = loaded is not None or failing_for < LOAD_GRACE
    return detail


def liveness(models: ModelHolder, loop: LoopHealth) -> tuple[bool, dict[str, Any]]:
    checks = {"model": model_check(models), "background": loop.check()}
    ok = all(c["ok"] for c in checks.values())
    return ok, {"status": "ok" if ok else "unhealthy", "checks": checks}

"""Send a scenario's traffic to a running service: predictions now, labels later.

The service says what it serves (``GET /schema``); rows come from ``--data`` loaded through
that schema, or from the bundled diamonds table when the schema's columns are all in it, and
labels go back under the schema's target name. Rate-limited on a fixed schedule (no bursts
after a slow request), deterministic for a seed, and it says clearly when the service cannot
be reached.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import requests

from ..data import bundled_diamonds, load_table
from ..errors import SimulationError
from ..schema import FeatureSchema
from .catalog import ONSET
from .scenarios import SCENARIOS, Batch
from .world import Overrides, World

MAX_FEEDBACK_BATCH = 500
MAX_CONSECUTIVE_ERRORS = 20

__all__ = ["Progress", "SimulationConfig", "SimulationError", "simulate"]


@dataclass(frozen=True)
class SimulationConfig:
    url: str
    scenario: str
    rate: float = 50.0  # prediction requests per second
    duration: float | None = None  # seconds; or
    requests: int | None = None  # a number of prediction requests
    label_delay: float = 2.0  # seconds between a prediction and its label
    batch: int = 1  # rows per prediction request
    seed: int = 0
    data: str | None = None  # a CSV with the served model's columns
    overrides: Overrides = field(default_factory=Overrides)  # columns chosen by name
    shift_after: float | None = None  # seconds of normal traffic first (default: 30%)

    def total_requests(self) -> int:
        if self.requests is not None:
            return self.requests
        return max(round((self.duration or 60.0) * self.rate), 1)

    def progress(self, i: int, total: int) -> float:
        """Request ``i``'s place in the scenario (0 to 1; shifts start at ONSET). With
        ``shift_after``, the normal part lasts that many seconds and the rest of the run
        plays the rest of the scenario: a long run (a demo pod) can shift early."""
        if self.shift_after is None:
            return i / max(total - 1, 1)
        shift_at = min(round(self.shift_after * self.rate), total - 1)
        if i < shift_at:
            return ONSET * i / shift_at
        return ONSET + (1 - ONSET) * (i - shift_at) / max(total - 1 - shift_at, 1)


@dataclass
class Progress:
    scenario: str
    total: int
    sent: int = 0
    rows: int = 0
    labelled: int = 0
    errors: int = 0
    phase: str = "starting"
    started: float = field(default_factory=time.monotonic)
    last_error: str | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self) -> str:
        return (f"[{self.scenario}] {self.sent}/{self.total} requests, {self.rows} rows, "
                f"{self.labelled} labelled, {self.errors} errors, {self.elapsed:.0f}s - "
                f"{self.phase}")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.astype({c: str for c in frame.columns if isinstance(
        frame[c].dtype, pd.CategoricalDtype)}).to_dict("records")


def check_service(url: str, session: requests.Session) -> None:
    try:
        resp = session.get(url.rstrip("/") + "/readyz", timeout=5)
    except requests.RequestException as exc:
        raise SimulationError(f"cannot reach the service at {url} ({exc.__class__.__name__}); "
                              f"is `driftkeeper serve` running there?") from None
    if resp.status_code != 200:
        raise SimulationError(f"the service at {url} is not ready: {resp.text[:200]}")


def fetch_schema(url: str, session: requests.Session) -> FeatureSchema:
    """The serving version's feature schema, from ``GET /schema``."""
    try:
        resp = session.get(url + "/schema", timeout=10)
        resp.raise_for_status()
        return FeatureSchema.from_dict(resp.json()["schema"])
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        raise SimulationError(f"cannot read the served model's schema from {url}/schema "
                              f"({exc.__class__.__name__}: {str(exc)[:200]})") from None


def load_world_table(schema: FeatureSchema, data: str | None) -> pd.DataFrame:
    """The rows to sample: ``data`` through the schema, else the bundled diamonds table when
    it has every column the schema names."""
    if data is not None:
        return load_table(data, schema)
    bundled = bundled_diamonds()
    columns = set(pd.read_csv(bundled, nrows=0).columns)
    if set(schema.names) | {schema.target.name} <= columns:
        return load_table(bundled, schema)
    raise SimulationError(f"the service serves a model of {schema.target.name}; pass --data "
                          f"CSV with its columns ({', '.join(schema.names)}, "
                          f"{schema.target.name})")


def simulate(config: SimulationConfig, on_progress: Callable[[Progress], None] | None = None,
             stop: threading.Event | None = None, progress_every: float = 2.0) -> Progress:
    """Run a scenario to completion (or until ``stop``); returns the final progress."""
    if config.scenario not in SCENARIOS:
        raise SimulationError(f"unknown scenario {config.scenario!r}; choose one of "
                              f"{', '.join(SCENARIOS)}")
    if config.rate <= 0 or config.batch < 1 or config.label_delay < 0:
        raise SimulationError("rate must be > 0, batch >= 1 and label-delay >= 0")
    scenario = SCENARIOS[config.scenario]
    rng = np.random.default_rng(config.seed)
    stop = stop or threading.Event()
    base = config.url.rstrip("/")
    session = requests.Session()
    check_service(base, session)
    schema = fetch_schema(base, session)
    world = World.for_schema(schema, load_world_table(schema, config.data), config.overrides)
    world.require(scenario.name, scenario.needs)
    total = config.total_requests()
    progress = Progress(config.scenario, total)
    pending: collections.deque[tuple[float, list[dict[str, Any]]]] = collections.deque()
    consecutive_errors = 0
    next_report = 0.0
    start = time.monotonic()

    def post(path: str, body: Any) -> bool:
        nonlocal consecutive_errors
        try:
            resp = session.post(base + path, json=body, timeout=10)
            ok = resp.status_code == 200
            if not ok:
                progress.last_error = f"{path}: HTTP {resp.status_code} {resp.text[:200]}"
        except requests.RequestException as exc:
            ok, progress.last_error = False, f"{path}: {exc.__class__.__name__}"
        if ok:
            consecutive_errors = 0
            return True
        progress.errors += 1
        consecutive_errors += 1
        if consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
            raise SimulationError(f"{consecutive_errors} requests failed in a row; last: "
                                  f"{progress.last_error}")
        return False

    def flush_labels(now: float, force: bool = False) -> None:
        due: list[dict[str, Any]] = []
        while pending and (force or pending[0][0] <= now):
            due.extend(pending.popleft()[1])
        for i in range(0, len(due), MAX_FEEDBACK_BATCH):
            chunk = due[i:i + MAX_FEEDBACK_BATCH]
            if post("/feedback", {"instances": chunk}):
                progress.labelled += len(chunk)

    for i in range(total):
        if stop.is_set():
            break
        wait = start + i / config.rate - time.monotonic()
        if wait > 0 and stop.wait(wait):
            break
        batch: Batch = scenario.generate(rng, world, config.progress(i, total), config.batch)
        progress.phase = batch.phase
        rows = _records(batch.rows)
        body: Any = rows[0] if config.batch == 1 else {"instances": rows}
        if post("/predict", body):
            progress.sent += 1
            progress.rows += len(rows)
            labelled = [{**row, world.target: world.label(y)} for row, y in zip(rows, batch.labels,
                                                                          strict=True)]
            pending.append((time.monotonic() + config.label_delay, labelled))
        flush_labels(time.monotonic())
        if on_progress and time.monotonic() >= next_report:
            on_progress(progress)
            next_report = time.monotonic() + progress_every
    # Labels still in flight arrive after their delay, unless we were told to stop.
    while pending and not stop.is_set():
        stop.wait(max(pending[0][0] - time.monotonic(), 0))
        flush_labels(time.monotonic())
    if on_progress:
        on_progress(progress)
    return progress

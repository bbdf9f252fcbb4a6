"""Honest health: a version that fails to load is retried with backoff (and heals), a worker
that cannot serve fails /healthz with the reason, readiness fails without a model, and a
background loop that keeps failing shows in a metric and in /healthz's details."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from driftkeeper.model.store import PREDICTOR_FILE, ModelStore
from driftkeeper.model.train import TrainingConfig, train
from driftkeeper.serving import health, monitor, monitor_process
from driftkeeper.serving.app import create_app, state_of
from driftkeeper.serving.config import ServiceConfig
from driftkeeper.serving.monitor_process import Monitor
from driftkeeper.serving.runtime import RETRY_FIRST, RETRY_MAX, ModelHolder


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def broken_v2(model_dir: Path) -> tuple[Path, Path]:
    """A v2 promoted while one of its files is not there (yet): it cannot load."""
    train(model_dir, TrainingConfig(seed=5, calibration_trials=1000))
    assert ModelStore(model_dir).current_version() == "v2"
    predictor = model_dir / "versions" / "v2" / PREDICTOR_FILE
    aside = model_dir / "predictor.aside"
    shutil.move(predictor, aside)
    return predictor, aside


def test_a_failed_load_is_retried_with_backoff_and_heals(model_dir: Path, broken_v2) -> None:
    predictor, aside = broken_v2
    clock = Clock()
    holder = ModelHolder(ModelStore(model_dir), clock=clock)
    assert holder.refresh() is False and holder.model is None
    assert holder.failure.version == "v2" and holder.failure.attempts == 1
    assert "corrupt" in holder.failure.error or "No such file" in holder.failure.error
    waits = [holder.failure.retry_at - clock.now]
    for _ in range(8):  # each retry only once its wait is over, and the wait doubles
        before = holder.failure.attempts
        clock.now = holder.failure.retry_at - 0.01
        holder.refresh()
        assert holder.failure.attempts == before  # too early: not tried
        clock.now = holder.failure.retry_at
        holder.refresh()
        assert holder.failure.attempts == before + 1
        waits.append(holder.failure.retry_at - clock.now)
    assert waits[:4] == pytest.approx([RETRY_FIRST, 2 * RETRY_FIRST, 4 * RETRY_FIRST,
                                       8 * RETRY_FIRST])
    assert waits[-1] == RETRY_MAX
    shutil.move(aside, predictor)  # the file arrives: the next try loads it
    clock.now = holder.failure.retry_at
    assert holder.refresh() is True
    assert holder.model.version == "v2" and holder.failure is None


def _app(model_dir: Path, tmp_path: Path):
    config = ServiceConfig(model_dir=model_dir, state_dir=tmp_path / "state")
    config.windows_dir.mkdir(parents=True, exist_ok=True)
    return create_app(config, start_background=False)


def test_a_worker_that_cannot_load_its_model_fails_liveness_after_a_grace(
        model_dir: Path, tmp_path: Path, broken_v2) -> None:
    app = _app(model_dir, tmp_path)
    client = app.test_client()
    state = state_of(app)
    try:
        clock = Clock()
        state.models.clock = clock
        state.models.failure = None
        state.refresh()  # fails: no model at all
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "v2 failed to load" in ready.get_json()["reason"]
        alive = client.get("/healthz")
        assert alive.status_code == 200  # within the grace: retries may heal it
        check = alive.get_json()["checks"]["model"]
        assert check["loading"] == "v2" and check["load_attempts"] == 1
        clock.now += health.LOAD_GRACE + 1
        dead = client.get("/healthz")
        assert dead.status_code == 503
        body = dead.get_json()
        assert body["status"] == "unhealthy" and body["checks"]["model"]["ok"] is False
        assert body["checks"]["model"]["load_error"]
    finally:
        state.stop()


def test_a_workers_loop_that_keeps_failing_shows_and_then_fails_liveness(
        model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    app = _app(model_dir, tmp_path)
    client = app.test_client()
    state = state_of(app)
    clock = Clock()
    state.health.clock = clock
    state.health.start()  # as the worker's loop does
    try:
        def broken() -> bool:
            raise OSError("disk full")

        monkeypatch.setattr(state.models, "refresh", broken)
        for _ in range(3):
            state.tick()
        body = client.get("/healthz").get_json()
        assert body["checks"]["background"]["failing"]["reload"] == {
            "failures_in_a_row": 3, "last_error": "OSError: disk full"}
        metrics = client.get("/metrics").get_data(as_text=True)
        assert 'driftkeeper_background_errors_total{loop="reload"} 3.0' in metrics
        assert client.get("/healthz").status_code == 200  # not yet stale
        clock.now += health.STALE_AFTER + 1
        assert client.get("/healthz").status_code == 503
        monkeypatch.undo()
        state.tick()  # a clean tick: healthy again
        healed = client.get("/healthz")
        assert healed.status_code == 200 and healed.get_json()["checks"]["background"][
            "failing"] == {}
        assert "driftkeeper_background_last_clean_tick_timestamp_seconds" in client.get(
            "/metrics").get_data(as_text=True)
    finally:
        state.stop()


def _probe(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_monitor_that_keeps_failing_fails_its_own_liveness_never_the_workers(
        model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """The monitor's failures show in its heartbeat, in the workers' /healthz (as
    information), in the metrics, and fail the monitor's own probe once stale; the
    workers that serve stay healthy."""
    app = _app(model_dir, tmp_path)
    client = app.test_client()
    state = state_of(app)
    mon = Monitor(state.config)
    clock = Clock()
    mon.health.clock = clock
    mon.health.start()
    server = monitor_process._health_server(mon, "127.0.0.1", 0)
    port = server.server_address[1]
    try:
        def broken(*args, **kwargs):
            raise OSError("disk full")

        monkeypatch.setattr(monitor, "evaluate_windows", broken)
        for i in range(3):
            mon.tick(now=2000.0 + i * 100)
        shown = client.get("/healthz")
        assert shown.status_code == 200
        assert shown.get_json()["monitor"]["background"]["failing"]["evaluate"] == {
            "failures_in_a_row": 3, "last_error": "OSError: disk full"}
        metrics = client.get("/metrics").get_data(as_text=True)
        assert 'driftkeeper_background_errors_total{loop="evaluate"} 3.0' in metrics
        assert _probe(port)[0] == 200  # not yet stale
        clock.now += health.STALE_AFTER + 1
        status, body = _probe(port)
        assert status == 503 and body["ok"] is False
        assert client.get("/healthz").status_code == 200  # serving is not monitoring
        monkeypatch.undo()
        mon.tick(now=3000.0)  # a clean tick: healthy again
        status, body = _probe(port)
        assert status == 200 and body["background"]["failing"] == {}
        assert body["serving"] == "v1"
        assert "driftkeeper_monitor_last_clean_tick_timestamp_seconds" in client.get(
            "/metrics").get_data(as_text=True)
    finally:
        server.shutdown()
        server.server_close()
        state.stop()

"""The pod's monitor process: counting, evaluating and publishing, off the request path.

Request-serving workers only validate, predict, append rows to their rings and count
requests. This process reads every worker's ring, keeps the window counters (the tally the
operator sums over replicas), evaluates the windows against the serving version's reference
when the policy says so, and publishes the report; workers serve ``/drift`` and ``/metrics``
from those files. Its CPU is its own, so an evaluation never holds a worker's GIL while
requests wait.

One monitor per state directory (an exclusive ``flock``). After every tick it writes a
heartbeat (``monitor.json``); ``driftkeeper serve`` restarts a monitor that exits or whose
heartbeat goes stale, and in the chart the monitor container's liveness probe asks
``/healthz`` on its own small port, which follows the same heartbeat.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..drift.histograms import histograms
from ..errors import DriftkeeperError
from ..files import write_atomic
from ..model.store import ModelStore
from . import metrics, monitor
from .config import ServiceConfig
from .health import LoopHealth
from .recent import RecentRows
from .runtime import ModelHolder, PolicyHolder, ServingModel
from .tally import Tally, load_tally, update_tally

log = logging.getLogger("driftkeeper.monitor")


class MonitorBusyError(DriftkeeperError):
    """Another monitor already monitors this state directory."""


class Monitor:
    """The monitor's state and one tick of its loop (tests drive ``tick`` directly)."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.models = ModelHolder(ModelStore(config.model_dir), serving=False)
        self.policy = PolicyHolder(config.policy)
        self.health = LoopHealth(last_clean_gauge=metrics.MONITOR_LAST_CLEAN)
        self.started = time.time()
        self._next_evaluation = 0.0
        self._tally: Tally | None = None
        self._recent = RecentRows()  # the rings' newest rows, read and derived once
        config.windows_dir.mkdir(parents=True, exist_ok=True)
        self.refresh()

    def refresh(self) -> None:
        if self.models.refresh():
            self.policy.invalidate()
        self.policy.refresh(self.models.model)

    def tick(self, now: float | None = None) -> dict[str, Any] | None:
        """Reload what changed, count new rows, evaluate when due; returns the report
        this tick published, if any. A failing step is logged, counted and recorded in
        the heartbeat; the next tick tries again."""
        now = time.time() if now is None else now
        published: list[dict[str, Any]] = []
        clean = self._step("reload", self.refresh) and self.models.failure is None
        model = self.models.model
        if model is not None:
            clean = self._step("count", lambda: self._count(model, now)) and clean
            if now >= self._next_evaluation:
                policy = self.policy.policy
                self._next_evaluation = now + policy.interval
                clean = self._step("evaluate", lambda: published.append(
                    self._evaluate(model, policy, now))) and clean
        self.health.tick_done(clean)
        self._step("tick", self.write_heartbeat)
        return published[0] if published else None

    def _step(self, name: str, work: Any) -> bool:
        try:
            work()
        except Exception as exc:  # one bad step must not stop monitoring
            log.exception("monitor %s failed", name)
            self.health.failed(name, exc)
            return False
        self.health.succeeded(name)
        return True

    def _evaluate(self, model: ServingModel, policy: Any, now: float) -> dict[str, Any]:
        report, data, residuals = monitor.evaluate_windows(model, policy, self._recent, now)
        doc = monitor.report_document(report, policy)
        doc["policy_error"] = self.policy.error
        doc["evaluator_pid"] = os.getpid()
        monitor.publish(histograms(model.bundle.profile, data, residuals),
                        self.config.histograms_path)
        monitor.publish(doc, self.config.report_path)
        horizon = max(policy.data_window.max_age, policy.concept_window.max_age)
        monitor.prune_rings(self.config.windows_dir, horizon, now)
        return doc

    def _count(self, model: ServingModel, now: float) -> None:
        """Add the rows that arrived since the last tick to the pod's window counters."""
        if self._tally is None:  # a previous monitor's counts, if it counted before us
            self._tally = load_tally(self.config.tally_path)
        try:
            self._tally, changed = update_tally(
                self._tally, model.bundle.profile, model.version, model.number,
                self.config.windows_dir, now, estimate=model.estimate_squared_errors,
                recent=self._recent, sizes=monitor.window_sizes(self.policy.policy))
            if changed:
                self._tally.save(self.config.tally_path)
        except Exception:
            self._tally = None  # re-read from the file on the next tick
            raise

    def heartbeat(self) -> dict[str, Any]:
        """What the supervisor and the liveness probe judge: the loop's record."""
        check = self.health.check()
        return {"pid": os.getpid(), "started": self.started, "written_at": time.time(),
                "ok": check["ok"], "background": check,
                "serving": self.models.model.version if self.models.model else None}

    def write_heartbeat(self) -> None:
        write_atomic(self.config.heartbeat_path, json.dumps(self.heartbeat()), durable=False)

    @property
    def interval(self) -> float:
        return min(self.config.reload_interval, self.policy.policy.interval)


def read_heartbeat(config: ServiceConfig) -> dict[str, Any] | None:
    """The monitor's last heartbeat, or None before its first (or if unreadable)."""
    try:
        doc = json.loads(config.heartbeat_path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


@contextlib.contextmanager
def exclusive(config: ServiceConfig) -> Any:
    """Hold the state directory's monitor lock, or raise MonitorBusyError."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(config.monitor_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MonitorBusyError(f"another monitor holds {config.monitor_lock}; one "
                                   "monitor per state directory") from None
        yield
    finally:
        os.close(fd)


def _health_server(mon: Monitor, host: str, port: int) -> ThreadingHTTPServer:
    """``GET /healthz``: 200 while the loop ticks cleanly, 503 (with why) when not."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/healthz":
                self._send(404, {"error": "not found", "field": "path"})
                return
            beat = mon.heartbeat()
            self._send(200 if beat["ok"] else 503, beat)

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would flood the log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="monitor-health", daemon=True).start()
    return server


def run(config: ServiceConfig, stop: threading.Event, health_host: str = "127.0.0.1",
        health_port: int | None = None) -> None:
    """Monitor until ``stop`` is set. Metrics must already point at the state directory
    (``multiproc.use_directory``)."""
    with exclusive(config):
        restarted = config.heartbeat_path.exists()  # a previous monitor of this pod beat
        mon = Monitor(config)
        if restarted:
            metrics.MONITOR_RESTARTS.inc()
        mon.health.start()
        server = (_health_server(mon, health_host, health_port)
                  if health_port is not None else None)
        log.info("monitor %d watches %s (state in %s)", os.getpid(), config.model_dir,
                 config.state_dir)
        try:
            mon.tick()
            while not stop.wait(mon.interval):
                try:
                    mon.tick()
                except Exception as exc:  # tick() catches its steps' errors: a bug
                    log.exception("monitor tick failed")
                    mon.health.failed("tick", exc)
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()

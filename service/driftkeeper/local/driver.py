"""The local policy driver: the operator's logic on one machine.

Every evaluation interval it reads the service's metrics, counts the fresh labels in the
feedback files (as the retrain will), asks the shared control step
(``policy/reconcile.py``, the operator's too) what to do, and does it: pushes the policy's
thresholds to the service (the policy file the service watches) and runs ``driftkeeper
retrain`` (``model/retrain.py``: train on recent labels, judge on fresh ones, promote only
if better) as a subprocess. Its memory and every decision survive a restart
(``DIR/driver/``); a retrain still running after a crash of the driver is adopted, not
started twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import requests
import yaml

from ..errors import DriftkeeperError, PolicyError
from ..files import write_atomic
from ..model.feedback import FeedbackStore
from ..model.retrain import RetrainOutcome
from ..model.store import ModelStore
from ..policy import DriftPolicy, load_policy
from ..policy.engine import Decision, EngineState, Event, Observation
from ..policy.metrics import PolicyMetrics
from ..policy.reconcile import (
    Memory,
    RetrainRequest,
    RetrainSeen,
    StartRetrain,
    StopRetrain,
    follow,
    reconcile,
    retrain_failed_to_start,
)
from ..schema import FeatureSchema
from .observe import ServiceUnreachableError, fetch_observation

log = logging.getLogger("driftkeeper.driver")

EVENTS_MAX_BYTES = 1 << 20
"""events.jsonl is rotated to events.jsonl.1 beyond this (about 5,000 events): the two
files hold the newest events, and ``read_events`` reads both, oldest first."""
RETRAIN_RECORDS = 20
"""Retrains whose outcome and log are kept under ``retrains/`` (the newest)."""

METRICS_NAMESPACE = "local"
"""The ``namespace`` label of the local driver's policy metrics (the operator's: the
policy's namespace), so that one set of alert rules serves both."""


@dataclass(frozen=True)
class DriverConfig:
    policy_path: Path
    service_url: str
    model_dir: Path
    service_policy_path: Path | None = None  # the file the service reads; default below
    base_data: str | None = None  # CSV for retraining; default the serving version's
    metrics_port: int | None = None  # serve the policy's metrics (phase, retrains) here

    @property
    def driver_dir(self) -> Path:
        return self.model_dir / "driver"

    @property
    def pushed_policy(self) -> Path:
        return self.service_policy_path or self.model_dir / "service-policy.yaml"


@dataclass
class RunningRetrain:
    process: subprocess.Popen | None  # None: adopted after a restart (not our child)
    pid: int
    started: float
    stdout: Path
    stderr: Path


class LocalDriver:
    def __init__(self, config: DriverConfig) -> None:
        self.config = config
        self.store = ModelStore(config.model_dir)
        self.schema = _schema(self.store)
        self.feedback = FeedbackStore(config.model_dir / "feedback", self.schema)
        self.session = requests.Session()
        self.policy: DriftPolicy | None = None
        self.policy_error: str | None = None
        self._policy_stamp: tuple[float, int] | None = None
        self.memory = Memory()
        self.retrain: RunningRetrain | None = None
        self.phase = "Starting"  # the engine's last phase, persisted for `demo` and users
        self._service_down = False
        self.metrics = PolicyMetrics()
        if config.metrics_port:
            self.metrics.serve(config.metrics_port)
        config.driver_dir.mkdir(parents=True, exist_ok=True)
        self.events_file.touch()
        self._load_policy(initial=True)
        self._restore()

    # -- persistence -------------------------------------------------------------------

    @property
    def _state_file(self) -> Path:
        return self.config.driver_dir / "state.json"

    @property
    def events_file(self) -> Path:
        return self.config.driver_dir / "events.jsonl"

    @property
    def state(self) -> EngineState:
        """The policy engine's memory (breaches, episode, cooldown, failure budget)."""
        return self.memory.engine

    def _persist(self) -> None:
        doc: dict[str, Any] = {"engine": self.memory.to_dict(), "retrain": None,
                               "phase": self.phase}
        if self.retrain is not None:
            doc["retrain"] = {"pid": self.retrain.pid, "started": self.retrain.started,
                              "stdout": str(self.retrain.stdout),
                              "stderr": str(self.retrain.stderr)}
        write_atomic(self._state_file, json.dumps(doc, indent=2))

    def _restore(self) -> None:
        try:
            doc = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return
        self.memory = Memory.from_dict(doc.get("engine", {}))
        running = doc.get("retrain")
        now = time.time()
        if running and _is_our_retrain(int(running["pid"])):
            # The driver died, its training did not: follow it to its end.
            self.retrain = RunningRetrain(None, int(running["pid"]), float(running["started"]),
                                          Path(running["stdout"]), Path(running["stderr"]))
            self._log_events([Event("Normal", "RetrainAdopted", f"following the retrain "
                                    f"(pid {self.retrain.pid}), which was still running", now)])
        elif self.memory.retrain is not None or self.memory.engine.retrain_started is not None:
            gone = ("the driver restarted while training and the training is gone; the "
                    "candidate was discarded")
            if self.memory.retrain is None:  # memory from before requests were recorded
                self.memory = replace(self.memory, retrain=RetrainRequest(
                    self.memory.engine.retrains, now, "-", now))
            done = follow(self.memory, RetrainSeen(False, detail=gone), self.policy, now)
            self.memory = done.memory
            self._emit(done.decision)

    def _emit(self, decision: Decision) -> None:
        self.phase = decision.phase
        self._log_events(decision.events)
        self._persist()

    def _log_events(self, events: list[Event]) -> None:
        if not events:
            return
        try:
            if self.events_file.stat().st_size > EVENTS_MAX_BYTES:
                os.replace(self.events_file, self.events_file.with_name("events.jsonl.1"))
        except FileNotFoundError:
            pass
        with open(self.events_file, "a") as fh:
            for event in events:
                fh.write(json.dumps(event.to_dict()) + "\n")
                log.log(logging.WARNING if event.type == "Warning" else logging.INFO,
                        "%s: %s", event.reason, event.message)

    # -- policy ------------------------------------------------------------------------

    def _load_policy(self, initial: bool = False) -> None:
        path = self.config.policy_path
        try:
            st = path.stat()
            stamp = (st.st_mtime, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._policy_stamp and not initial:
            return
        self._policy_stamp = stamp
        try:
            policy = load_policy(path, self.schema)
        except PolicyError as exc:
            if initial:
                raise
            self.policy, self.policy_error = None, str(exc)
            return
        self.policy, self.policy_error = policy, None
        write_atomic(self.config.pushed_policy, yaml.safe_dump(policy.to_document(),
                                                                 sort_keys=False))

    # -- the loop ----------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, duration: float | None = None) -> str:
        """Tick until stopped or ``duration`` is up; returns (and logs) why it stopped. One
        bad tick (an unreadable file, a crashed gate) is logged and the loop goes on."""
        stop = stop or threading.Event()
        deadline = None if duration is None else time.monotonic() + duration
        failures_in_a_row = 0
        why = "stopped on request"
        try:
            while not stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    why = f"ran for its duration of {duration:g}s"
                    break
                try:
                    self.tick()
                    failures_in_a_row = 0
                except Exception as exc:  # the loop outlives any one tick
                    failures_in_a_row += 1
                    log.exception("tick failed (%d in a row); carrying on", failures_in_a_row)
                    if failures_in_a_row == 1:
                        self._log_events([Event("Warning", "TickFailed",
                                                f"{type(exc).__name__}: {exc}", time.time())])
                interval = self.policy.interval if self.policy else 5.0
                stop.wait(min(interval, 1.0) if self.retrain else interval)
        except KeyboardInterrupt:
            why = "interrupted"
            raise
        except BaseException as exc:
            why = f"failed: {type(exc).__name__}: {exc}"
            raise
        finally:
            self.shutdown(why)
        return why

    def tick(self, now: float | None = None) -> Decision:
        now = time.time() if now is None else now
        self._load_policy()
        seen = self._poll_retrain() if self.retrain is not None else None
        obs = self._observe(now)
        episode = self.memory.engine.episode_start
        fresh = self.feedback.count(since=episode) if episode is not None else 0
        done = reconcile(self.memory, obs, seen, self.policy, now,
                         generation=self.memory.engine.policy_generation or "-",
                         serving_version=self.store.current_version(),
                         fresh_labels=fresh, policy_error=self.policy_error, timeout_grace=0.0)
        self.memory = done.memory
        for action in done.actions:
            if isinstance(action, StopRetrain) and self.retrain is not None:
                _kill_if_ours(self.retrain.pid)
        if self.retrain is not None and done.memory.retrain is None:
            self._retrain_ended(done)  # it ended (or overran and was stopped)
        decision = done.decision
        self._emit(decision)
        self.metrics.record(METRICS_NAMESPACE, self._policy_name, decision.phase,
                            self.state.failures,
                            self.policy.retraining.max_failures if self.policy else None, obs)
        for action in done.actions:
            if isinstance(action, StartRetrain):
                try:
                    self._start_retrain(now)
                except (OSError, DriftkeeperError) as exc:
                    failed = retrain_failed_to_start(self.memory, now,
                                                     f"could not start training: {exc}")
                    self.memory = failed.memory
                    self.metrics.retrain(METRICS_NAMESPACE, self._policy_name, "failed")
                    self._emit(failed.decision)
        return decision

    def _retrain_ended(self, done: Any) -> None:
        self.retrain = None
        finished = done.memory.finished
        if finished is not None:
            self.metrics.retrain(METRICS_NAMESPACE, self._policy_name,
                                 finished.outcome.outcome)

    def _observe(self, now: float) -> Observation | None:
        try:
            obs = fetch_observation(self.config.service_url, self.session)
        except ServiceUnreachableError as exc:
            if not self._service_down:  # say it once per outage
                self._service_down = True
                self._log_events([Event("Warning", "ServiceUnreachable", str(exc), now)])
            return None
        self._service_down = False
        return obs

    # -- retraining --------------------------------------------------------------------

    def _start_retrain(self, now: float) -> None:
        """Run ``driftkeeper retrain`` (plan, train, judge, promote) as a subprocess."""
        assert self.policy is not None and self.memory.retrain is not None
        since = self.memory.retrain.since
        logs = self.config.driver_dir / "retrains"
        logs.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
        stdout, stderr = logs / f"{stamp}.json", logs / f"{stamp}.log"
        args = [sys.executable, "-m", "driftkeeper.cli", "retrain",
                "--model-dir", str(self.config.model_dir),
                "--policy", str(self.config.pushed_policy), "--since", repr(since)]
        if self.config.base_data:
            args += ["--data", self.config.base_data]
        # One OpenMP thread: the service shares these cores, and spinning OpenMP workers
        # under contention made a two-second fit take thirty.
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            process = subprocess.Popen(args, stdout=out, stderr=err, start_new_session=True,
                                       env=env)
        self.retrain = RunningRetrain(process, process.pid, now, stdout, stderr)
        _keep_newest(logs, RETRAIN_RECORDS, keep={stdout, stderr})
        self.memory = replace(self.memory, retrain=replace(self.memory.retrain,
                                                           handle=f"pid:{process.pid}"))
        self.metrics.retrain(METRICS_NAMESPACE, self._policy_name, "started")
        self._persist()  # a restarted driver must find (and follow) this process
        log.info("retrain started (pid %d): %s", process.pid, " ".join(args[3:]))

    def _poll_retrain(self) -> RetrainSeen:
        """The running retrain, as the shared step wants to see it."""
        assert self.retrain is not None
        running = self.retrain
        code = running.process.poll() if running.process else (
            None if _is_our_retrain(running.pid) else -1)
        if code is None:
            return RetrainSeen(True)
        try:
            return RetrainSeen(False, RetrainOutcome.from_dict(
                json.loads(running.stdout.read_text())))
        except (OSError, ValueError, TypeError):
            tail = running.stderr.read_text(errors="replace").strip().splitlines()[-3:]
            exit_code = f"code {code}" if running.process else "an unknown code"
            return RetrainSeen(False, detail=f"retrain exited with {exit_code} and no "
                               f"outcome: {' | '.join(tail)}")

    @property
    def _policy_name(self) -> str:
        return self.policy.name if self.policy else self.config.policy_path.stem

    def shutdown(self, why: str = "stopped") -> None:
        """Stop a running retrain (its candidate is discarded), save the state, and say
        why the driver stopped and what became of the retrain."""
        if self.retrain is not None:
            _kill_if_ours(self.retrain.pid)
            if self.retrain.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.retrain.process.wait(timeout=10)
            done = follow(self.memory, RetrainSeen(False, detail=(
                f"the driver {why} while retraining; the candidate was discarded")),
                self.policy, time.time())
            self.memory = done.memory
            self._retrain_ended(done)
            self._log_events(done.decision.events)
        self._persist()
        log.info("driver %s (phase %s, %d retrains)", why, self.phase, self.state.retrains)


def _schema(store: ModelStore) -> FeatureSchema:
    """The serving model's feature schema: policies name its features, feedback has its
    columns. Without a model the store's error says to train one."""
    return store.load(with_estimator=False).schema


def read_events(driver_dir: Path) -> list[dict[str, Any]]:
    """Every event still kept (the rotated file, then the current one), oldest first."""
    out = []
    for name in ("events.jsonl.1", "events.jsonl"):
        try:
            text = (driver_dir / name).read_text()
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            with contextlib.suppress(ValueError):  # a line cut by a crash is skipped
                out.append(json.loads(line))
    return out


def _keep_newest(directory: Path, records: int, keep: set[Path]) -> None:
    """Delete all but the newest ``records`` retrains' files (an outcome and a log each)."""
    stamps = sorted({p.stem for p in directory.iterdir() if p.suffix in (".json", ".log")},
                    reverse=True)
    for stamp in stamps[records:]:
        for path in (directory / f"{stamp}.json", directory / f"{stamp}.log"):
            if path not in keep:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


def _is_our_retrain(pid: int) -> bool:
    """The pid is a live ``driftkeeper retrain`` (pids get reused; a zombie is dead)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and b"driftkeeper.cli" in cmdline and b"retrain" in cmdline


def _kill_if_ours(pid: int) -> None:
    """SIGTERM a retrain process by pid, but only if it still is one."""
    if _is_our_retrain(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

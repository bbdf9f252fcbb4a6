"""``driftkeeper serve`` keeps its monitor process running, as a kubelet would.

A thread of gunicorn's master starts ``driftkeeper monitor`` as a child and restarts it when
it exits or when its heartbeat stops (stale for ``health.STALE_AFTER``, or not ok), with a
backoff that doubles from 1 s to 30 s and starts over once a monitor has run for a minute.
Workers never depend on it: while it restarts they keep serving, and the pod's report and
counters stay what the last monitor wrote. The child dies with the thread that started it
(``PR_SET_PDEATHSIG``), so a killed ``serve`` leaves no monitor behind.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from .config import ServiceConfig
from .health import STALE_AFTER

log = logging.getLogger("driftkeeper.service")

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
HEALTHY_RUN = 60.0  # a monitor that ran this long restarts from the first backoff again
MONITOR_NICE = 10  # workers and monitor share this machine's cores: requests come first
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL when serve stops


def monitor_command(config: ServiceConfig) -> list[str]:
    """The child's command line: this interpreter, this package, this config."""
    args = [sys.executable, "-m", "driftkeeper", "monitor",
            "--model-dir", str(config.model_dir), "--state-dir", str(config.state_dir),
            "--reload-interval", repr(config.reload_interval),
            "--parent-pid", str(os.getpid()), "--nice", str(MONITOR_NICE)]
    if config.policy is not None:
        args += ["--policy", str(config.policy)]
    return args


def spawn(command: list[str]) -> subprocess.Popen[bytes]:
    """Start a child without the fork-and-error-pipe dance of ``Popen``'s default path.

    The supervisor starts children from a thread while gunicorn's master forks workers.
    ``Popen`` normally forks, then waits to read EOF from a close-on-exec error pipe; a
    worker forked in between inherits the pipe's write end and never execs, so the read
    (and the supervisor with it) would wait for as long as that worker lives. With
    ``close_fds=False`` CPython uses ``posix_spawn`` (a vfork-like clone that reports exec
    errors without a pipe). The child still inherits no descriptor that Python or gunicorn
    opened: they are all non-inheritable (PEP 446).
    """
    return subprocess.Popen(command, close_fds=False)


class MonitorSupervisor:
    """Runs one monitor child at a time until ``stop``."""

    def __init__(self, config: ServiceConfig, command: list[str] | None = None,
                 stale_after: float = STALE_AFTER,
                 heartbeat: Callable[[], dict | None] | None = None) -> None:
        from .monitor_process import read_heartbeat

        self.config = config
        self.command = command or monitor_command(config)
        self.stale_after = stale_after
        self._heartbeat = heartbeat or (lambda: read_heartbeat(config))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.child: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="monitor-supervisor",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_GRACE + 5)

    def _run(self) -> None:
        backoff = BACKOFF_FIRST
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.child = spawn(self.command)
            except OSError:
                log.exception("cannot start the monitor: %s", self.command)
            else:
                self.starts += 1
                log.info("monitor %d started (start %d)", self.child.pid, self.starts)
                reason = self._watch(self.child, started)
                if reason is None:  # stopping
                    return
                log.warning("monitor %d %s; restarting it in %.0f s (serving goes on)",
                            self.child.pid, reason, backoff)
            if time.monotonic() - started >= HEALTHY_RUN:
                backoff = BACKOFF_FIRST
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _watch(self, child: subprocess.Popen[bytes], started: float) -> str | None:
        """Wait until the child exits or goes stale (why, as text), or until stop (None)."""
        while not self._stop.wait(1.0):
            code = child.poll()
            if code is not None:
                # gunicorn's master reaps every child it sees exit, so the code may be lost.
                return f"exited (code {code})" if code else "exited"
            why = self._stale(started)
            if why:
                self._end(child, kill=True)
                return why
        self._end(child, kill=False)
        return None

    def _stale(self, started: float) -> str | None:
        """Why the running child counts as dead (its heartbeat), or None."""
        if time.monotonic() - started < self.stale_after:
            return None  # give a new monitor time for its first clean tick
        beat = self._heartbeat()
        if beat is None or beat.get("pid") != (self.child.pid if self.child else None):
            return f"wrote no heartbeat for {self.stale_after:.0f} s"
        age = time.time() - float(beat.get("written_at", 0))
        if age > self.stale_after:
            return f"stopped ticking {age:.0f} s ago"
        if not beat.get("ok", True):
            return "kept failing (see its heartbeat's failing steps)"
        return None

    def _end(self, child: subprocess.Popen[bytes], kill: bool) -> None:
        if child.poll() is not None:
            return
        if kill:
            child.kill()
        else:
            child.terminate()
        try:
            child.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=STOP_GRACE)

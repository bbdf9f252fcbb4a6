"""Run the app under gunicorn, with the multiprocess bookkeeping done by the book.

``PROMETHEUS_MULTIPROC_DIR`` is set and wiped before any worker starts, each worker builds
its own app after the fork (no shared state inherited by accident), and a dead worker's live
gauges are dropped in ``child_exit``. With the monitor ``internal`` the master also runs the
monitor process (``supervisor.py``); ``external``, another container runs it, and a restart
of this one keeps the monitor's files (its report, counters and metrics).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
from typing import Any

from gunicorn.app.base import BaseApplication

from ..errors import DriftkeeperError
from . import corking, multiproc
from .config import ServiceConfig

log = logging.getLogger("driftkeeper.service")


def prepare_state_dir(config: ServiceConfig) -> None:
    """Start every run without the previous workers' state (stale live gauges would be
    summed in). With the monitor internal it starts afresh too, so the rings go. With it
    external (another container of the pod, still running), the dead workers' rings it has
    not finished counting stay for it to read: a crash of the serving container loses no
    row the workers accepted (every worker's ring has a name of its own, so a new worker
    never takes over an old ring, even with the same pid in a new PID namespace)."""
    external = config.monitor == "external"
    if external:
        from .monitor import drop_counted_rings
        from .tally import load_tally

        config.windows_dir.mkdir(parents=True, exist_ok=True)
        tally = load_tally(config.tally_path)
        drop_counted_rings(config.windows_dir, tally.positions if tally else {})
    else:
        shutil.rmtree(config.windows_dir, ignore_errors=True)
        config.windows_dir.mkdir(parents=True)
    config.prometheus_dir.mkdir(parents=True, exist_ok=True)
    for path in config.prometheus_dir.iterdir():
        if not (external and multiproc.is_monitor_file(path)):
            path.unlink(missing_ok=True)
    if not external:
        for path in (config.report_path, config.histograms_path, config.heartbeat_path):
            path.unlink(missing_ok=True)


class _Monitor:
    """The master's monitor supervisor, started once gunicorn is ready (internal mode)."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.supervisor: Any = None

    def start(self, server: Any) -> None:
        if self.config.monitor == "internal" and self.supervisor is None:
            from .supervisor import MonitorSupervisor

            self.supervisor = MonitorSupervisor(self.config)
            self.supervisor.start()

    def stop(self, server: Any) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()


class DriftkeeperServer(BaseApplication):  # type: ignore[misc]
    """gunicorn, configured from a ServiceConfig instead of a config file."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        super().__init__()

    def load_config(self) -> None:
        c = self.config
        monitor = _Monitor(c)
        settings: dict[str, Any] = {
            "bind": f"{c.host}:{c.port}",
            "workers": c.workers,
            "worker_class": "gthread",  # keep-alive, and threads for slow clients
            "threads": c.threads,
            "timeout": 30,
            "graceful_timeout": 10,
            "keepalive": 5,
            # Each worker listens on a socket of its own (SO_REUSEPORT) and the kernel
            # spreads new connections over them. On one shared socket the worker that
            # woke first took most kept-alive connections (wrk's 8 often all went to one
            # worker: half the throughput, the other worker idle).
            "reuse_port": True,
            "accesslog": "-" if c.access_log else None,
            "errorlog": "-",
            "loglevel": "info",
            "proc_name": "driftkeeper",
            "on_starting": lambda server: prepare_state_dir(c),
            "when_ready": monitor.start,
            "on_exit": monitor.stop,
            "child_exit": _child_exit,
            # One TCP segment per response instead of two (see corking.py).
            "pre_request": corking.cork,
            "post_request": corking.push,
            "worker_exit": _worker_exit,
            # gunicorn >= 25 opens a control socket in $HOME by default; two services on one
            # machine would fight over it, and nothing here uses it.
            "control_socket_disable": True,
        }
        for key, value in settings.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> Any:
        # Called in each worker after the fork.
        from threadpoolctl import threadpool_limits

        from .app import create_app

        threadpool_limits(1)  # one process per core; OpenMP threads would only contend
        return create_app(self.config)


def _child_exit(server: Any, worker: Any) -> None:
    from . import metrics

    metrics.mark_process_dead(worker.pid)


def _worker_exit(server: Any, worker: Any) -> None:
    app = getattr(worker, "wsgi", None)
    state = getattr(app, "extensions", {}).get("driftkeeper") if app is not None else None
    if state is not None:
        state.stop()


def check_port_free(host: str, port: int) -> None:
    """Refuse a port something already listens on. The workers bind with SO_REUSEPORT, so
    a second service on the same port (the same user's) would otherwise start quietly and
    take half of the first one's connections. SO_REUSEADDR alone: a port that only has
    closing connections of an earlier run (TIME_WAIT) is free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise DriftkeeperError(f"cannot serve on {host}:{port}: {exc.strerror} (another "
                                   f"service listens there?)") from None


def serve(config: ServiceConfig) -> None:
    """Run gunicorn in the foreground until it is stopped (SIGTERM / SIGINT)."""
    check_port_free(config.host, config.port)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(config.prometheus_dir)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    config.prometheus_dir.mkdir(parents=True, exist_ok=True)
    DriftkeeperServer(config).run()

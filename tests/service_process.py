"""Run `driftkeeper serve` as a real process on a loopback port, for integration tests.

The service runs in its own session; it is stopped by its process id (SIGTERM to the gunicorn
master, then SIGKILL to its process group if it lingers), also when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningService:
    url: str
    process: subprocess.Popen
    state_dir: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, predicate, timeout: float = 30.0, interval: float = 0.2,
                 what: str = "condition"):
        """Poll GET /drift until ``predicate(report)`` holds; return that report."""
        deadline = time.monotonic() + timeout
        report = None
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"service died:\n{self.log()[-3000:]}"
            resp = requests.get(self.url + "/drift", timeout=5)
            if resp.status_code == 200:
                report = resp.json()
                if predicate(report):
                    return report
            time.sleep(interval)
        raise AssertionError(f"timed out waiting for {what}; last report: {report}\n"
                             f"service log:\n{self.log()[-4000:]}")


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM by pid; if it lingers, SIGKILL its process group (started with
    ``start_new_session``, so the group id is its pid) or the process itself."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            process.kill()
        process.wait(timeout=5)


@contextlib.contextmanager
def running_service(model_dir: Path, tmp_path: Path, *, workers: int = 2,
                    policy: Path | None = None, extra_args: list[str] | None = None,
                    ready_timeout: float = 60.0, exe: Path | None = None,
                    prefix: list[str] | None = None, cwd: Path | None = None,
                    env: dict[str, str] | None = None, state_dir: Path | None = None
                    ) -> Iterator[RunningService]:
    """``driftkeeper serve`` (the venv's, or ``exe``), optionally run through ``prefix``
    (e.g. ``setpriv`` to drop root) in ``cwd`` with ``env``; ``state_dir`` (default: one
    of its own) is given to run again on a stopped service's state."""
    port = free_port()
    state_dir = state_dir or tmp_path / f"state-{port}"
    log_path = tmp_path / f"service-{port}.log"
    exe = exe or Path(sys.executable).with_name("driftkeeper")
    args = [*(prefix or []), str(exe), "serve", "--model-dir", str(model_dir),
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
            "--state-dir", str(state_dir)]
    if policy is not None:
        args += ["--policy", str(policy)]
    args += extra_args or []
    env = env or {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True, cwd=cwd)
    service = RunningService(f"http://127.0.0.1:{port}", process, state_dir, log_path)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"service exited early:\n{service.log()[-3000:]}")
            with contextlib.suppress(requests.ConnectionError, requests.Timeout):
                if requests.get(service.url + "/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"service not ready:\n{service.log()[-3000:]}")
            time.sleep(0.2)
        yield service
    finally:
        stop_process(process)

"""Child processes the demo starts, and stops again by process id, also on failure."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def driftkeeper_command(*args: str) -> list[str]:
    """Run a driftkeeper subcommand with this interpreter (no PATH lookup)."""
    return [sys.executable, "-m", "driftkeeper.cli", *args]


@contextlib.contextmanager
def stopped_like_ctrl_c() -> Iterator[None]:
    """SIGTERM and SIGHUP (``kill``, a closed terminal, ``timeout``) unwind like Ctrl-C, so
    ``finally`` blocks stop the processes we started; without this Python dies at once and
    they, in their own sessions, live on. The previous handlers are restored afterwards."""
    def unwind(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = {sig: signal.signal(sig, unwind) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class ProcessGroup:
    """Processes started together and stopped together, newest first."""

    def __init__(self) -> None:
        self.processes: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], log: Path) -> subprocess.Popen:
        """Start a process in its own session (Ctrl-C reaches only us), output to ``log``."""
        with open(log, "wb") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.processes.append((name, process))
        return process

    def stop_all(self, timeout: float = 15.0) -> None:
        """SIGTERM each process by its pid; SIGKILL its process group if it lingers."""
        for _, process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _, process in reversed(self.processes):
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # group id == its pid
                process.wait(timeout=5)

"""`driftkeeper demo` as a user runs it: stopped by a signal, it stops everything it started."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.slow


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, grandchildren, ...), from /proc."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _interruptible() -> None:
    """Ctrl-C reaches the demo as in a terminal: a test run started in the background
    (``cmd &`` in a script) inherits SIGINT ignored, and Python then never sees it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT],
                         ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_signalled_demo_stops_every_process_it_started(trained_model_dir: Path,
                                                           tmp_path: Path, signum) -> None:
    """The service, its workers, the driver and the simulator run in their own sessions (so
    Ctrl-C reaches only the demo): kill, a closed terminal or Ctrl-C must still stop them."""
    shutil.copytree(trained_model_dir, tmp_path / "diamonds", symlinks=True)
    port = int(subprocess.run([sys.executable, "-c", "from driftkeeper.local.processes "
                               "import free_port; print(free_port())"], capture_output=True,
                              text=True, check=True).stdout)
    demo = subprocess.Popen([sys.executable, "-m", "driftkeeper.cli", "demo", "--workdir",
                             str(tmp_path), "--duration", "120", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=_interruptible)
    started: set[int] = set()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # up once the simulator (the last one) runs
            started = _descendants(demo.pid)
            log = tmp_path / "demo" / "simulator.log"
            if log.exists() and len(started) >= 5:  # master, 2 workers, driver, simulator
                break
            assert demo.poll() is None, demo.stderr.read() if demo.stderr else ""
            time.sleep(0.5)
        assert len(started) >= 5, started
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        os.kill(demo.pid, signum)
        assert demo.wait(timeout=60) != 0
        survivors = {pid for pid in started if _alive(pid)}
        deadline = time.monotonic() + 10  # gunicorn workers exit just after their master
        while survivors and time.monotonic() < deadline:
            time.sleep(0.2)
            survivors = {pid for pid in survivors if _alive(pid)}
        assert not survivors
    finally:
        for pid in [*started, demo.pid]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        demo.wait(timeout=10)

"""`driftkeeper serve`'s monitor supervisor: how it starts children, and that it restarts them.

The supervisor starts its child from a thread while gunicorn's master forks workers. A fork
between ``Popen``'s error pipe and the child's exec left a worker holding the pipe, and the
supervisor waited on it for as long as the worker lived: a killed monitor was never
restarted (seen in CI, and reproduced under load at the first try).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from driftkeeper.serving import supervisor
from driftkeeper.serving.config import ServiceConfig


def test_children_are_started_without_an_error_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    real = os.posix_spawn

    def counting(path, argv, env, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(list(argv))
        return real(path, argv, env, **kwargs)

    monkeypatch.setattr(os, "posix_spawn", counting)
    child = supervisor.spawn([sys.executable, "-c", "pass"])
    assert child.wait(timeout=30) == 0
    assert calls == [[sys.executable, "-c", "pass"]]


def test_a_child_inherits_no_socket_or_pipe_of_the_parent(tmp_path: Path) -> None:
    """posix_spawn without closing descriptors: still nothing leaks, as Python and
    gunicorn open everything non-inheritable."""
    listener = socket.create_server(("127.0.0.1", 0))
    read_end, write_end = os.pipe()
    ours = {f"socket:[{os.fstat(listener.fileno()).st_ino}]",
            f"pipe:[{os.fstat(read_end).st_ino}]"}
    out = tmp_path / "fds"
    try:
        code = ("import os, sys\n"
                "fds = [os.readlink('/proc/self/fd/' + f) for f in os.listdir('/proc/self/fd')\n"
                "       if os.path.exists('/proc/self/fd/' + f)]\n"
                "open(sys.argv[1], 'w').write('\\n'.join(fds))\n")
        assert supervisor.spawn([sys.executable, "-c", code, str(out)]).wait(timeout=30) == 0
    finally:
        listener.close()
        os.close(read_end)
        os.close(write_end)
    inherited = set(out.read_text().splitlines())
    assert inherited and not inherited & ours, inherited


def test_a_killed_child_is_restarted_and_stopped_with_the_supervisor(tmp_path: Path) -> None:
    config = ServiceConfig(model_dir=tmp_path / "model", state_dir=tmp_path / "state")
    watcher = supervisor.MonitorSupervisor(
        config, command=[sys.executable, "-c", "import time; time.sleep(120)"],
        heartbeat=lambda: None)
    watcher.start()
    try:
        first = _wait_for_child(watcher, None)
        os.kill(first.pid, signal.SIGKILL)
        second = _wait_for_child(watcher, first.pid)
        assert watcher.starts == 2 and second.poll() is None
    finally:
        watcher.stop()
    assert second.poll() is not None  # stopped with the supervisor, not left behind


def _wait_for_child(watcher: supervisor.MonitorSupervisor, old: int | None):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        child = watcher.child
        if child is not None and child.pid != old and child.poll() is None:
            return child
        time.sleep(0.05)
    raise AssertionError(f"no new child after {old}")


def test_serve_runs_its_monitor_below_the_workers_priority(tmp_path: Path, capsys) -> None:
    """Locally workers and monitor share cores: the monitor is niced, and can never be
    made to outrank serving."""
    from driftkeeper.cli import main

    config = ServiceConfig(model_dir=tmp_path / "model", state_dir=tmp_path / "state")
    command = supervisor.monitor_command(config)
    assert command[command.index("--nice") + 1] == str(supervisor.MONITOR_NICE)
    assert supervisor.MONITOR_NICE > 0
    before = os.nice(0)
    code = main(["monitor", "--model-dir", str(tmp_path), "--state-dir", str(tmp_path),
                 "--nice", "-5"])
    assert code != 0 and "--nice" in capsys.readouterr().err
    assert os.nice(0) == before  # refused before anything changed this process's priority


def test_a_supervised_monitor_lets_go_of_the_masters_listening_sockets(tmp_path: Path) -> None:
    """gunicorn's listeners are inheritable (for its re-exec), so the monitor gets them;
    it closes them first thing, or the port would stay bound by a process that never
    accepts once the master is gone."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.set_inheritable(True)
    mine = f"socket:[{os.fstat(listener.fileno()).st_ino}]"
    out = tmp_path / "fds"
    code = ("import json, os, sys\n"
            "from driftkeeper.cli import drop_inherited_sockets\n"
            "before = [os.readlink('/proc/self/fd/' + f) for f in os.listdir('/proc/self/fd')\n"
            "          if os.path.exists('/proc/self/fd/' + f)]\n"
            "drop_inherited_sockets()\n"
            "after = [os.readlink('/proc/self/fd/' + f) for f in os.listdir('/proc/self/fd')\n"
            "         if os.path.exists('/proc/self/fd/' + f)]\n"
            "open(sys.argv[1], 'w').write(json.dumps([before, after]))\n")
    try:
        assert supervisor.spawn([sys.executable, "-c", code, str(out)]).wait(timeout=60) == 0
    finally:
        listener.close()
    before, after = json.loads(out.read_text())
    assert mine in before and mine not in after
    assert not [fd for fd in after if fd.startswith("socket:")]

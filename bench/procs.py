"""Processes for the HTTP benchmark: start a server, wait until ready, load it with wrk,
measure its memory, and stop it (and every worker) by PID, whatever happens."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

WRK_MARKER = "WRK_JSON "


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the bench's own Prometheus directory."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(extra)
    return env


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after the "(comm)"


def descendants(pid: int) -> list[int]:
    """Every living process below ``pid`` (children, grandchildren, ...)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            ppid = _parent_of(int(entry.name))
            if ppid is not None:
                parents[int(entry.name)] = ppid
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [child for child, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return found


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def memory(pid: int) -> dict[str, Any]:
    """VmRSS (and PSS, which does not double-count shared pages) of a process tree, bytes."""
    pids = [pid, *descendants(pid)]
    rss = {p: _status_kib(p, "VmRSS") * 1024 for p in pids}
    pss = 0
    with contextlib.suppress(OSError):
        pss = sum(_pss_kib(p) for p in pids) * 1024
    return {"rss_bytes": sum(rss.values()), "pss_bytes": pss, "processes": len(pids),
            "rss_by_pid": rss}


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (with the PID, it names one process);
    None once it has exited (zombies included)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])  # state, starttime


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM the server's master, then make sure none of its processes outlive it."""
    tree = [(pid, _start_time(pid)) for pid in descendants(proc.pid)]
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 10
    for pid, started in tree:
        while _start_time(pid) == started and time.monotonic() < deadline:
            time.sleep(0.1)
        if started is not None and _start_time(pid) == started:  # the same process, stuck
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; log:\n"
                               f"{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s; log:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def server(cmd: list[str], env: dict[str, str], ready_url: str, log: Path,
           cwd: Path | None = None, timeout: float = 180.0
           ) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server until the block ends; it is stopped by PID even if the block raises."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        _wait_ready(proc, ready_url, log, timeout)
        yield proc
    finally:
        stop(proc)


def wrk(url: str, script: Path, threads: int, connections: int, seconds: float
        ) -> dict[str, Any]:
    """One wrk run; returns requests/s, latency percentiles (ms) and error counts."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "5s",
           "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         timeout=seconds + 60).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith(WRK_MARKER)), None)
    if line is None:
        raise RuntimeError(f"no summary from wrk:\n{out}")
    raw = json.loads(line[len(WRK_MARKER):])
    lat = raw["latency_us"]
    return {"rps": raw["requests"] / (raw["duration_us"] / 1e6), "requests": raw["requests"],
            "p50_ms": lat["p50"] / 1000, "p90_ms": lat["p90"] / 1000,
            "p99_ms": lat["p99"] / 1000, "mean_ms": lat["mean"] / 1000,
            "max_ms": lat["max"] / 1000, "errors": raw["errors"]}


def _busy_seconds() -> float:
    """CPU time the whole machine has spent busy since boot (all cores, /proc/stat): user,
    nice, system and steal (time the hypervisor gave to other guests). Interrupt time is
    left out: loopback traffic of our own HTTP runs lands there."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, steal = fields[0], fields[1], fields[2], fields[7]
    return (user + nice + system + steal) / os.sysconf("SC_CLK_TCK")


def _tree_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU of this process plus its reaped children (wrk, training jobs)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class OtherLoad:
    """How busy the machine was with processes that are not the benchmark's while a block
    ran, in cores (0 = only the benchmark ran; the machine is shared, so we record it)."""

    def __init__(self, server_pid: int | None = None) -> None:
        self.server_pid = server_pid
        self.cores = 0.0

    def __enter__(self) -> OtherLoad:
        self._pids = [] if self.server_pid is None else [self.server_pid,
                                                         *descendants(self.server_pid)]
        self._start = (time.monotonic(), _busy_seconds(), _own_seconds(),
                       _tree_seconds(self._pids))
        return self

    def __exit__(self, *exc: object) -> None:
        wall0, busy0, own0, tree0 = self._start
        wall = time.monotonic() - wall0
        ours = (_own_seconds() - own0) + (_tree_seconds(self._pids) - tree0)
        other = (_busy_seconds() - busy0) - ours
        self.cores = max(other, 0.0) / wall if wall > 0 else 0.0


def settle(limit: float = 0.2, max_wait: float = 30.0) -> float:
    """Wait (up to ``max_wait`` s) until other processes use less than ``limit`` cores for
    two seconds in a row; returns the last one-second reading."""
    deadline = time.monotonic() + max_wait
    quiet = 0
    while True:
        with OtherLoad() as load:
            time.sleep(1.0)
        quiet = quiet + 1 if load.cores < limit else 0
        if quiet >= 2 or time.monotonic() > deadline:
            return load.cores

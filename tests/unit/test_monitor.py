"""The pod's evaluator: which rows make a window, one monitor per pod, which rings go."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from driftkeeper.policy import WindowSettings
from driftkeeper.serving.config import ServiceConfig
from driftkeeper.serving.monitor import _select, prune_rings
from driftkeeper.serving.monitor_process import MonitorBusyError, exclusive
from driftkeeper.serving.rings import RingWriter, read_ring, writer_alive


def _ring(stamps: list[float], tag: float) -> np.ndarray:
    """Rows of (ts, tag): the tag says which ring a selected row came from."""
    return np.column_stack([stamps, np.full(len(stamps), tag)])


def test_window_is_the_newest_rows_of_all_rings_together() -> None:
    busy = _ring([float(t) for t in range(100, 200)], 1.0)  # rows at t=100..199
    idle = _ring([150.5, 198.5, 250.0], 2.0)
    picked = _select([busy, idle], WindowSettings(size=10, min_samples=1, max_age=1e9),
                     now=300.0)
    stamps = sorted(np.concatenate([r[:, 0] for r in picked]))
    assert stamps == [192.0, 193.0, 194.0, 195.0, 196.0, 197.0, 198.0, 198.5, 199.0, 250.0]
    assert np.all(picked[0][:, 1] == 1.0) and np.all(picked[1][:, 1] == 2.0)  # ring order kept
    assert sorted(picked[1][:, 0]) == [198.5, 250.0]


def test_window_drops_rows_older_than_max_age() -> None:
    ring = _ring([10.0, 50.0, 89.0, 95.0, 99.0], 1.0)
    picked = _select([ring], WindowSettings(size=100, min_samples=1, max_age=10.0), now=100.0)
    assert picked[0][:, 0].tolist() == [95.0, 99.0]


def test_window_holds_exactly_size_rows_when_workers_stamp_alike() -> None:
    """Two workers stamp rows at the same instant: the window still holds ``size`` rows."""
    a = _ring([5.0] * 6, 1.0)
    b = _ring([5.0] * 6, 2.0)
    picked = _select([a, b], WindowSettings(size=7, min_samples=1, max_age=1e9), now=6.0)
    assert sum(len(r) for r in picked) == 7


def test_keep_filters_before_counting() -> None:
    """Labels of other model versions are dropped first, so they never take window places."""
    ring = np.column_stack([np.arange(10.0), [1, 2] * 5])  # ts, model version number
    keep = [ring[:, 1] == 2]
    picked = _select([ring], WindowSettings(size=3, min_samples=1, max_age=1e9), now=10.0,
                     keep=keep)
    assert picked[0][:, 0].tolist() == [5.0, 7.0, 9.0]


def test_empty_rings_give_an_empty_window() -> None:
    picked = _select([np.empty((0, 2))], WindowSettings(size=5, min_samples=1, max_age=10.0),
                     now=1.0)
    assert len(picked) == 1 and len(picked[0]) == 0


# -- reading rings, one monitor per pod -----------------------------------------------------

@pytest.mark.parametrize("written", [7, 10, 23])  # before, at and past wrapping around
def test_reading_the_newest_rows_of_a_ring(tmp_path: Path, written: int) -> None:
    ring = RingWriter(tmp_path / "inputs-1.ring", 2, 10)
    ring.append(np.column_stack([np.arange(written), np.arange(written) * 10.0]))
    everything = read_ring(tmp_path / "inputs-1.ring")
    assert everything[:, 0].tolist() == list(range(max(written - 10, 0), written))
    for last in (0, 1, 4, 10, 50):
        tail = read_ring(tmp_path / "inputs-1.ring", last)
        np.testing.assert_array_equal(tail, everything[max(len(everything) - last, 0):])


def test_the_window_of_the_newest_rows_equals_the_window_of_whole_rings(tmp_path: Path
                                                                        ) -> None:
    """Keeping only each ring's newest `size` rows (the monitor's copy, recent.py) loses
    nothing the window would hold."""
    rng = np.random.default_rng(3)
    for worker in (1, 2, 3):
        ring = RingWriter(tmp_path / f"inputs-{worker}.ring", 2, 500)
        stamps = np.sort(rng.uniform(0, 100, 400))
        ring.append(np.column_stack([stamps, np.full(400, worker)]))
    window = WindowSettings(size=300, min_samples=10, max_age=1e9)
    paths = sorted(tmp_path.glob("inputs-*.ring"))
    whole = np.concatenate(_select([read_ring(p) for p in paths], window, 100.0))
    newest = np.concatenate(_select([read_ring(p, 300) for p in paths], window, 100.0))
    np.testing.assert_array_equal(np.sort(whole[:, 0]), np.sort(newest[:, 0]))


def test_one_monitor_per_state_directory(tmp_path: Path) -> None:
    config = ServiceConfig(model_dir=tmp_path / "models", state_dir=tmp_path / "state")
    busy = pytest.raises(MonitorBusyError, match="one monitor per state directory")
    with exclusive(config), busy, exclusive(config):
        pass
    with exclusive(config):  # released with the first
        pass


WRITE = """
import sys, time
import numpy as np
from driftkeeper.serving.rings import RingWriter
ring = RingWriter(sys.argv[1], 2, 8)
ring.append(np.array([[1.0, 2.0]]))
print("ready", flush=True)
time.sleep(600)  # the test kills us while we hold the ring
"""


def test_a_ring_is_pruned_only_once_its_writer_is_gone(tmp_path: Path) -> None:
    """Liveness comes from the writer's lock, not the pid in the name: in the chart the
    monitor runs in another PID namespace, where a worker's pid means nothing (here the
    name carries this test's own live pid, and the ring is pruned all the same)."""
    ring = tmp_path / f"inputs-{os.getpid()}.ring"
    child = subprocess.Popen([sys.executable, "-c", WRITE, str(ring)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        assert writer_alive(ring)
        prune_rings(tmp_path, horizon=10.0, now=1e9)  # every row far too old
        assert ring.exists()  # its writer lives: kept
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        assert not writer_alive(ring)
        prune_rings(tmp_path, horizon=10.0, now=2.0)  # dead, but its row is recent
        assert ring.exists()
        prune_rings(tmp_path, horizon=10.0, now=1e9)
        assert not ring.exists()
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)


def test_a_closed_writer_lets_go_of_its_ring(tmp_path: Path) -> None:
    writer = RingWriter(tmp_path / "feedback-1.ring", 3, 4)
    assert writer_alive(writer.path)
    writer.close()
    assert not writer_alive(writer.path) and not writer_alive(tmp_path / "missing.ring")

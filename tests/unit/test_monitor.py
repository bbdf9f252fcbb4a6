"""The pod's evaluator: which rows make a window, and which worker evaluates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from driftkeeper.policy import WindowSettings
from driftkeeper.serving.monitor import Leadership, _select
from driftkeeper.serving.rings import RingWriter, read_ring, read_rings


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


# -- leader election -------------------------------------------------------------------------

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
    """Reading only each ring's newest `size` rows loses nothing the window would hold."""
    rng = np.random.default_rng(3)
    for worker in (1, 2, 3):
        ring = RingWriter(tmp_path / f"inputs-{worker}.ring", 2, 500)
        stamps = np.sort(rng.uniform(0, 100, 400))
        ring.append(np.column_stack([stamps, np.full(400, worker)]))
    window = WindowSettings(size=300, min_samples=10, max_age=1e9)
    whole = np.concatenate(_select(read_rings(tmp_path, "inputs"), window, 100.0))
    newest = np.concatenate(_select(read_rings(tmp_path, "inputs", 300), window, 100.0))
    np.testing.assert_array_equal(np.sort(whole[:, 0]), np.sort(newest[:, 0]))


def test_one_leader_per_state_directory(tmp_path: Path) -> None:
    first, second = Leadership(tmp_path / "lock"), Leadership(tmp_path / "lock")
    assert first.try_acquire() and first.held
    assert first.try_acquire()  # idempotent for the holder
    assert not second.try_acquire() and not second.held
    first.release()
    assert not first.held
    assert second.try_acquire()
    assert not first.try_acquire()
    second.release()


HOLD = """
import sys, time
from pathlib import Path
from driftkeeper.serving.monitor import Leadership
print(Leadership(Path(sys.argv[1])).try_acquire(), flush=True)
time.sleep(600)  # the test kills us while we hold the lock
"""


def test_a_killed_leader_frees_the_lock(tmp_path: Path) -> None:
    """The kernel drops a dead process's flock: the next worker takes over."""
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "lock")],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "True"
        survivor = Leadership(tmp_path / "lock")
        assert not survivor.try_acquire()
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        assert survivor.try_acquire()
        survivor.release()
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_does_not_inherit_leadership(tmp_path: Path) -> None:
    """gunicorn forks workers: a child must not believe it leads through the parent's fd."""
    leader = Leadership(tmp_path / "lock")
    assert leader.try_acquire()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports (held, could acquire) and exits at once
        result = f"{int(leader.held)}{int(Leadership(tmp_path / 'lock').try_acquire())}"
        os.write(write_end, result.encode())
        os._exit(0)
    os.close(write_end)
    try:
        assert os.read(read_end, 2) == b"00"
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
        leader.release()

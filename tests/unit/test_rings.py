"""The ring's tail read against a real concurrent writer process: every row appended is
either read exactly once, whole, or counted as dropped; never twice, never torn."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import numpy as np

from driftkeeper.serving.rings import RingWriter, read_ring, read_ring_tail

COLUMNS = 16  # wide rows: a torn row (half old, half new) would show
CAPACITY = 64  # small: the writer laps the reader all the time


def _write(path: str, seconds: float, done: multiprocessing.Value) -> None:
    """Append batches of 1..40 rows, each row filled with its running id, for a while."""
    ring = RingWriter(path, COLUMNS, CAPACITY)
    rng = np.random.default_rng(1)
    written = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        n = int(rng.integers(1, 41))
        ids = np.arange(written, written + n, dtype=np.float64)
        ring.append(np.repeat(ids[:, None], COLUMNS, axis=1))
        written += n
    done.value = written


def test_tail_reads_with_a_concurrent_writer_lose_nothing_unaccounted(tmp_path: Path) -> None:
    path = tmp_path / "inputs-1.ring"
    RingWriter(path, COLUMNS, CAPACITY)  # the file exists before the reader starts
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter, as a worker is
    done = spawn.Value("q", -1)
    writer = spawn.Process(
        target=_write, args=(str(path), 2.0, done))
    writer.start()
    try:
        position, seen, dropped, reads = 0, [], 0, 0
        while writer.is_alive() or reads == 0:
            rows, position, lost = read_ring_tail(path, position)
            reads += 1
            dropped += lost
            if rows.size:
                # Whole rows only: every column of a row carries the same id.
                assert (rows == rows[:, :1]).all(), "a torn row was returned"
                seen.extend(rows[:, 0].astype(np.int64).tolist())
        writer.join(timeout=30)
    finally:
        if writer.is_alive():
            writer.kill()
    rows, position, lost = read_ring_tail(path, position)  # what came after the last read
    seen.extend(rows[:, 0].astype(np.int64).tolist())
    dropped += lost
    total = done.value
    assert total > 10 * CAPACITY  # the writer lapped the ring many times
    assert len(seen) == len(set(seen)), "a row was counted twice"
    assert seen == sorted(seen)
    assert len(seen) + dropped == total, (len(seen), dropped, total)
    assert len(seen) > 0 and reads > 10


def test_a_full_read_racing_a_writer_returns_only_whole_current_rows(tmp_path: Path) -> None:
    path = tmp_path / "inputs-2.ring"
    RingWriter(path, COLUMNS, CAPACITY)
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter, as a worker is
    done = spawn.Value("q", -1)
    writer = spawn.Process(
        target=_write, args=(str(path), 1.0, done))
    writer.start()
    try:
        while writer.is_alive():
            rows = read_ring(path, last=CAPACITY)
            if rows.size:
                assert (rows == rows[:, :1]).all()
                ids = rows[:, 0]
                assert (np.diff(ids) == 1).all()  # consecutive: no stale row in between
    finally:
        writer.join(timeout=30)


def test_a_new_file_restarts_the_position(tmp_path: Path) -> None:
    path = tmp_path / "inputs-3.ring"
    ring = RingWriter(path, 2, 8)
    ring.append(np.ones((5, 2)))
    rows, head, lost = read_ring_tail(path, 0)
    assert (len(rows), head, lost) == (5, 5, 0)
    RingWriter(path, 2, 8).append(np.zeros((2, 2)))  # a restarted worker's new ring
    rows, head, lost = read_ring_tail(path, head)
    assert (len(rows), head, lost) == (2, 2, 0)
    ring = RingWriter(path, 2, 8)
    ring.append(np.arange(40.0).reshape(20, 2))  # lapped while nobody read
    rows, head, lost = read_ring_tail(path, 0)
    assert (len(rows), head, lost) == (8, 20, 12)
    assert rows[0, 0] == 24.0

"""Per-process ring buffers in memory-mapped files: how one pod sees all workers' traffic.

Each gunicorn worker appends its rows to its own file (one writer, no cross-process locks);
the pod's single evaluator maps every worker's file and merges them. Rows stay in the page
cache, so a write costs a few microseconds and nothing touches the disk in the request path.

Layout: a 64-byte header of int64 (magic, columns, capacity, head, claim) then
``capacity`` rows of float64. The writer first raises ``claim`` to the head it is about to
reach, then stores the rows, then advances ``head`` (a seqlock in two counters). A reader
copies the rows below ``head`` and then reads ``claim`` again: every copied row whose slot
a write may have touched meanwhile (position below ``claim - capacity``) is discarded and
counted as dropped, so a reader racing a wrap-around never counts a torn, stale or repeated
row, and says how many it lost.

A writer holds a shared ``flock`` on its file for as long as it lives, so whoever prunes
rings can tell a dead writer's file from a live one without knowing its process id: the
monitor runs in another container of the pod, in another PID namespace, where a worker's
pid means nothing (or another process).
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

import numpy as np

MAGIC = 0x44524946544B5052  # "DRIFTKPR"
HEADER_WORDS = 8
_MAGIC, _COLUMNS, _CAPACITY, _HEAD, _CLAIM = range(5)


class RingWriter:
    """Append-only ring owned by this process (thread-safe within it)."""

    def __init__(self, path: str | Path, columns: int, capacity: int) -> None:
        self.path = Path(path)
        self.columns = columns
        self.capacity = capacity
        size = (HEADER_WORDS + columns * capacity) * 8
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.truncate(size)
        header = np.memmap(tmp, dtype=np.int64, mode="r+", shape=(HEADER_WORDS,))
        header[_COLUMNS], header[_CAPACITY], header[_HEAD] = columns, capacity, 0
        header[_MAGIC] = MAGIC
        header.flush()
        del header
        # Locked before it is visible: a pruner never sees this ring without its writer.
        self._alive = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        fcntl.flock(self._alive, fcntl.LOCK_SH)
        os.replace(tmp, self.path)  # readers never see a file without a header
        self._header = np.memmap(self.path, dtype=np.int64, mode="r+", shape=(HEADER_WORDS,))
        self._data = np.memmap(self.path, dtype=np.float64, mode="r+",
                               offset=HEADER_WORDS * 8, shape=(capacity, columns))
        self._lock = threading.Lock()

    def append(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, self.columns)
        n = len(rows)  # all of them count; only the newest ``capacity`` fit
        rows = rows[-self.capacity:]
        with self._lock:
            head = int(self._header[_HEAD])
            self._header[_CLAIM] = head + n  # readers: these slots are changing
            start = (head + n - len(rows)) % self.capacity
            end = start + len(rows)
            if end <= self.capacity:
                self._data[start:end] = rows
            else:
                split = self.capacity - start
                self._data[start:] = rows[:split]
                self._data[: end - self.capacity] = rows[split:]
            self._header[_HEAD] = head + n

    def close(self) -> None:
        """Let go of the file (its rows stay readable until the ring is pruned)."""
        fd, self._alive = self._alive, -1
        if fd >= 0:
            os.close(fd)


def writer_alive(path: str | Path) -> bool:
    """Whether a process still holds this ring open for writing (its shared lock); False
    for a missing file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the exclusive lock, if it was taken
    return False


def _open(path: str | Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The header and the rows of a ring file, mapped read-only (None: not a ring)."""
    try:
        header = np.memmap(path, dtype=np.int64, mode="r", shape=(HEADER_WORDS,))
        if header[_MAGIC] != MAGIC:
            return None
        columns, capacity = int(header[_COLUMNS]), int(header[_CAPACITY])
        data = np.memmap(path, dtype=np.float64, mode="r", offset=HEADER_WORDS * 8,
                         shape=(capacity, columns))
    except (OSError, ValueError):
        return None
    return header, data


def _copy(header: np.ndarray, data: np.ndarray, first: int, head: int
          ) -> tuple[np.ndarray, int]:
    """Rows at positions [first, head), oldest first, minus those a concurrent write may
    have overwritten while they were copied; returns them and how many were discarded."""
    capacity = len(data)
    take = head - first
    start = first % capacity
    if start + take <= capacity:
        rows = np.array(data[start:start + take])
    else:
        rows = np.concatenate([data[start:], data[:start + take - capacity]])
    claim = max(int(header[_CLAIM]), int(header[_HEAD]))  # after the copy: the seqlock
    stale = min(max(claim - capacity - first, 0), take)
    return rows[stale:], stale


def read_ring(path: str | Path, last: int | None = None) -> np.ndarray:
    """A copy of the rows in a ring file, oldest first (empty if unreadable); with
    ``last``, only the newest ``last`` rows (a window never needs more, and copying a full
    ring of 50,000 rows each tick would cost more than evaluating it)."""
    opened = _open(path)
    if opened is None:
        return np.empty((0, 0))
    header, data = opened
    head = int(header[_HEAD])
    held = min(head, len(data))
    take = held if last is None else min(max(last, 0), held)
    rows, _ = _copy(header, data, head - take, head)
    return rows


def ring_head(path: str | Path) -> int:
    """How many rows were ever appended to a ring (0 if unreadable): its position now."""
    opened = _open(path)
    return 0 if opened is None else int(opened[0][_HEAD])


def read_ring_tail(path: str | Path, position: int) -> tuple[np.ndarray, int, int]:
    """Rows appended since ``position`` (a previous head), oldest first.

    Returns the rows, the current head, and how many rows since ``position`` cannot be read
    (overwritten by the ring wrapping around, before or while they were copied). A head
    below ``position`` means a new file: everything in it is new. Rows returned plus rows
    dropped always equal rows appended since ``position``: none twice, none unaccounted.
    """
    opened = _open(path)
    if opened is None:
        return np.empty((0, 0)), position, 0
    header, data = opened
    head = int(header[_HEAD])
    if head < position:
        position = 0
    new = head - position
    if new == 0:
        return np.empty((0, data.shape[1])), head, 0
    take = min(new, len(data))
    rows, stale = _copy(header, data, head - take, head)
    return rows, head, new - take + stale

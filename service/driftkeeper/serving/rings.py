"""Per-process ring buffers in memory-mapped files: how one pod sees all workers' traffic.

Each gunicorn worker appends its rows to its own file (one writer, no cross-process locks);
the pod's single evaluator maps every worker's file and merges them. Rows stay in the page
cache, so a write costs a few microseconds and nothing touches the disk in the request path.

Layout: a 64-byte header of int64 (magic, columns, capacity, head) then ``capacity`` rows of
float64. The writer stores rows before advancing ``head``; a reader that races a wrap-around
may see one row mid-update, which at worst skews a single sample of the window.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

MAGIC = 0x44524946544B5052  # "DRIFTKPR"
HEADER_WORDS = 8
_MAGIC, _COLUMNS, _CAPACITY, _HEAD = range(4)


def input_columns(n_features: int) -> int:
    """Width of an inputs ring row: the stamp, the features, the model version number and
    the prediction (``serving/monitor.py`` reads them, ``serving/tally.py`` counts them)."""
    return n_features + 3


def feedback_columns(n_features: int) -> int:
    """Width of a feedback ring row: the stamp, the model version number, the residual, the
    prediction and the features (where concept drift lives needs the segment of each)."""
    return n_features + 4


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
        os.replace(tmp, self.path)  # readers never see a file without a header
        self._header = np.memmap(self.path, dtype=np.int64, mode="r+", shape=(HEADER_WORDS,))
        self._data = np.memmap(self.path, dtype=np.float64, mode="r+",
                               offset=HEADER_WORDS * 8, shape=(capacity, columns))
        self._lock = threading.Lock()

    def append(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, self.columns)
        if len(rows) > self.capacity:
            rows = rows[-self.capacity:]
        with self._lock:
            head = int(self._header[_HEAD])
            start = head % self.capacity
            end = start + len(rows)
            if end <= self.capacity:
                self._data[start:end] = rows
            else:
                split = self.capacity - start
                self._data[start:] = rows[:split]
                self._data[: end - self.capacity] = rows[split:]
            self._header[_HEAD] = head + len(rows)


def read_ring(path: str | Path, last: int | None = None) -> np.ndarray:
    """A copy of the rows in a ring file, oldest first (empty if unreadable); with
    ``last``, only the newest ``last`` rows (a window never needs more, and copying a full
    ring of 50,000 rows each tick would cost more than evaluating it)."""
    try:
        header = np.fromfile(path, dtype=np.int64, count=HEADER_WORDS)
        if len(header) < HEADER_WORDS or header[_MAGIC] != MAGIC:
            return np.empty((0, 0))
        columns, capacity = int(header[_COLUMNS]), int(header[_CAPACITY])
        data = np.memmap(path, dtype=np.float64, mode="r", offset=HEADER_WORDS * 8,
                         shape=(capacity, columns))
    except (OSError, ValueError):
        return np.empty((0, 0))
    head = int(np.memmap(path, dtype=np.int64, mode="r", shape=(HEADER_WORDS,))[_HEAD])
    held = min(head, capacity)
    take = held if last is None else min(max(last, 0), held)
    first = (head - take) % capacity
    if first + take <= capacity:
        return np.array(data[first:first + take])
    return np.concatenate([data[first:], data[:first + take - capacity]])


def read_ring_tail(path: str | Path, position: int) -> tuple[np.ndarray, int, int]:
    """Rows appended since ``position`` (a previous head), oldest first.

    Returns the rows, the current head, and how many rows since ``position`` were already
    overwritten by the ring wrapping around (they cannot be read any more). A head below
    ``position`` means a new file: everything in it is new.
    """
    try:
        header = np.fromfile(path, dtype=np.int64, count=HEADER_WORDS)
        if len(header) < HEADER_WORDS or header[_MAGIC] != MAGIC:
            return np.empty((0, 0)), position, 0
        columns, capacity = int(header[_COLUMNS]), int(header[_CAPACITY])
        head = int(header[_HEAD])
        if head < position:
            position = 0
        new = head - position
        if new == 0:
            return np.empty((0, columns)), head, 0
        data = np.memmap(path, dtype=np.float64, mode="r", offset=HEADER_WORDS * 8,
                         shape=(capacity, columns))
    except (OSError, ValueError):
        return np.empty((0, 0)), position, 0
    take = min(new, capacity)
    first = (head - take) % capacity
    if first + take <= capacity:
        rows = np.array(data[first:first + take])
    else:
        rows = np.concatenate([data[first:], data[:first + take - capacity]])
    return rows, head, new - take


def read_rings(directory: str | Path, prefix: str, last: int | None = None
               ) -> list[np.ndarray]:
    """Every process's ring with this prefix (one array per process; with ``last``, each
    ring's newest ``last`` rows)."""
    out = []
    for path in sorted(Path(directory).glob(f"{prefix}-*.ring")):
        rows = read_ring(path, last)
        if rows.size:
            out.append(rows)
    return out

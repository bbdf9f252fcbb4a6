"""The feedback store: labelled rows kept under the model directory for retraining.

Each process appends to its own CSV segment (no locks between gunicorn workers, no
interleaved lines); a segment is closed after ``segment_rows`` rows and the oldest segments
are deleted once the store holds more than ``max_rows``, counted row by row (each closed
segment once, then remembered; the service prunes from its background loop, never on the
request path). CSV keeps it readable with any tool; each row ends with a CRC-32 of its
fields, so a row cut short by a crash (a price of 1500 written as 15) is recognised and
skipped, never learned from. Files in the directory that are not segments are ignored.

Durability is a group commit: :meth:`FeedbackStore.append` returns a sequence number and
:meth:`FeedbackStore.commit` waits until the rows up to it are on disk. One caller fsyncs
for every row written so far while the others wait for it (after a pause of
``commit_delay`` to let concurrent requests join), so a request is answered only once its
rows are durable, at the cost of one fsync per group rather than per request.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import threading
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..schema import FeatureSchema, level_text

if TYPE_CHECKING:  # reading is for training; the service only appends, without pandas
    import pandas as pd

META_COLUMNS = ("ts", "model_version", "prediction")
CHECK_COLUMN = "crc"
UNCHECKED = "-"  # rows of segments written before rows had checksums
SEGMENT_NAME = re.compile(r"^(\d+)-(\d+)\.csv$")  # <time_ns>-<pid>.csv


def row_checksum(fields: list[str]) -> str:
    """CRC-32 (hex) of a row's fields as written: a torn row cannot match it."""
    return format(zlib.crc32(",".join(fields).encode()), "08x")


def _stamp(micros: int) -> str:
    """Seconds with six decimals, exactly, from integer microseconds."""
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{seconds}.{fraction:06d}"


class FeedbackStore:
    """Bounded, append-only store of labelled rows, safe for several writer processes."""

    def __init__(self, directory: str | Path, schema: FeatureSchema, max_rows: int = 200_000,
                 segment_rows: int = 10_000, commit_delay: float = 0.001) -> None:
        self.directory = Path(directory)
        self.schema = schema
        self.max_rows = max_rows
        self.segment_rows = segment_rows
        # Categories and classes are written as the text they are compared as (a class
        # sent as the JSON number 1.0 is stored as "1", and reads back as that class).
        self.classification = schema.target.is_classification
        self.columns = [*META_COLUMNS, *schema.names, schema.target.name, CHECK_COLUMN]
        self._lock = threading.Lock()
        self._fh = None
        self._writer = None
        self._rows_in_segment = 0
        self._pid = 0
        self._last_stamp_us = 0
        self.commit_delay = commit_delay
        self._written = 0  # sequence number of the last row written (to the OS)
        self._durable = 0  # ... and of the last row known to be on disk
        self._syncing = False
        self._synced = threading.Condition()
        self._unsynced: list = []  # files written to since their last fsync (and new dirs)
        self._sizes: dict[tuple[str, int, int], int] = {}  # counted segments' rows
        self.prune_due = False

    # -- writing -----------------------------------------------------------------------

    def append(self, rows: list[dict], model_version: str, predictions: np.ndarray,
               prune: bool = True) -> int:
        """Append labelled rows (validated dicts with features and target) with the
        prediction the serving model made for them; returns the sequence number to pass to
        :meth:`commit`. With ``prune`` False, a full store is pruned only by :meth:`prune`
        (the service calls it off the request path)."""
        with self._lock:
            self._ensure_segment()
            assert self._writer is not None and self._fh is not None
            names = self.schema.names
            target = self.schema.target.name
            texts = [f.kind == "categorical" for f in self.schema.features]
            # Distinct, ordered stamps a whole microsecond apart, counted in integers (float
            # seconds rounded to six places can give two rows one stamp): the retrain splits
            # fresh labels into training and judging rows by time.
            start = max(time.time_ns() // 1000, self._last_stamp_us + 1)
            self._last_stamp_us = start + len(rows) - 1
            for i, (row, pred) in enumerate(zip(rows, predictions, strict=True)):
                fields = [_stamp(start + i), model_version, f"{pred:.6g}",
                          *(level_text(row[n]) if text else str(row[n])
                            for n, text in zip(names, texts, strict=True)),
                          level_text(row[target]) if self.classification
                          else str(row[target])]
                self._writer.writerow([*fields, row_checksum(fields)])
            self._fh.flush()  # to the OS: visible to readers; commit() makes it durable
            if self._fh not in self._unsynced:
                self._unsynced.append(self._fh)
            self._written += len(rows)
            ticket = self._written
            self._rows_in_segment += len(rows)
            if self._rows_in_segment >= self.segment_rows:
                self._close_segment()
                self.prune_due = True
        if prune and self.prune_due:
            self.prune()
        return ticket

    def commit(self, ticket: int) -> None:
        """Return once every row up to ``ticket`` (from :meth:`append`) is on disk: fsync
        once for everything written so far, or wait for the thread doing it. An fsync that
        fails raises here (the caller must not acknowledge the rows); a later commit tries
        again."""
        with self._synced:
            while self._durable < ticket and self._syncing:
                self._synced.wait()
            if self._durable >= ticket:
                return
            self._syncing = True
        synced, files = False, []
        try:
            if self.commit_delay > 0:
                time.sleep(self.commit_delay)  # let concurrent requests join this group
            with self._lock:
                upto = self._written
                files, self._unsynced = self._unsynced, []
            for item in files:
                _fsync(item)
            synced = True
        finally:
            if not synced:
                with self._lock:  # still not durable: the next commit syncs them
                    self._unsynced = [*files, *(f for f in self._unsynced if f not in files)]
            with self._synced:
                self._syncing = False
                if synced:
                    self._durable = max(self._durable, upto)
                self._synced.notify_all()

    def _ensure_segment(self) -> None:
        pid = os.getpid()
        # A fork, or another process pruned our segment: start a fresh one.
        if self._fh is not None and (pid != self._pid
                                     or os.fstat(self._fh.fileno()).st_nlink == 0):
            self._close_segment()
        if self._fh is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{time.time_ns()}-{pid}.csv"
            self._fh = open(path, "a", newline="")  # noqa: SIM115 - kept open across appends
            self._writer = csv.writer(self._fh)
            self._writer.writerow(self.columns)
            self._rows_in_segment = 0
            self._pid = pid
            self._unsynced.append(self.directory)  # the new file's name must be durable too

    def _close_segment(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.flush()
                os.fsync(self._fh.fileno())  # a closed segment is durable: commit skips it
                self._fh.close()
            if self._fh in self._unsynced:
                self._unsynced.remove(self._fh)
        self._fh = None
        self._writer = None

    def close(self) -> None:
        with self._lock:
            self._close_segment()

    def _segments(self) -> list[Path]:
        """Segment files, oldest first; anything else in the directory is not ours."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            match = SEGMENT_NAME.match(path.name)
            if match and path.is_file():
                found.append(((int(match.group(1)), int(match.group(2))), path))
        return [path for _, path in sorted(found)]

    def prune(self) -> None:
        """Delete the oldest segments while the rest still hold at least ``max_rows`` rows
        (counted, not assumed: a segment closed early by a restart holds fewer). Each
        segment is counted once per size and remembered, so pruning reads only new ones."""
        self.prune_due = False
        segments = self._segments()
        sizes = [self._rows_of(p) for p in segments]
        while segments and sum(sizes[1:]) >= self.max_rows:
            with contextlib.suppress(FileNotFoundError):
                segments[0].unlink()
            segments.pop(0)
            sizes.pop(0)
        live = {p.name for p in segments}
        self._sizes = {k: v for k, v in self._sizes.items() if k[0] in live}

    def _rows_of(self, path: Path) -> int:
        try:
            st = path.stat()
        except OSError:
            return 0
        key = (path.name, st.st_size, st.st_mtime_ns)
        if key not in self._sizes:
            self._sizes[key] = _line_count(path)
        return self._sizes[key]

    # -- reading -----------------------------------------------------------------------

    def count(self, since: float | None = None) -> int:
        """Labelled rows stored (with ``ts >= since``), reading only the time column."""
        import pandas as pd

        total = 0
        for path in self._segments():
            try:
                ts = pd.read_csv(path, usecols=["ts"], on_bad_lines="skip")["ts"]
            except (pd.errors.EmptyDataError, FileNotFoundError, ValueError):
                continue
            ts = pd.to_numeric(ts, errors="coerce")
            total += int((ts >= since).sum()) if since is not None else int(ts.notna().sum())
        return total

    def read(self, limit: int | None = None, since: float | None = None,
             until: float | None = None) -> pd.DataFrame:
        """The newest ``limit`` labelled rows (all if None) with ``since <= ts < until``,
        oldest first, canonical dtypes, plus ``ts``, ``model_version`` and ``prediction``."""
        import pandas as pd

        from ..data import canonicalize

        frames = []
        for path in self._segments():
            try:  # as text: the checksums are over the fields exactly as written
                frame = pd.read_csv(path, dtype=str, keep_default_na=False,
                                    on_bad_lines="skip")
            except (pd.errors.EmptyDataError, FileNotFoundError):
                continue
            if CHECK_COLUMN not in frame.columns:  # written before rows had checksums
                frame[CHECK_COLUMN] = UNCHECKED
            frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=[c for c in self.columns if c != CHECK_COLUMN])
        raw = pd.concat(frames, ignore_index=True)
        raw = raw[self._valid_rows(raw)].copy()
        raw["ts"] = pd.to_numeric(raw["ts"])
        raw["prediction"] = pd.to_numeric(raw["prediction"])
        raw = raw.sort_values("ts", kind="stable")
        if since is not None:
            raw = raw[raw["ts"] >= since]
        if until is not None:
            raw = raw[raw["ts"] < until]
        if limit is not None:
            raw = raw.tail(limit)
        out = canonicalize(raw, self.schema, source=str(self.directory))
        out.index = raw.index
        for col in META_COLUMNS:
            out[col] = raw[col].to_numpy()
        return out.reset_index(drop=True)

    def _valid_rows(self, raw: pd.DataFrame) -> np.ndarray:
        """Rows that survived intact: their checksum matches (a crash can leave a torn last
        line in a segment), and they still encode and carry a finite target."""
        import pandas as pd

        data_columns = [c for c in self.columns if c != CHECK_COLUMN]
        if raw.empty or any(c not in raw.columns for c in data_columns):
            return np.zeros(len(raw), dtype=bool)
        fields = raw[data_columns].fillna("").astype(str)
        expected = np.array([row_checksum(list(r))
                             for r in fields.itertuples(index=False, name=None)])
        written = raw[CHECK_COLUMN].fillna("").astype(str).to_numpy()
        intact = (written == expected) | (written == UNCHECKED)
        numbers = np.column_stack([pd.to_numeric(raw[c], errors="coerce").to_numpy(np.float64)
                                   for c in ("ts", "prediction")]
                                  + [self.schema.encode_target(raw[self.schema.target.name])])
        finite = np.isfinite(numbers).all(axis=1)
        return intact & finite & self.schema.complete_rows(self.schema.encode(raw))


def _fsync(item: object) -> None:
    """fsync an open file, or a directory by path (so a new file's name survives a crash)."""
    if isinstance(item, Path):
        fd = os.open(item, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return
    with contextlib.suppress(ValueError):  # closed meanwhile: close() flushed and synced it
        os.fsync(item.fileno())  # type: ignore[attr-defined]


def _line_count(path: Path) -> int:
    """Data rows in a segment (lines after the header), without parsing them."""
    try:
        with open(path, "rb") as fh:
            return max(sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20),
                                                                 b"")) - 1, 0)
    except OSError:
        return 0

"""The feedback store: labelled rows kept under the model directory for retraining.

Each process appends to its own CSV segment (no locks between gunicorn workers, no
interleaved lines); a segment is closed after ``segment_rows`` rows and the oldest segments
are deleted once the store holds more than ``max_rows``. CSV keeps it readable with any tool.
"""

from __future__ import annotations

import contextlib
import csv
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..schema import FeatureSchema

if TYPE_CHECKING:  # reading is for training; the service only appends, without pandas
    import pandas as pd

META_COLUMNS = ("ts", "model_version", "prediction")


class FeedbackStore:
    """Bounded, append-only store of labelled rows, safe for several writer processes."""

    def __init__(self, directory: str | Path, schema: FeatureSchema, max_rows: int = 200_000,
                 segment_rows: int = 10_000) -> None:
        self.directory = Path(directory)
        self.schema = schema
        self.max_rows = max_rows
        self.segment_rows = segment_rows
        self.columns = [*META_COLUMNS, *schema.names, schema.target.name]
        self._lock = threading.Lock()
        self._fh = None
        self._writer = None
        self._rows_in_segment = 0
        self._pid = 0

    # -- writing -----------------------------------------------------------------------

    def append(self, rows: list[dict], model_version: str, predictions: np.ndarray) -> None:
        """Append labelled rows (validated dicts with features and target) with the
        prediction the serving model made for them."""
        now = time.time()
        with self._lock:
            self._ensure_segment()
            assert self._writer is not None and self._fh is not None
            names = self.schema.names
            target = self.schema.target.name
            # Distinct, ordered stamps (a microsecond apart) even within one batch: the
            # retrain splits fresh labels into training and judging rows by time.
            for i, (row, pred) in enumerate(zip(rows, predictions, strict=True)):
                self._writer.writerow([f"{now + i * 1e-6:.6f}", model_version, f"{pred:.6g}",
                                       *(row[n] for n in names), row[target]])
            self._fh.flush()
            self._rows_in_segment += len(rows)
            if self._rows_in_segment >= self.segment_rows:
                self._close_segment()
                self._prune()

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

    def _close_segment(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
        self._fh = None
        self._writer = None

    def close(self) -> None:
        with self._lock:
            self._close_segment()

    def _segments(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("*.csv"), key=lambda p: int(p.name.split("-")[0]))

    def _prune(self) -> None:
        """Delete the oldest segments while the rest still hold at least ``max_rows``."""
        segments = self._segments()
        sizes = [self.segment_rows] * len(segments)  # closed segments are full; cheap estimate
        while segments and sum(sizes[1:]) >= self.max_rows:
            with contextlib.suppress(FileNotFoundError):
                segments[0].unlink()
            segments.pop(0)
            sizes.pop(0)

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
            try:
                frame = pd.read_csv(path, on_bad_lines="skip", dtype={"model_version": str})
            except (pd.errors.EmptyDataError, FileNotFoundError):
                continue
            frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=self.columns)
        raw = pd.concat(frames, ignore_index=True)
        raw = raw.dropna().sort_values("ts", kind="stable")
        raw = raw[self._valid_rows(raw)]
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
        """Rows that survived intact (a crash can leave a torn last line in a segment)."""
        import pandas as pd

        target = pd.to_numeric(raw[self.schema.target.name], errors="coerce").to_numpy()
        return self.schema.complete_rows(self.schema.encode(raw)) & np.isfinite(target)

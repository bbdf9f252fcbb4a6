"""Each ring's rows read once, with what costs something per row derived once.

The monitor reads every worker's ring from where it left off. For each row it reads it
derives, once: an input row's loss-model estimate of its squared error (the serving
version's rows only), and a labelled row's log loss and its segment in every segment
feature. The tally counts the rows it has not counted yet with these values
(``tally.py``), and the monitor keeps each ring's newest rows, values included, in memory:
every evaluation's window is cut from that copy (``monitor.py``) and reuses them. So an
evaluation costs what its window's size costs, never what a ring's capacity or the
evaluation interval would.

The copy is rebuilt from the rings (the newest ``size`` rows of each) when the monitor
starts, when the serving version changes (its loss model and segments differ) and when a
window grows; rows the tally already counted are then only kept, not counted again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..contract.rings import FeedbackRows, InputRows
from ..drift.probability import row_measures
from ..drift.profile import ReferenceProfile
from ..drift.segments import segment_ids, segment_matrix
from .rings import read_ring_tail

Estimator = Callable[[np.ndarray, np.ndarray], np.ndarray | None]
"""The serving version's loss model: (features, predictions) -> estimated squared errors,
or None when the version has none."""

# Derived columns, appended after a ring row's own columns (contract/rings.py):
ESTIMATE = 0  # input rows: the estimated squared error (NaN: another version's row)
LOG_LOSS = 0  # labelled rows: the log loss (NaN for a regression)
CORRECT = 1  # labelled rows: 1.0 when the predicted class was right (0.0 for a regression)
SEGMENTS = 2  # labelled rows: segment ids per segment feature (-1: none), from here on


@dataclass(frozen=True)
class Derivation:
    """The serving version whose values are derived: they hold for its rows only."""

    profile: ReferenceProfile
    version: str
    number: int
    estimate: Estimator | None = None

    @property
    def inputs(self) -> InputRows:
        return InputRows(len(self.profile.schema.features), self.profile.n_classes)

    @property
    def feedback(self) -> FeedbackRows:
        return FeedbackRows(len(self.profile.schema.features), self.profile.n_classes)

    def derive_inputs(self, rows: np.ndarray) -> np.ndarray:
        """Rows with the estimate column: estimated for this version's rows only."""
        layout = self.inputs
        estimates = np.full(len(rows), np.nan)
        served = layout.versions(rows) == self.number
        if self.estimate is not None and served.any():
            found = self.estimate(layout.features(rows[served]),
                                  layout.predictions(rows[served]))
            if found is not None:
                estimates[served] = found
        return np.column_stack([rows, estimates])

    def derive_feedback(self, rows: np.ndarray) -> np.ndarray:
        """Rows with the log loss, correct and segment id columns."""
        layout = self.feedback
        losses, hits = row_measures(self.profile.n_classes, layout.residuals(rows),
                                    layout.predictions(rows), layout.outcomes(rows))
        segments = self.profile.segments
        labels = layout.labels(rows) if self.profile.n_classes >= 3 else None
        ids = (np.empty((len(rows), 0)) if segments is None
               else segment_ids(segments.layout, segment_matrix(layout.features(rows), labels)))
        return np.column_stack([rows, losses, hits, ids])


@dataclass(frozen=True)
class NewRows:
    """Rows of one ring that the tally has not counted, with their derived columns."""

    ring: str
    prefix: str
    rows: np.ndarray  # ring columns, then the derived ones
    dropped: int  # rows appended since the last count that the ring no longer held
    head: int
    inode: int


@dataclass
class _RingCopy:
    inode: int
    head: int  # the ring position just after the newest row held
    rows: np.ndarray


@dataclass
class RecentRows:
    """The monitor's copy of each ring's newest rows, derived columns included."""

    rings: dict[str, _RingCopy] = field(default_factory=dict)
    version: str | None = None
    sizes: dict[str, int] = field(default_factory=dict)

    def update(self, windows_dir: Path, derivation: Derivation,
               counted: Mapping[str, list[int]], sizes: Mapping[str, int]
               ) -> Iterator[NewRows]:
        """Read every ring from where this copy (or, for a new copy, the tally's
        ``counted`` positions, ring -> [inode, head]) left off; keep each ring's newest
        ``sizes[prefix]`` rows and yield the rows not counted yet."""
        if derivation.version != self.version or any(
                sizes.get(p, 0) > self.sizes.get(p, 0) for p in sizes):
            self.rings.clear()  # another version's values, or too few rows kept
        self.version, self.sizes = derivation.version, dict(sizes)
        widths = {InputRows.prefix: derivation.inputs.width,
                  FeedbackRows.prefix: derivation.feedback.width}
        seen = set()
        for path in sorted(windows_dir.glob("*.ring")):
            prefix = path.name.rsplit("-", 1)[0]
            if prefix not in widths:
                continue
            try:
                inode = path.stat().st_ino
            except OSError:
                continue
            seen.add(path.name)
            counted_inode, position = counted.get(path.name, [inode, 0])
            if counted_inode != inode:  # a worker re-created its ring: a new file
                position = 0
            keep = sizes.get(prefix, 0)
            copy = self.rings.get(path.name)
            if copy is None or copy.inode != inode or copy.head != position:
                copy = _RingCopy(inode, max(position - keep, 0), np.empty((0, 0)))
            rows, head, _ = read_ring_tail(path, copy.head)
            if head < copy.head:  # the file started over under the same inode
                position, copy.rows = 0, np.empty((0, 0))
            if rows.size and rows.shape[1] != widths[prefix]:
                # Another schema's ring: not this version's rows; passed over, not lost.
                self.rings.pop(path.name, None)
                yield NewRows(path.name, prefix, np.empty((0, 0)), 0, head, inode)
                continue
            first = head - len(rows)  # the ring position of rows[0]
            if first > copy.head:  # rows in between were overwritten unread: the held rows
                copy.rows = np.empty((0, 0))  # are no longer among the ring's newest
            derived = self._derive(derivation, prefix, rows)
            self.rings[path.name] = _RingCopy(inode, head, _newest(copy.rows, derived, keep))
            # Rows from the tally's position on are new to it; those between it and the
            # first row still readable were overwritten before they could be counted.
            yield NewRows(path.name, prefix, derived[max(position - first, 0):],
                          max(first - position, 0), head, inode)
        for gone in set(self.rings) - seen:
            del self.rings[gone]

    def held(self, prefix: str) -> list[np.ndarray]:
        """Each ring's copy (oldest row first) of one kind, derived columns included."""
        return [c.rows for name, c in sorted(self.rings.items())
                if name.rsplit("-", 1)[0] == prefix and len(c.rows)]

    @staticmethod
    def _derive(derivation: Derivation, prefix: str, rows: np.ndarray) -> np.ndarray:
        if prefix == InputRows.prefix:
            rows = rows.reshape(-1, derivation.inputs.width)
            return derivation.derive_inputs(rows)
        rows = rows.reshape(-1, derivation.feedback.width)
        return derivation.derive_feedback(rows)


def _newest(held: np.ndarray, new: np.ndarray, keep: int) -> np.ndarray:
    """The newest ``keep`` rows of the held rows followed by the new ones."""
    if keep <= 0:
        return new[:0]
    if len(new) >= keep or not held.size:
        return new[-keep:]
    return np.concatenate([held[-(keep - len(new)):], new])

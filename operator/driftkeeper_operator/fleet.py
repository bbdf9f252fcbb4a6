"""The fleet's windows from successive readings of every replica's counters.

A policy's window is "the ``size`` newest rows, none older than ``maxAge``". Counters only
say how many rows arrived between two readings, so the window is chosen among readings:
the newest earlier reading from which the fleet counted at least ``size`` rows, or, when
there are not that many, the oldest one still within ``maxAge``. Each replica is
differenced against its own earlier reading; a replica whose counters restarted (a
promotion or a pod restart) or that was not there yet counts everything since its counters
started, when that lies within the window.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections import deque
from dataclasses import dataclass

from driftkeeper.errors import DriftkeeperError
from driftkeeper.model.store import version_number

from .counters import Counters, total

DENSE_READINGS = 60
"""The newest readings, all kept: a window of the next few minutes starts at any of them."""
THINNING = 32
"""Older readings are thinned so that their spacing grows with their age (a reading
stays while it is at least age / THINNING after the one kept before it): a window reaching
back ``age`` starts within a few percent of where an unthinned history would start it, and
a 6 h look-back at a 5 s interval holds about 160 readings instead of 4,320."""
MAX_READINGS = 2000
"""A hard cap whatever the interval and horizon (the thinning keeps far fewer)."""


@dataclass(frozen=True)
class Reading:
    """Every ready replica's counters at one evaluation."""

    at: float
    replicas: dict[str, Counters]  # replica (pod name or address) -> counters


@dataclass(frozen=True)
class Window:
    """The fleet's window of one kind: summed counters, how many replicas, since when."""

    counts: Counters
    replicas: int
    since: float | None  # the reading it starts after; None = since the counters started


class FleetHistory:
    """Readings of one policy's replicas, newest last: every reading up to ``horizon``
    (the policy's largest maxAge) back, the older ones thinned (see ``THINNING``)."""

    def __init__(self, horizon: float, max_readings: int = MAX_READINGS) -> None:
        self.horizon = horizon
        self.readings: deque[Reading] = deque(maxlen=max_readings)

    def add(self, reading: Reading) -> None:
        self.readings.append(reading)
        # Keep one reading at or beyond the horizon: the window of "everything within
        # maxAge" starts from it.
        while len(self.readings) > 1 and self.readings[1].at <= reading.at - self.horizon:
            self.readings.popleft()
        if len(self.readings) > DENSE_READINGS:
            self._thin(reading.at)

    def _thin(self, now: float) -> None:
        """Drop older readings that sit closer than age / THINNING to the older reading
        kept before them (the oldest, which bounds the horizon, always stays)."""
        readings = list(self.readings)
        sparse, dense = readings[:-DENSE_READINGS], readings[-DENSE_READINGS:]
        kept = [sparse[0]]
        for r in sparse[1:]:
            if r.at - kept[-1].at >= (now - r.at) / THINNING:
                kept.append(r)
        if len(kept) < len(sparse):
            self.readings = deque([*kept, *dense], maxlen=self.readings.maxlen)

    @property
    def latest(self) -> Reading | None:
        return self.readings[-1] if self.readings else None

    def serving_version(self) -> str | None:
        """The version most replicas count for (ties: the newest)."""
        latest = self.latest
        if latest is None:
            return None
        votes = Tally(c.version for c in latest.replicas.values() if c.version)
        if not votes:
            return None
        return max(votes, key=lambda v: (votes[v], version_order(v)))

    def window(self, kind: str, version: str, size: int, max_age: float) -> Window:
        """The newest window of ``kind`` ("data" or "concept") with at least ``size`` rows,
        or the largest one within ``max_age``."""
        latest = self.latest
        if latest is None:
            return Window(total([]), 0, None)
        now = latest.at
        current = {r: c for r, c in latest.replicas.items() if c.version == version}
        if not current:
            return Window(total([]), 0, None)
        earlier = [i for i in range(len(self.readings) - 2, -1, -1)
                   if self.readings[i].at >= now - max_age]
        # "Since the counters began" is a window of its own only if some began within it.
        origin = [None] if any(c.started is not None and c.started >= now - max_age
                               for c in current.values()) or not earlier else []
        candidates = [*earlier, *origin]  # newest start first: rows only grow along it

        def window_from(index: int | None) -> Window:
            parts = [c.minus(self._baseline(r, c, index, now - max_age))
                     for r, c in current.items()]
            return Window(total(parts), len(parts),
                          None if index is None else self.readings[index].at)

        # The oldest start gives the most rows: if even it has too few, it is the answer
        # (the largest window within maxAge). Otherwise the first candidate with enough
        # rows, by bisection: a tick costs log2(readings) differences of every replica's
        # counters, not one per reading (1,000 readings of 10 replicas at low traffic were
        # 10,000 differences a tick).
        found = window_from(candidates[-1])
        if found.counts.rows(kind) < size:
            return found
        lo, hi = 0, len(candidates) - 2
        while lo <= hi:
            mid = (lo + hi) // 2
            window = window_from(candidates[mid])
            if window.counts.rows(kind) >= size:
                found, hi = window, mid - 1
            else:
                lo = mid + 1
        return found

    def _baseline(self, replica: str, current: Counters, index: int | None,
                  oldest: float) -> Counters | None:
        """What to subtract from ``current`` for a window starting after reading ``index``
        (None: as early as ``oldest`` allows). None means "everything it counted"."""
        if index is not None:
            old = self.readings[index].replicas.get(replica)
            if old is not None and current.same_series(old):
                return old
            start = self.readings[index].at
        else:
            start = oldest
        if current.started is not None and current.started >= start:
            return None  # its counters began after the window's start: all of them count
        # The oldest reading of them since the window's start (rows before it are unknown).
        first = index + 1 if index is not None else next(
            j for j, r in enumerate(self.readings) if r.at >= oldest)
        for j in range(first, len(self.readings)):
            old = self.readings[j].replicas.get(replica)
            if old is not None and current.same_series(old):
                return old
        return current


def version_order(version: str) -> int:
    """v12 -> 12, so that versions sort by age (-1 for anything else)."""
    try:
        return version_number(version)
    except DriftkeeperError:
        return -1

"""Fresh labels counted across replicas whose counters restart.

A retrain needs the labelled rows that arrived since the drift episode began. Each replica
exports a cumulative count; summing the raw counts goes down when a pod restarts, is
scaled away or misses a scrape, and a retrain would then wait forever. So each replica is
differenced against its own previous reading, as the window counters are: an increase
counts, a counter that restarted (another series, or a lower value) counts what it holds
only when it started within the episode (otherwise how much of it is new is unknown, and
nothing is counted rather than too much), and a replica missing from a reading keeps its
last value, so that it is neither lost nor counted twice when it comes back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

FORGET_AFTER = 3600.0
"""Seconds after which a replica not seen again is forgotten (bounds the memory)."""


@dataclass(frozen=True)
class LabelReading:
    """One replica's label counter at one reading."""

    count: float
    series: str | None  # the counter's identity (model version and start); None: unknown
    started: float | None = None  # when the counter started from zero, if known


@dataclass(frozen=True)
class _Seen:
    series: str | None
    count: float
    at: float


@dataclass(frozen=True)
class LabelTally:
    """Labels counted since the episode began, and each replica's last reading."""

    fresh: int = 0
    seen: dict[str, _Seen] = field(default_factory=dict)

    def advance(self, readings: Mapping[str, LabelReading], now: float,
                episode_start: float | None) -> LabelTally:
        """Take one reading of every replica that answered. Outside an episode
        (``episode_start`` None) nothing is fresh; the readings only become baselines."""
        counting = episode_start is not None
        fresh = float(self.fresh) if counting else 0.0
        seen = dict(self.seen)
        for replica, reading in readings.items():
            before = seen.get(replica)
            if counting:
                fresh += _increase(before, reading, episode_start)  # type: ignore[arg-type]
            seen[replica] = _Seen(reading.series, reading.count, now)
        seen = {r: s for r, s in seen.items() if now - s.at <= FORGET_AFTER}
        return replace(self, fresh=round(fresh), seen=seen)

    def to_dict(self) -> dict[str, Any]:
        return {"fresh": self.fresh,
                "seen": {r: [s.series, s.count, s.at] for r, s in sorted(self.seen.items())}}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any] | None) -> LabelTally:
        if not doc:
            return cls()
        seen = {}
        for replica, value in (doc.get("seen") or {}).items():
            try:
                series, count, at = value
                seen[str(replica)] = _Seen(series, float(count), float(at))
            except (TypeError, ValueError):
                continue  # a damaged entry: that replica starts again from its next reading
        return cls(int(doc.get("fresh") or 0), seen)


def _increase(before: _Seen | None, now: LabelReading, episode_start: float) -> float:
    """What one replica added since its previous reading (see the module docstring)."""
    if before is not None and before.series == now.series and now.count >= before.count:
        return now.count - before.count
    # A new replica, or its counter restarted: all of it is fresh only if it began within
    # the episode.
    if now.started is not None and now.started >= episode_start:
        return now.count
    return 0.0

"""Warning Events without floods: one per distinct error, repeated at a growing interval.

A policy whose target is gone, or whose evaluation keeps failing, would otherwise post a
Warning Event every interval (every few seconds, for hours). Events are for people:
``kubectl describe`` should say once what is wrong, remind now and then while it lasts,
and the Ready condition says it continuously. Normal events (decisions such as
RetrainStarted) pass untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from driftkeeper.policy.engine import Event

FIRST_REPEAT = 60.0  # seconds before the same warning is posted again
MAX_REPEAT = 3600.0  # the interval doubles up to this
_NUMBER = re.compile(r"\d+(\.\d+)?")


def error_key(event: Event) -> tuple[str, str]:
    """Warnings that differ only in numbers (scores, counts, addresses) are one error."""
    return event.reason, _NUMBER.sub("#", event.message)


@dataclass
class _Posted:
    last: float  # when it was last posted
    interval: float  # how long until it may be posted again
    seen: float  # when it was last offered
    suppressed: int = 0


class EventThrottle:
    """Decides, per policy, which Warning events to post."""

    def __init__(self, first: float = FIRST_REPEAT, cap: float = MAX_REPEAT) -> None:
        self.first, self.cap = first, cap
        self._posted: dict[tuple[str, str], _Posted] = {}

    def admit(self, event: Event, now: float) -> Event | None:
        """The event to post now (a repeat says how many were held back), or None."""
        if event.type != "Warning":
            return event
        self._forget(now)
        key = error_key(event)
        seen = self._posted.get(key)
        if seen is None:
            self._posted[key] = _Posted(now, self.first, now)
            return event
        seen.seen = now
        if now - seen.last < seen.interval:
            seen.suppressed += 1
            return None
        repeated = seen.suppressed
        self._posted[key] = _Posted(now, min(seen.interval * 2, self.cap), now)
        note = f" (still so; {repeated} repeats not posted)" if repeated else ""
        return Event(event.type, event.reason, event.message + note, event.time)

    def _forget(self, now: float) -> None:
        """An error not offered again for longer than its interval has cleared: if it
        comes back it is posted at once. (Bounds the memory to current errors.)"""
        stale = [k for k, p in self._posted.items() if now - p.seen > p.interval]
        for key in stale:
            del self._posted[key]

    def clear(self, reason: str) -> None:
        """The condition behind ``reason`` is resolved: forget it (posted again at once)."""
        for key in [k for k in self._posted if k[0] == reason]:
            del self._posted[key]

    def __len__(self) -> int:
        return len(self._posted)

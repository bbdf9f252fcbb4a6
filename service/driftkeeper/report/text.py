"""Words and numbers shared by the figures and the page, so both say the same thing."""

from __future__ import annotations

import math
from datetime import UTC, datetime

DRIFT, OK, INSUFFICIENT = "DRIFT", "ok", "insufficient data"

VERDICT_COLOURS = {DRIFT: "#c0392b", OK: "#2e7d32", INSUFFICIENT: "#757575"}
"""Red for drift, green for ok, grey for 'too few rows to say'."""

VERDICT_CLASSES = {DRIFT: "drift", OK: "ok", INSUFFICIENT: "insufficient"}


def verdict(drift: bool | None) -> str:
    """The report's three-valued verdict in words: ``None`` is not "no drift"."""
    if drift is None:
        return INSUFFICIENT
    return DRIFT if drift else OK


def number(value: float | int | None, digits: int = 4) -> str:
    """A score, threshold or price for people: 4 significant digits, thousands separated,
    and a dash for a missing value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def percent(share: float) -> str:
    """A share as a percentage with one decimal, '<0.1%' rather than a misleading '0.0%'."""
    if 0 < share < 0.001:
        return "<0.1%"
    return f"{100 * share:.1f}%"


def timestamp(epoch: float | None) -> str:
    """Unix time as UTC text; the service and the CLI both record ``time.time()``."""
    if epoch is None:
        return "not recorded"
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

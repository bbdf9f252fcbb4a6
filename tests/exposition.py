"""A pod's window counters as /metrics exposes them, for tests that parse that text."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from driftkeeper.serving.metrics import TallyCollector
from driftkeeper.serving.tally import Tally


def tally_exposition(tally: Tally, directory: Path) -> str:
    """The text a scrape returns for ``tally`` (through the service's own collector)."""
    path = directory / "tally-exposed.json"
    tally.save(path)
    registry = CollectorRegistry()
    registry.register(TallyCollector(path))
    return generate_latest(registry).decode()

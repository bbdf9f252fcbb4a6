"""The service's configuration: one typed object from flags and environment, checked early."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import DriftkeeperError

ENV_PREFIX = "DRIFTKEEPER_"
MONITOR_MODES = ("internal", "external")


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of one service pod. Every field can come from ``DRIFTKEEPER_<FIELD>``."""

    model_dir: Path
    state_dir: Path
    policy: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    threads: int = 2
    max_rows: int = 10_000  # rows per request
    max_body_bytes: int = 4 * 1024 * 1024
    reload_interval: float = 1.0  # seconds between checks of `current` and the policy file
    feedback_max_rows: int = 200_000
    ring_capacity: int = 50_000  # rows remembered per worker (>= the largest window)
    access_log: bool = False
    # internal: `serve` runs and restarts the monitor process itself; external: something
    # else does (the chart's monitor container), and `serve` keeps the monitor's files.
    monitor: str = "internal"

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.port < 65536:
            problems.append(f"port must be 1-65535, got {self.port}")
        for name in ("workers", "threads", "max_rows", "max_body_bytes", "feedback_max_rows",
                     "ring_capacity"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.monitor not in MONITOR_MODES:
            problems.append(f"monitor must be one of {', '.join(MONITOR_MODES)}, "
                            f"got {self.monitor!r}")
        if self.reload_interval <= 0:
            problems.append(f"reload_interval must be > 0, got {self.reload_interval}")
        if problems:
            raise DriftkeeperError("invalid service configuration: " + "; ".join(problems))

    @property
    def prometheus_dir(self) -> Path:
        return self.state_dir / "prometheus"

    @property
    def windows_dir(self) -> Path:
        return self.state_dir / "windows"

    @property
    def report_path(self) -> Path:
        return self.state_dir / "report.json"

    @property
    def histograms_path(self) -> Path:
        return self.state_dir / "histograms.json"

    @property
    def tally_path(self) -> Path:
        return self.state_dir / "tally.json"

    @property
    def monitor_lock(self) -> Path:
        return self.state_dir / "monitor.lock"

    @property
    def heartbeat_path(self) -> Path:
        return self.state_dir / "monitor.json"

    @property
    def feedback_dir(self) -> Path:
        return self.model_dir / "feedback"


def env_defaults() -> dict[str, str]:
    """``DRIFTKEEPER_*`` variables that name a ServiceConfig field, by field name."""
    names = {f.name for f in fields(ServiceConfig)}
    out = {}
    for key, value in os.environ.items():
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX):].lower()
            if name in names:
                out[name] = value
    return out

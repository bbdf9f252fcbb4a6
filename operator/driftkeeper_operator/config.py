"""The operator's own settings: one typed object from the environment, checked at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from driftkeeper.errors import DriftkeeperError

from .jobsettings import JobSettings


@dataclass(frozen=True)
class OperatorConfig:
    """``DRIFTKEEPER_*`` variables the operator reads (the chart sets them)."""

    image: str | None = None  # DRIFTKEEPER_IMAGE: the retraining Job's image
    job_service_account: str | None = None  # DRIFTKEEPER_JOB_SERVICE_ACCOUNT
    scrape_timeout: float = 5.0  # DRIFTKEEPER_SCRAPE_TIMEOUT: seconds per /metrics read
    watch_timeout: int = 300  # DRIFTKEEPER_WATCH_TIMEOUT: seconds a watch request may last
    min_interval: float = 1.0  # DRIFTKEEPER_MIN_INTERVAL: floor of the evaluation interval
    metrics_port: int | None = None  # DRIFTKEEPER_METRICS_PORT: serve policy metrics here
    # DRIFTKEEPER_JOB_SETTINGS (JSON): what retraining Jobs run as (image, ServiceAccount,
    # security contexts, resources, scheduling, the images a policy may name).
    job: JobSettings = field(default_factory=JobSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        problems = []

        def number(key: str, default: float, kind: type = float) -> float:
            raw = env.get(key)
            if raw is None or raw == "":
                return default
            try:
                value = kind(raw)
            except ValueError:
                problems.append(f"{key} must be a number, got {raw!r}")
                return default
            if value <= 0:
                problems.append(f"{key} must be > 0, got {raw!r}")
            return value

        image = env.get("DRIFTKEEPER_IMAGE") or None
        account = env.get("DRIFTKEEPER_JOB_SERVICE_ACCOUNT") or None
        try:
            job = JobSettings.parse(env.get("DRIFTKEEPER_JOB_SETTINGS"), image, account)
        except DriftkeeperError as exc:
            problems.append(str(exc))
            job = JobSettings(image=image, service_account=account)
        config = cls(image=image,
                     job_service_account=account,
                     scrape_timeout=number("DRIFTKEEPER_SCRAPE_TIMEOUT", 5.0),
                     watch_timeout=int(number("DRIFTKEEPER_WATCH_TIMEOUT", 300, int)),
                     min_interval=number("DRIFTKEEPER_MIN_INTERVAL", 1.0),
                     metrics_port=(int(number("DRIFTKEEPER_METRICS_PORT", 0, int)) or None),
                     job=job)
        if problems:
            raise DriftkeeperError("invalid operator configuration: " + "; ".join(problems))
        return config

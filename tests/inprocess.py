"""The service as the unit tests run it: one Flask app in this process, no background
loop, and training with fewer null draws where the thresholds are not what is tested."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from driftkeeper.serving.app import create_app
from driftkeeper.serving.config import ServiceConfig


def in_process_app(model_dir: Path, tmp_path: Path, **settings: Any) -> tuple[Any, Any]:
    """The app and its test client, state under ``tmp_path / "state"``; ``settings``
    override the small limits the tests use (50 rows, 64 KiB bodies)."""
    config = ServiceConfig(model_dir=model_dir, state_dir=tmp_path / "state",
                           **{"max_rows": 50, "max_body_bytes": 64 * 1024, **settings})
    config.windows_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(config, start_background=False)
    return app, app.test_client()


@contextlib.contextmanager
def quick_profiles(trials: int = 500) -> Iterator[None]:
    """Training calibrates its auto thresholds with ``trials`` null draws (tens of
    features x 20,000 draws are slow where a test is about something else)."""
    from driftkeeper.model import train as training

    real = training.build_profile
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "build_profile",
                   lambda *a, **kw: real(*a, **{**kw, "trials": trials}))
        yield

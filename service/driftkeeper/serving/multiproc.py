"""Which of prometheus-client's multiprocess files belong to whom.

Workers name their files by pid (prometheus-client's default) and the monitor by a fixed
name, ``monitor``: in the chart it runs in another container, in another PID namespace,
where its pid could equal a worker's and the two would write one file. A fixed name also
keeps its counters across its own restarts, so they never go backwards within a pod.
"""

from __future__ import annotations

import os
from pathlib import Path

MONITOR_IDENTITY = "monitor"


def use_directory(path: Path, identity: str | None = None) -> None:
    """Send this process's metrics to ``path``, under ``identity`` (default: the pid).
    Call before any metric is created, i.e. before ``serving.metrics`` is imported."""
    from prometheus_client import values

    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    values.ValueClass = (values.MultiProcessValue() if identity is None else
                         values.MultiProcessValue(lambda: identity))


def is_monitor_file(path: Path) -> bool:
    """A file the monitor writes (``counter_monitor.db``, ``gauge_max_monitor.db``)."""
    return path.name.endswith(f"_{MONITOR_IDENTITY}.db")

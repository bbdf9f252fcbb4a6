"""Run a real Prometheus (Debian's package) on loopback for tests, stopped by its pid."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import yaml

from service_process import free_port, stop_process


@contextlib.contextmanager
def running_prometheus(targets: str | list[str], tmp_path: Path,
                       labels: dict[str, str] | None = None,
                       extra_jobs: dict[str, tuple[list[str], dict[str, str]]] | None = None,
                       ) -> Iterator[str]:
    """Prometheus scraping ``targets`` (host:port) every second as job ``driftkeeper``,
    their series carrying ``labels`` (as a ServiceMonitor adds namespace and service) and
    ``driftkeeper="model"`` (as its relabeling does), and ``extra_jobs`` (name -> targets,
    labels; ``driftkeeper-operator`` gets ``driftkeeper="operator"``); yields its URL."""
    port = free_port()
    config = tmp_path / "prometheus.yml"
    jobs = {"driftkeeper": ([targets] if isinstance(targets, str) else targets,
                            {"driftkeeper": "model", **(labels or {})}),
            **{name: (t, {**({"driftkeeper": "operator"} if name == "driftkeeper-operator"
                             else {}), **lab}) for name, (t, lab) in (extra_jobs or {}).items()}}
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": name, "metrics_path": "/metrics",
                            "static_configs": [{"targets": t, "labels": lab} if lab
                                               else {"targets": t}]}
                           for name, (t, lab) in jobs.items()],
    }))
    if shutil.which("promtool"):
        subprocess.run(["promtool", "check", "config", str(config)], check=True,
                       capture_output=True, timeout=30)
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed in finally
    process = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)
        log.close()

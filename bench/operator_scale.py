"""One operator process at scale: many policies, each with many replicas (issue 18).

Synthetic replicas: one separate process serves every replica's ``/metrics`` (pages the
service's own tally encoder writes, with every counter kind: features, predictions, loss
estimates, residuals and segments; each scrape one batch of rows further on), and
``/reference`` and ``/reference/predictor`` of a real trained diamonds model. The operator
side is the real thing in this process: ``PolicyScheduler`` ticking ``PolicyWorker``s
(scrape, parse, fleet window, verdicts, reconcile, status), with Kubernetes replaced by a
dict (no API server: what is measured is the operator's own work).

Two figures:

1. one policy with 10 replicas: a tick's parts (scrape, parse, window, verdicts), medians
   and p90 over ``--ticks`` ticks;
2. ``--policies`` policies x ``--replicas`` replicas at ``--interval``: the operator's CPU
   share of one core, its peak RSS, and the evaluation lag (how late each tick starts
   against when it was due).

    .venv/bin/python bench/operator_scale.py --output bench/operator_scale.json

Everything binds 127.0.0.1; the replica server is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import requests
from prometheus_client import CollectorRegistry, generate_latest

from driftkeeper.contract import names
from driftkeeper.data import load_diamonds
from driftkeeper.model.store import PROFILE_FILE, ModelStore
from driftkeeper.model.train import TrainingConfig, train
from driftkeeper.schema import DIAMONDS_SCHEMA
from driftkeeper.serving.metrics import TallyCollector
from driftkeeper.serving.tally import Tally
from driftkeeper_operator.config import OperatorConfig
from driftkeeper_operator.counters import parse_counters
from driftkeeper_operator.evaluation import judge_fleet
from driftkeeper_operator.executor import PolicyWorker, TickResult, parse_for_cluster
from driftkeeper_operator.fleet import FleetHistory, Reading
from driftkeeper_operator.kube import Endpoint
from driftkeeper_operator.references import ReferenceCache, SharedReferences
from driftkeeper_operator.scheduler import PolicyScheduler
from driftkeeper_operator.sources import FleetView
from procs import free_port  # bench/procs.py

ROOT = Path(__file__).resolve().parents[1]
BATCH = 200  # rows each replica serves between two scrapes (40 requests/s at 5 s)
STEPS = 40  # pages per replica; later scrapes repeat the last one (no new rows)


def exposition(tally: Tally, work: Path) -> str:
    """The page a pod's /metrics shows for ``tally``: the service's own collector."""
    path = work / "tally.json"
    tally.save(path)
    registry = CollectorRegistry()
    registry.register(TallyCollector(path))
    return generate_latest(registry).decode()


def replica_pages(model_dir: Path, replicas: int, work: Path) -> list[list[bytes]]:
    """Each replica's successive /metrics pages: its tally after 1, 2, ... batches."""
    profile = ModelStore(model_dir).load(with_estimator=False).profile
    encoded = DIAMONDS_SCHEMA.encode(load_diamonds())
    pages = []
    for r in range(replicas):
        rng = np.random.default_rng(r)
        tally = Tally.empty(profile, "v1", 1_800_000_000.0 + r)
        own = []
        for step in range(STEPS):
            X = encoded[rng.choice(len(encoded), BATCH)].copy()
            X[:, 0] *= 1.0 + 0.01 * step  # carat drifts slowly: verdicts have work to do
            predictions = 3800.0 * X[:, 0] ** 1.6
            residuals = rng.standard_t(3, BATCH) * 500
            tally.add_inputs(profile, X)
            tally.add_predictions(profile, predictions)
            tally.add_estimates(rng.gamma(2.0, 2e5, BATCH))
            tally.add_residuals(profile, residuals)
            tally.add_segments(profile, X, residuals, predictions)
            page = exposition(tally, work)
            page += (f"# TYPE {names.FEEDBACK.sample} counter\n"
                     f"{names.FEEDBACK.sample} {BATCH * (step + 1)}\n")
            own.append(page.encode())
        pages.append(own)
    return pages


def serve_replicas(port: int, pages: list[list[bytes]], reference: bytes, predictor: bytes,
                   ready: Any) -> None:
    """The replica server (its own process): /p<i>/r<j>/metrics, /reference, ..."""
    scrapes: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # http.server's name
            parts = self.path.strip("/").split("/")
            headers = {"Content-Type": "application/json"}
            if parts[-1] == "metrics" and len(parts) == 3:
                key = f"{parts[0]}/{parts[1]}"
                step = scrapes.get(key, 0)
                scrapes[key] = step + 1
                own = pages[int(parts[1][1:]) % len(pages)]
                body = own[min(step, len(own) - 1)]
                headers = {"Content-Type": "text/plain; version=0.0.4"}
            elif parts[-1] == "reference":
                body = reference
            elif parts[-1] == "predictor":
                body, headers = predictor, {"X-Model-Version": "v1"}
            else:
                self.send_error(404)
                return
            self.send_response(200)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    ready.set()
    server.serve_forever()


class DictKube:
    """Kubernetes as a dict: the reads a monitoring-only policy's tick makes."""

    def __init__(self, endpoints: Mapping[str, list[Endpoint]]) -> None:
        self.endpoints = endpoints
        self.statuses: dict[str, dict[str, Any]] = {}

    def ready_endpoints(self, namespace: str, service: str, port: str) -> list[Endpoint]:
        return self.endpoints[service]

    def policy_jobs(self, namespace: str, policy: str) -> list[dict[str, Any]]:
        return []

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses[name] = status


def spec(service: str, interval: float) -> dict[str, Any]:
    return {"target": {"service": service}, "evaluation": {"interval": f"{interval:g}s"},
            "retraining": {"enabled": False}}


def summary(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1000
    return {"median_ms": round(float(np.median(a)), 2),
            "p90_ms": round(float(np.percentile(a, 90)), 2),
            "max_ms": round(float(a.max()), 2), "n": len(a)}


def one_policy(base: str, replicas: int, ticks: int) -> dict[str, Any]:
    """A tick's parts for one policy, measured one by one."""
    session = requests.Session()
    endpoints = [Endpoint(f"r{j}", f"{base}/p0/r{j}") for j in range(replicas)]
    policy, _ = parse_for_cluster("one", spec("p0", 5.0))
    references = ReferenceCache(5.0)
    profile = references.profile("v1", endpoints, session)
    assert profile is not None
    predictor = references.predictor("v1")
    history = FleetHistory(3600.0)
    parts: dict[str, list[float]] = {"scrape": [], "parse": [], "window": [], "verdicts": []}
    for tick in range(ticks):
        now = 1_800_000_000.0 + 5 * tick
        t0 = time.perf_counter()
        texts = [session.get(e.url + "/metrics", timeout=5).text for e in endpoints]
        t1 = time.perf_counter()
        counters = {e.name: parse_counters(t) for e, t in zip(endpoints, texts, strict=True)}
        t2 = time.perf_counter()
        history.add(Reading(now, counters))
        data = history.window("data", "v1", policy.data_window.size,
                              policy.data_window.max_age)
        concept = history.window("concept", "v1", policy.concept_window.size,
                                 policy.concept_window.max_age)
        t3 = time.perf_counter()
        view = FleetView("v1", data.replicas, data.counts, concept.counts)
        judge_fleet(profile, view, policy, predictor, now)
        t4 = time.perf_counter()
        if tick >= 2:  # the first windows are empty; the reference is cached from then on
            for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                parts[key].append(value)
    total = [sum(v) for v in zip(*parts.values(), strict=True)]
    return {"replicas": replicas, "ticks": len(total), "tick": summary(total),
            **{k: summary(v) for k, v in parts.items()}}


class Timed:
    """A worker that records how late each tick starts against when it was due."""

    def __init__(self, inner: PolicyWorker, lags: list[float], durations: list[float]) -> None:
        self.inner, self.lags, self.durations = inner, lags, durations
        self.due: float | None = None

    def tick(self, body: Mapping[str, Any]) -> TickResult:
        start = time.monotonic()
        if self.due is not None:
            self.lags.append(max(start - self.due, 0.0))
        result = self.inner.tick(body)
        end = time.monotonic()
        self.durations.append(end - start)
        self.due = end + result.delay
        return result


def many_policies(base: str, policies: int, replicas: int, interval: float,
                  duration: float) -> dict[str, Any]:
    """Every policy ticking under the real scheduler for ``duration`` seconds."""
    endpoints = {f"p{i}": [Endpoint(f"p{i}-r{j}", f"{base}/p{i}/r{j}")
                           for j in range(replicas)] for i in range(policies)}
    kube = DictKube(endpoints)
    config = OperatorConfig(min_interval=1.0)
    lags: list[float] = []
    durations: list[float] = []
    index = {("bench", f"p{i}"): [{"metadata": {"name": f"p{i}", "namespace": "bench",
                                                "generation": 1},
                                   "spec": spec(f"p{i}", interval), "status": {}}]
             for i in range(policies)}

    references = SharedReferences(config.scrape_timeout)  # as the operator shares them

    def make_worker(namespace: str, name: str) -> Timed:
        worker = PolicyWorker(name, namespace, kube, config, references=references)
        return Timed(worker, lags, durations)  # type: ignore[arg-type]

    async def run() -> None:
        scheduler = PolicyScheduler(make_worker, lambda body, result: None)
        stopped = asyncio.Event()
        asyncio.get_running_loop().call_later(duration, stopped.set)
        await scheduler.run(index, stopped)

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    asyncio.run(run())
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    evaluated = sum(1 for s in kube.statuses.values() if (s.get("data") or {}).get("samples"))
    return {"policies": policies, "replicas": replicas, "interval_s": interval,
            "duration_s": round(wall, 1), "ticks": len(durations),
            "ticks_due": int(policies * duration / interval),
            "policies_with_a_verdict": evaluated,
            "cpu_share_of_one_core": round(cpu / wall, 3),
            "peak_rss_mb": round(after.ru_maxrss / 1024, 1),  # this process: the operator
            "lag": summary(lags), "tick": summary(durations)}


def _run_into(queue: Any, fn: Any, *args: Any) -> None:
    queue.put(fn(*args))


def in_fresh_process(fn: Any, *args: Any) -> dict[str, Any]:
    """``fn(*args)`` in a new interpreter: its peak RSS is the operator's alone (this
    process trained a model and built the pages)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_run_into, args=(queue, fn, *args))
    child.start()
    try:
        return queue.get(timeout=float(args[-1]) + 600)
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()  # by its PID


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policies", type=int, default=50)
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--ticks", type=int, default=30)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "operator_scale.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dk-operator-scale-") as tmp:
        work = Path(tmp)
        train(work / "model", TrainingConfig())
        bundle = ModelStore(work / "model").load(with_estimator=False)
        reference = (b'{"model_version":"v1","profile":'
                     + (bundle.path / PROFILE_FILE).read_bytes() + b"}")
        assert bundle.predictor_path is not None
        pages = replica_pages(work / "model", args.replicas, work)
        sizes = [len(p[-1]) for p in pages]
        port = free_port()
        ready = multiprocessing.Event()
        server = multiprocessing.Process(
            target=serve_replicas, daemon=True,
            args=(port, pages, reference, bundle.predictor_path.read_bytes(), ready))
        server.start()
        try:
            if not ready.wait(30):
                raise SystemExit("the replica server did not start")
            base = f"http://127.0.0.1:{port}"
            result = {
                "machine": {"cpus": multiprocessing.cpu_count(), "python": sys.version.split()[0],
                            "platform": platform.platform(),
                            "load_average_1m_before": round(os.getloadavg()[0], 2)},
                "command": " ".join(["bench/operator_scale.py", *(argv or sys.argv[1:])]),
                "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                "page_bytes_median": int(np.median(sizes)),
                "page_lines": pages[0][-1].count(b"\n"),
                "one_policy": one_policy(base, args.replicas, args.ticks),
                "many_policies": in_fresh_process(many_policies, base, args.policies,
                                                  args.replicas, args.interval,
                                                  args.duration),
            }
        finally:
            server.terminate()  # by its PID
            server.join(10)
            if server.is_alive():
                server.kill()
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

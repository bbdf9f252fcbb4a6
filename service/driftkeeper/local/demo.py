"""`driftkeeper demo`: the whole loop on one machine, watched live in the terminal.

It trains a model if there is none, then starts the service (gunicorn, 2 workers), the local
driver and the simulator as separate processes, exactly as a user would run them, and shows
scores against thresholds, window sizes and the driver's events until the run ends: drift
detected, retrain started, model promoted, drift cleared. Every process it starts is stopped
again by its pid, also on Ctrl-C or error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..errors import DriftkeeperError
from ..model.store import ModelStore
from ..model.train import TrainingConfig, describe_metrics, train
from ..simulate.catalog import CATALOG, ONSET
from .driver import read_events
from .processes import ProcessGroup, driftkeeper_command, free_port, stopped_like_ctrl_c

# The dataset verdict's statistic by rule, as the live table names it.
RULE_LABELS = {"any": "worst feature score/threshold", "share": "share of features drifted",
               "mean": "mean score"}

DEMO_POLICY: dict[str, Any] = {
    "apiVersion": "driftkeeper.io/v1alpha1", "kind": "DriftPolicy",
    "metadata": {"name": "demo"},
    "spec": {
        "evaluation": {"interval": "2s", "consecutiveBreaches": 3},
        "window": {"size": 1000, "minSamples": 200},
        "concept": {"window": {"size": 1000, "minSamples": 200}},
        "retraining": {"cooldown": "10m", "trainingData": {"minFeedbackRows": 2000}},
        "promotion": {"evaluationRows": 500},
    },
}


@dataclass(frozen=True)
class DemoConfig:
    workdir: Path = Path("models")
    duration: float = 150.0  # seconds of simulated traffic
    rate: float = 100.0  # requests per second
    scenario: str = "concept"
    port: int | None = None
    data: str | None = None  # a CSV: the diamonds columns, or any table with `target`
    seed: int = 0
    target: str | None = None  # with `data`: the column to predict (schema inferred)
    categorical: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    schema_file: str | None = None

    @property
    def own_table(self) -> bool:
        return bool(self.target or self.schema_file)


def _say(console: Console, text: str) -> None:
    """Print plain text: no rich markup (messages may hold brackets), no highlighting."""
    console.print(text, highlight=False, markup=False)


def _word(drift: bool | None) -> str:
    return "no verdict yet" if drift is None else "DRIFT" if drift else "ok"


def _verdict(drift: bool | None) -> Text:
    if drift is None:
        return Text("no verdict yet", style="dim")
    return Text("DRIFT", style="bold red") if drift else Text("ok", style="green")


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _sig(x: float | None) -> str:
    """An error in the target's units, whatever their scale (553.6, 0.1234)."""
    return "-" if x is None else f"{x:.4g}"


class DemoView:
    """Renders the service's report, the driver's events and the simulator's progress."""

    def __init__(self, config: DemoConfig, run_dir: Path, started: float,
                 summary: str = "") -> None:
        self.config = config
        self.summary = summary or CATALOG[config.scenario].example
        self.run_dir = run_dir
        self.started = started
        self.report: dict[str, Any] | None = None
        self.events: list[dict[str, Any]] = []
        self.progress = ""
        self.phase = "Starting"

    def clock(self, t: float) -> str:
        s = max(t - self.started, 0)
        return f"{int(s // 60):02d}:{int(s % 60):02d}"

    def refresh(self, url: str) -> None:
        with contextlib.suppress(requests.RequestException, ValueError):
            resp = requests.get(url + "/drift", timeout=2)
            if resp.status_code == 200:  # 503 until the first report is published
                self.report = resp.json()
        driver = self.run_dir / "model" / "driver"
        self.events = read_events(driver)
        with contextlib.suppress(OSError, ValueError):
            self.phase = json.loads((driver / "state.json").read_text()).get("phase", self.phase)
        log = self.run_dir / "simulator.log"
        if log.exists():
            lines = log.read_text(errors="replace").strip().splitlines()
            self.progress = lines[-1] if lines else ""

    def render(self) -> Group:
        head = Text.assemble(
            ("Driftkeeper demo", "bold"), f"  {self.clock(time.time())} / "
            f"{self.clock(self.started + self.config.duration)}   scenario ",
            (self.config.scenario, "cyan"), f": {self.summary}\n",
            "model ", ((self.report or {}).get("model_version") or "-", "bold cyan"),
            "   driver phase ", (self.phase, "bold"), f"\ntraffic {self.progress}")
        table = Table(expand=False, show_edge=False, pad_edge=False)
        for col in ("check", "score", "threshold", "rows", "verdict"):
            table.add_column(col, justify="right" if col in ("score", "threshold", "rows")
                             else "left")
        if self.report:
            data = self.report["data"]
            table.add_row(f"data drift ({RULE_LABELS.get(data['rule'], data['rule'])})",
                          _fmt(data.get("statistic")), _fmt(data["threshold"]),
                          str(data["samples"]), _verdict(data["drift"]))
            for name, f in data["features"].items():
                table.add_row(f"  {name} ({f['method']})", _fmt(f["score"]),
                              _fmt(f["threshold"]), str(f["samples"]), _verdict(f["drift"]))
            p = self.report.get("prediction")
            if p:
                table.add_row(f"prediction drift ({p['method']})", _fmt(p["score"]),
                              _fmt(p["threshold"]), str(p["samples"]), _verdict(p["drift"]))
            e = self.report.get("performance")
            if e:
                table.add_row("estimated RMSE +% (no labels)", _fmt(e["score"]),
                              _fmt(e["threshold"]), str(e["samples"]), _verdict(e["drift"]))
            c = self.report.get("concept")
            if c:
                table.add_row("concept drift (RMSE +%)", _fmt(c["score"]), _fmt(c["threshold"]),
                              str(c["samples"]), _verdict(c["drift"]))
                table.add_row("  RMSE now / reference", _sig(c['rmse']),
                              _sig(c['rmse_reference']), "", "")
                if c.get("log_loss_reference") is not None:  # a classifier
                    table.add_row("  log loss now / reference", _sig(c.get("log_loss")),
                                  _sig(c["log_loss_reference"]), "", "")
                    table.add_row("  accuracy now / reference", _sig(c.get("accuracy")),
                                  _sig(c["accuracy_reference"]), "", "")
                for loc in (c.get("segments") or {}).get("locations", [])[:2]:
                    table.add_row(f"  where: {loc['message']}", "", "", "", "")
        events = Table.grid(padding=(0, 1))
        for e in self.events[-8:]:
            style = "red" if e["type"] == "Warning" else "green"
            events.add_row(self.clock(e["time"]), Text(e["reason"], style=style),
                           e["message"][:110])
        return Group(head, table, Text("events", style="bold"), events)


def _base_dir(config: DemoConfig) -> Path:
    """Where the first model of this table is cached: one per table and description, so
    a demo on another CSV, target or flags never reuses the wrong model."""
    if not config.own_table:
        return config.workdir / "diamonds"
    assert config.data is not None
    described = json.dumps([str(Path(config.data).resolve()), config.target,
                            sorted(config.categorical), sorted(config.drop),
                            config.schema_file])
    digest = hashlib.sha256(described.encode()).hexdigest()[:10]
    return config.workdir / f"{Path(config.data).name.split('.')[0]}-{digest}"


def _train_first(config: DemoConfig, base: Path, console: Console) -> None:
    console.print(f"training the first model into {base} ...")
    if config.own_table:
        from ..inference import describe, infer_from_csv

        assert config.data is not None
        schema = infer_from_csv(config.data, config.target, categorical=config.categorical,
                                drop=config.drop, schema_file=config.schema_file)
        _say(console, "\n".join([f"schema inferred from {config.data} "
                                  f"({len(schema.features)} features):", *describe(schema)]))
        result = train(base, TrainingConfig(data=config.data), schema=schema)
    else:
        result = train(base, TrainingConfig(data=config.data))
    console.print(f"  {result.version}: held-out {describe_metrics(result.metrics)}")


def _prepare(config: DemoConfig, console: Console) -> Path:
    """A trained base model (cached) and a fresh run directory starting from it."""
    if config.own_table and not config.data:
        raise DriftkeeperError("--target and the other table flags describe a table: pass "
                               "it with --data CSV")
    base = _base_dir(config)
    if ModelStore(base).current_version() is None:
        _train_first(config, base, console)
    run_dir = config.workdir / "demo"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    shutil.copytree(base / "versions", run_dir / "model" / "versions")
    ModelStore(run_dir / "model").promote(ModelStore(base).current_version() or "v1")
    (run_dir / "policy.yaml").write_text(yaml.safe_dump(DEMO_POLICY, sort_keys=False))
    return run_dir


def _scenario_summary(config: DemoConfig, model_dir: Path) -> str:
    """What the scenario does, in the columns of the demo's table (the simulator infers
    the same world from the same schema and rows)."""
    info = CATALOG[config.scenario]
    if not config.own_table:
        return info.example
    from ..data import load_table
    from ..simulate.world import World

    assert config.data is not None
    schema = ModelStore(model_dir).load(with_estimator=False).schema
    return info.describe(World.for_schema(schema, load_table(config.data, schema)).words())


def _wait_ready(url: str, service, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise RuntimeError("the service exited during start-up; see its log")
        try:
            if requests.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the service at {url} did not become ready")


def run_demo(config: DemoConfig, console: Console | None = None) -> dict[str, Any]:
    """Run the demo; returns a summary (also printed)."""
    if console is None:
        console = Console()
        if not console.is_terminal:  # logs and CI: wide lines, no wrapping mid-message
            console = Console(width=160)
    run_dir = _prepare(config, console)
    with stopped_like_ctrl_c():
        summary = _run(config, console, run_dir, config.port or free_port(), ProcessGroup())
    _print_summary(summary, console)
    return summary


def _run(config: DemoConfig, console: Console, run_dir: Path, port: int,
         group: ProcessGroup) -> dict[str, Any]:
    """Start the three processes, watch until the simulator ends, stop them all."""
    model_dir = run_dir / "model"
    url = f"http://127.0.0.1:{port}"
    try:
        service = group.start("service", driftkeeper_command(
            "serve", "--model-dir", str(model_dir), "--port", str(port), "--workers", "2",
            "--policy", str(run_dir / "service-policy.yaml"),
            "--state-dir", str(run_dir / "state")), run_dir / "service.log")
        _wait_ready(url, service)
        group.start("driver", driftkeeper_command(
            "operator", "--local", "--policy", str(run_dir / "policy.yaml"), "--service", url,
            "--model-dir", str(model_dir), "--service-policy",
            str(run_dir / "service-policy.yaml")), run_dir / "driver.log")
        sim_args = ["simulate", "--url", url, "--scenario", config.scenario, "--rate",
                    str(config.rate), "--duration", str(config.duration), "--seed",
                    str(config.seed)]
        if config.data:
            sim_args += ["--data", config.data]
        started = time.time()
        simulator = group.start("simulator", driftkeeper_command(*sim_args),
                                run_dir / "simulator.log")
        view = DemoView(config, run_dir, started, _scenario_summary(config, model_dir))
        _watch(view, url, simulator, console)
        time.sleep(3)  # the last labels and one more evaluation
        view.refresh(url)
        summary = _summary(view, run_dir, model_dir, config)
        summary["report"] = _report(model_dir, url, run_dir, console)
    finally:
        group.stop_all()
    return summary


def _watch(view: DemoView, url: str, simulator, console: Console) -> None:
    if console.is_terminal:
        with Live(view.render(), console=console, refresh_per_second=2) as live:
            while simulator.poll() is None:
                view.refresh(url)
                live.update(view.render())
                time.sleep(1.0)
        return
    seen, next_status = 0, 0.0
    while simulator.poll() is None:  # plain lines when the output is not a terminal
        view.refresh(url)
        for e in view.events[seen:]:
            _say(console, f"{view.clock(e['time'])}  {e['reason']}: {e['message']}")
        seen = len(view.events)
        if time.monotonic() >= next_status and view.report:
            data, c = view.report["data"], view.report.get("concept") or {}
            _say(console, f"{view.clock(time.time())}  model {view.report['model_version']}"
                          f" | data {_fmt(data.get('statistic'))} vs {_fmt(data['threshold'])}"
                          f" ({_word(data['drift'])})"
                          f" | concept {_fmt(c.get('score'))} vs {_fmt(c.get('threshold'))}"
                          f" ({_word(c.get('drift'))}) | {view.phase}")
            next_status = time.monotonic() + 10
        time.sleep(1.0)
    view.refresh(url)
    for e in view.events[seen:]:
        _say(console, f"{view.clock(e['time'])}  {e['reason']}: {e['message']}")


def _summary(view: DemoView, run_dir: Path, model_dir: Path,
             config: DemoConfig) -> dict[str, Any]:
    store = ModelStore(model_dir)
    versions = {v: store.load(v).metrics for v in store.versions()}
    return {
        "scenario": config.scenario,
        "onset_seconds": ONSET * config.duration,
        "started": view.started,  # the simulator's start (epoch seconds)
        "events": [{"time": e["time"], "reason": e["reason"]} for e in view.events],
        "traffic": view.progress,
        "timeline": [(view.clock(e["time"]), e["reason"], e["message"]) for e in view.events],
        "serving": store.current_version(),
        "versions": {v: {"rmse": m["rmse"], "strategy": m.get("strategy"),
                         "evaluation": m.get("evaluation")} for v, m in versions.items()},
        "final": view.report,
        "run_dir": str(run_dir),
    }


def _report(model_dir: Path, url: str, run_dir: Path, console: Console) -> str | None:
    from ..report import report_from_service

    try:
        return str(report_from_service(model_dir, url, run_dir / "report.html"))
    except Exception as exc:  # the report is a bonus; the demo's result stands without it
        console.print(f"could not write the report: {exc}", style="yellow", markup=False)
        return None


def _print_summary(summary: dict[str, Any], console: Console) -> None:
    console.rule("summary")
    _say(console, f"scenario {summary['scenario']} (the shift starts at "
                  f"{summary['onset_seconds']:.0f}s); {summary['traffic']}")
    for clock, reason, message in summary["timeline"]:
        _say(console, f"  {clock}  {reason}: {message}")
    for version, m in summary["versions"].items():
        mark = " (serving)" if version == summary["serving"] else ""
        _say(console, f"  model {version}{mark}: RMSE {m['rmse']:.4g} "
                      f"({m['evaluation']}; {m['strategy']})")
    final = summary.get("final") or {}
    if final:
        c = final.get("concept") or {}
        _say(console, f"  now: data drift {_word(final['data']['drift'])}, "
                      f"concept drift {_fmt(c.get('score'))} vs threshold "
                      f"{_fmt(c.get('threshold'))} ({_word(c.get('drift'))})")
    _say(console, f"  files: {summary['run_dir']} (service.log, driver.log, model/driver/"
                  "events.jsonl, model/versions/)")
    if summary.get("report"):
        _say(console, f"  report: {summary['report']}")

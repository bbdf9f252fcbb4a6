"""One false-alarm budget: how often any label-free verdict fires on an unchanged world,
and how often it still catches real shifts.

``spec.falseAlarmRate`` (default 1 %) is family-wise over data, prediction and estimated
performance drift (policy/document.py ``label_free_rates``). This measures the promise on
seeded windows drawn from diamonds the model never saw (a seeded 20 % held out before
training), at window sizes 200, 1,000 and 5,000:

- quiet windows, as they are and with the lab's per-row noise (every numerical feature
  and the price times U(0.99, 1.01), one draw per row as one row per request);
- real shifts, which must be caught in >= 95 % of windows: carat x1.3, the Ideal cut's
  share halved, colours I and J three times as common, no IF or VVS1 clarity, depth +1,
  table +2; and carat x1.1, which prediction or performance drift must catch. The goal
  holds from the default window size (1,000) up. At n = 200 (the default minSamples) the
  halved cut share and colours I and J are too small to see in 95 % of windows with any
  budget: those rows are reported, next to the old budget of 1 % per kind on the same
  windows, to show what the stricter family-wise budget costs there.

    .venv/bin/python bench/false_alarms.py [--quiet 1000] [--shifted 200]

Writes ``bench/false_alarms.json`` and prints a markdown table (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from driftkeeper.data import load_diamonds
from driftkeeper.drift.batch import batch_windows
from driftkeeper.drift.judge import Windows, evaluate_all
from driftkeeper.drift.settings import MonitorSettings
from driftkeeper.model.store import ModelStore
from driftkeeper.model.train import TrainingConfig, train
from driftkeeper.policy import default_policy, parse_policy
from driftkeeper.policy.document import LABEL_FREE
from driftkeeper.serving.runtime import ServingModel
from driftkeeper.simulate.world import LAB_NOISE

BENCH = Path(__file__).resolve().parent
SIZES = (200, 1000, 5000)
NUMERICAL = ("carat", "depth", "table")

Draw = Callable[[np.random.Generator, pd.DataFrame, int], pd.DataFrame]


def _weighted(weight: Callable[[pd.DataFrame], np.ndarray]) -> Draw:
    """Rows resampled with per-row weights (a category's share moved)."""
    def draw(rng: np.random.Generator, table: pd.DataFrame, n: int) -> pd.DataFrame:
        w = weight(table).astype(float)
        return table.iloc[rng.choice(len(table), n, p=w / w.sum())].reset_index(drop=True)
    return draw


def _changed(change: Callable[[pd.DataFrame], None]) -> Draw:
    """Rows resampled as they are, then changed (a numerical feature moved)."""
    def draw(rng: np.random.Generator, table: pd.DataFrame, n: int) -> pd.DataFrame:
        frame = table.iloc[rng.integers(0, len(table), n)].reset_index(drop=True)
        change(frame)
        return frame
    return draw


def _lab_noise(rng: np.random.Generator, table: pd.DataFrame, n: int) -> pd.DataFrame:
    frame = table.iloc[rng.integers(0, len(table), n)].reset_index(drop=True)
    for name in (*NUMERICAL, "price"):
        frame[name] = frame[name] * rng.uniform(1 - LAB_NOISE, 1 + LAB_NOISE, n)
    return frame


def _scale(name: str, factor: float) -> Callable[[pd.DataFrame], None]:
    def change(frame: pd.DataFrame) -> None:
        frame[name] = frame[name] * factor
    return change


def _shift(name: str, by: float) -> Callable[[pd.DataFrame], None]:
    def change(frame: pd.DataFrame) -> None:
        frame[name] = frame[name] + by
    return change


QUIET: dict[str, Draw] = {
    "quiet": _changed(lambda frame: None),
    "quiet, lab noise per row": _lab_noise,
}
SHIFTS: dict[str, Draw] = {
    "carat x1.3": _changed(_scale("carat", 1.3)),
    "Ideal cut's share halved": _weighted(lambda t: np.where(t["cut"] == "Ideal", 0.5, 1.0)),
    "colours I and J x3": _weighted(lambda t: np.where(t["color"].isin(["I", "J"]), 3.0, 1.0)),
    "no IF or VVS1 clarity": _weighted(
        lambda t: np.where(t["clarity"].isin(["IF", "VVS1"]), 0.0, 1.0)),
    "depth +1": _changed(_shift("depth", 1.0)),
    "table +2": _changed(_shift("table", 2.0)),
}
SUBTLE: dict[str, Draw] = {"carat x1.1": _changed(_scale("carat", 1.1))}
"""Shifts the inputs' test alone may miss; prediction or performance drift must catch."""

FAMILY = default_policy().monitor
PER_KIND = parse_policy({k: {"falseAlarmRate": 0.01} for k in LABEL_FREE}).monitor
"""The budget before: 1 % for each label-free kind (up to 3 % for all of them)."""


def label_free_verdicts(model: ServingModel, windows: Windows,
                        monitor: MonitorSettings) -> dict[str, bool]:
    """Each label-free kind's verdict, by the evaluation every caller uses."""
    report = evaluate_all(model.bundle.profile, windows, monitor, model.version, 0.0)
    return {"data": report.data.drift is True,
            "prediction": report.prediction is not None and report.prediction.drift is True,
            "performance": (report.performance is not None
                            and report.performance.drift is True)}


def rates(model: ServingModel, table: pd.DataFrame, draw: Draw, size: int,
          repeats: int, seed: int) -> dict[str, Any]:
    """Per-kind and any-kind firing rates over ``repeats`` seeded windows, with the
    family-wise budget; ``per_kind_*``: the same windows under the old budget."""
    schema = model.bundle.schema
    windows = [batch_windows(model, schema.encode(draw(np.random.default_rng([seed, size, r]),
                                                       table, size))) for r in range(repeats)]
    verdicts = [label_free_verdicts(model, w, FAMILY) for w in windows]
    before = [label_free_verdicts(model, w, PER_KIND) for w in windows]
    by_kind = {k: float(np.mean([v[k] for v in verdicts])) for k in LABEL_FREE}
    return {"windows": repeats, **by_kind,
            "any": float(np.mean([any(v.values()) for v in verdicts])),
            "prediction_or_performance": float(np.mean(
                [v["prediction"] or v["performance"] for v in verdicts])),
            "per_kind_any": float(np.mean([any(v.values()) for v in before])),
            "per_kind_prediction_or_performance": float(np.mean(
                [v["prediction"] or v["performance"] for v in before]))}


def held_out_model(work: Path) -> tuple[ServingModel, pd.DataFrame]:
    """A model trained without a seeded 20 % of the diamonds, and those rows."""
    diamonds = load_diamonds()
    held = np.random.default_rng(2026).permutation(len(diamonds))[:len(diamonds) // 5]
    rows = work / "model-rows.csv"
    diamonds.drop(index=held).to_csv(rows, index=False)
    train(work / "model", TrainingConfig(data=str(rows)))
    model = ServingModel.from_bundle(ModelStore(work / "model").load())
    return model, diamonds.iloc[np.sort(held)].reset_index(drop=True)


DEFAULT_WINDOW = 1000


def detected(rate: float, size: int, what: str) -> dict[str, Any]:
    """A shift's goal from the default window size up: caught in >= 95 % of windows."""
    if size < DEFAULT_WINDOW:
        return {"goal": "reported", "met": None}
    return {"goal": f"{what} >= 95 %", "met": rate >= 0.95}


MET = {True: "yes", False: "NO", None: "-"}


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| windows | n | data | prediction | performance | any label-free "
             "(1 % per kind before) | goal | met |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        lines.append(f"| {r['case']} | {r['n']:,} | {r['data']:.1%} | {r['prediction']:.1%} "
                     f"| {r['performance']:.1%} | {r['any']:.1%} ({r['per_kind_any']:.1%}) "
                     f"| {r['goal']} | {MET[r['met']]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quiet", type=int, default=1000, help="quiet windows per size")
    parser.add_argument("--shifted", type=int, default=200, help="shifted windows per size")
    parser.add_argument("--output", type=Path, default=BENCH / "false_alarms.json")
    args = parser.parse_args(argv)
    started = time.time()
    results = []
    with tempfile.TemporaryDirectory(prefix="driftkeeper-false-alarms-") as tmp:
        model, table = held_out_model(Path(tmp))
        for size in SIZES:
            for name, draw in QUIET.items():
                r = rates(model, table, draw, size, args.quiet, seed=1)
                results.append({"case": name, "n": size, **r, "goal": "any <= 1 %",
                                "met": r["any"] <= 0.01})
            for name, draw in SHIFTS.items():
                r = rates(model, table, draw, size, args.shifted, seed=2)
                results.append({"case": name, "n": size, **r, **detected(r["any"], size, "any")})
            for name, draw in SUBTLE.items():
                r = rates(model, table, draw, size, args.shifted, seed=3)
                results.append({"case": name, "n": size, **r, **detected(
                    r["prediction_or_performance"], size, "prediction or performance")})
            print(f"[{time.time() - started:5.0f}s] n={size}", file=sys.stderr)
    args.output.write_text(json.dumps({
        "command": "bench/false_alarms.py " + " ".join(argv or sys.argv[1:]),
        "policy": "defaults (spec.falseAlarmRate 0.01, family-wise)",
        "elapsed_seconds": round(time.time() - started, 1), "results": results},
        indent=2) + "\n")
    print(markdown(results))
    return 0 if all(r["met"] is not False for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

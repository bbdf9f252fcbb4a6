"""Wide tables: training, serving, evaluation and false alarms with 50 numerical features.

Issue 19 part 3. A seeded table of 25,000 rows and 50 numerical features (each its own
scale and offset; the target linear in them plus an interaction and noise): 20,000 rows
train, 5,000 are held out for the windows. Measured, on this machine:

1. ``driftkeeper train --data wide.csv --target y`` as a user runs it (its own process,
   calibration of every threshold included): goal <= 30 s. Continuous columns share
   their null draws (drift/profile.py ``numerical_profiles``); before, each column drew
   its own (about 100 s for this table here).
2. Serving one row (validation and prediction) and the per-row monitoring work: on the
   request path the ring append and the prediction counter, off it the monitor's
   counting (per row, of 2,000 new rows): goal < 100 µs per row.
3. One evaluation by the pod's monitor (``serving.monitor.evaluate`` over two workers'
   ring files) of a 1,000-row window, quiet and with one feature moved: milliseconds.
4. The false-alarm promise with 50 features, where each feature's share of the default
   budget (1 % / 3 kinds / 50 features) is 10 times below the top tabulated level:
   quiet windows of held-out rows at n = 200, 1,000 and 5,000, any label-free alarm
   <= 1 %; and a real shift (one feature moved by one standard deviation) caught in
   >= 95 % of windows. Half a standard deviation is reported: its PSI (about 0.22) sits at
   psi's practical floor (0.2), so its detection is set by the floor, not by the budget.

    .venv/bin/python bench/wide_tables.py [--quiet 500] [--shifted 200]

Writes ``bench/wide_tables.json`` and prints a markdown table (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BENCH = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
FEATURES, TRAIN_ROWS, HELD_OUT_ROWS = 50, 20_000, 5_000
SIZES = (200, 1000, 5000)
TRAIN_GOAL_S, PER_ROW_GOAL_US, EVALUATION_GOAL_MS = 30.0, 100.0, 100.0


def wide_table(rows: int, seed: int = 19) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    scale, offset = rng.uniform(0.5, 5.0, FEATURES), rng.uniform(-10, 10, FEATURES)
    X = rng.normal(size=(rows, FEATURES)) * scale + offset
    y = X @ rng.normal(size=FEATURES) + 0.5 * np.sin(X[:, 0]) * X[:, 1] + rng.normal(size=rows)
    frame = pd.DataFrame(X, columns=[f"x{i:02d}" for i in range(FEATURES)])
    frame["y"] = y
    return frame


def bench_training(csv: Path, work: Path, runs: int) -> dict[str, Any]:
    """The user's command, each run in its own process and model directory."""
    seconds, metadata = [], {}
    for run in range(runs):
        output = work / f"model-{run}"
        started = time.perf_counter()
        subprocess.run([str(VENV_BIN / "driftkeeper"), "train", "--output", str(output),
                        "--data", str(csv), "--target", "y", "--json"], check=True,
                       capture_output=True, text=True, timeout=900)
        seconds.append(time.perf_counter() - started)
        metadata = json.loads((output / "current" / "metadata.json").read_text())
        metrics = json.loads((output / "current" / "metrics.json").read_text())
    return {"seconds": _summary(seconds), "goal_s": TRAIN_GOAL_S,
            "met": statistics.median(seconds) <= TRAIN_GOAL_S,
            "fit_seconds": metrics["fit_seconds"], "r2": metrics.get("r2"),
            "inside_seconds": metadata["training"]["seconds"], "model_dir": str(output)}


def bench_serving(model_dir: Path, held_out: pd.DataFrame, work: Path) -> dict[str, Any]:
    """Per-row costs on the request path and in the monitor, and one evaluation."""
    from driftkeeper.contract.rings import InputRows
    from driftkeeper.model.store import ModelStore
    from driftkeeper.policy import default_policy
    from driftkeeper.serving import metrics, monitor
    from driftkeeper.serving.rings import RingWriter
    from driftkeeper.serving.runtime import ServingModel
    from driftkeeper.serving.tally import update_tally
    from driftkeeper.serving.validation import RowValidator
    from run import Settings, fill_rings, per_call_few, per_call_us, summary, time_calls

    settings = Settings()
    model = ServingModel.from_bundle(ModelStore(model_dir).load())
    schema = model.bundle.schema
    row = held_out[schema.names].iloc[0].to_dict()
    validator = RowValidator(schema, with_target=False)
    X, _ = validator.encode([row], False)
    layout = InputRows(X.shape[1])
    ring = RingWriter(work / f"{layout.prefix}-{os.getpid()}.ring", layout.width, 50_000)
    prediction = model.predict(X)

    def request_bookkeeping() -> None:  # as /predict after predicting: ring, counter
        ring.append(layout.pack(np.array([time.time()]), X, model.number, prediction))
        metrics.PREDICTIONS.inc(1)

    tally_dir = work / "tally"
    tally_dir.mkdir()
    rings = [RingWriter(tally_dir / f"{layout.prefix}-{w}.ring", layout.width, 50_000)
             for w in (1, 2)]
    rows = schema.encode(held_out.sample(1000, random_state=0))
    batch = layout.pack(np.zeros(1000), rows, model.number, model.predict(rows))
    state: dict[str, Any] = {"tally": None}

    def count_2000_rows() -> None:  # the monitor counting two workers' new rows
        for r in rings:
            r.append(batch)
        state["tally"], _ = update_tally(state["tally"], model.bundle.profile, model.version,
                                         model.number, tally_dir, time.time(),
                                         estimate=model.estimate_squared_errors)

    counting = per_call_few(count_2000_rows, settings)
    out: dict[str, Any] = {
        "validate_and_predict_one_row_us": per_call_us(
            lambda: model.predict(validator.encode([row], False)[0]), settings),
        "request_bookkeeping_us": per_call_us(request_bookkeeping, settings),
        "monitor_counting_per_row_us": counting["median"] / 2000,
    }
    out["per_row_us"] = out["request_bookkeeping_us"]["median"] + out[
        "monitor_counting_per_row_us"]
    out["per_row_met"] = out["per_row_us"] < PER_ROW_GOAL_US
    policy, now = default_policy(), time.time()
    window = held_out.sample(1000, random_state=1)
    moved = window.assign(x00=window["x00"] + 0.5 * held_out["x00"].std())
    for name, frame in (("quiet", window), ("one_feature_moved", moved)):
        encoded = schema.encode(frame)
        residuals = frame["y"].to_numpy() - model.predict(encoded)
        directory = work / f"windows-{name}"
        fill_rings(directory, encoded, residuals, model.number, now, None, model.predict)
        report = monitor.evaluate(model, policy, directory, now)
        out[f"evaluation_{name}_ms"] = summary(time_calls(
            lambda d=directory: monitor.evaluate(model, policy, d, now), 50))
        out[f"evaluation_{name}_drifted"] = report.data.drifted_features
    out["evaluation_met"] = all(out[f"evaluation_{n}_ms"]["median"] < EVALUATION_GOAL_MS
                                for n in ("quiet", "one_feature_moved"))
    return out


def bench_false_alarms(model_dir: Path, held_out: pd.DataFrame, quiet: int,
                       shifted: int) -> list[dict[str, Any]]:
    from driftkeeper.drift.batch import batch_windows
    from driftkeeper.model.store import ModelStore
    from driftkeeper.serving.runtime import ServingModel
    from false_alarms import FAMILY, label_free_verdicts

    model = ServingModel.from_bundle(ModelStore(model_dir).load())
    schema = model.bundle.schema
    std = held_out["x00"].std()
    results = []
    for size in SIZES:
        for case, repeats, moved in (("quiet", quiet, 0.0), ("x00 + 1 std", shifted, std),
                                     ("x00 + 0.5 std", shifted, 0.5 * std)):
            fired = []
            for r in range(repeats):
                rng = np.random.default_rng([size, r, int(moved / std * 2)])
                frame = held_out.iloc[rng.integers(0, len(held_out), size)]
                frame = frame.assign(x00=frame["x00"] + moved)
                verdicts = label_free_verdicts(model, batch_windows(
                    model, schema.encode(frame)), FAMILY)
                fired.append(verdicts)
            rate = {k: float(np.mean([v[k] for v in fired])) for k in fired[0]}
            any_rate = float(np.mean([any(v.values()) for v in fired]))
            if moved == 0.0:
                goal, met = "any <= 1 %", any_rate <= 0.01
            elif moved == std:
                goal, met = "any >= 95 %", any_rate >= 0.95
            else:  # PSI about 0.22: at psi's practical floor (0.2), whatever the budget
                goal, met = "reported", None
            results.append({"case": case, "n": size, "windows": repeats, **rate,
                            "any": any_rate, "goal": goal, "met": met})
            print(f"  {case} n={size}: any {any_rate:.1%}", file=sys.stderr)
    return results


def _summary(samples: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "samples": samples}


MET = {True: "yes", False: "NO", None: "-"}


def markdown(r: dict[str, Any]) -> str:
    t, s = r["training"], r["serving"]
    lines = ["| figure | measured | goal | met |", "|---|---:|---|---|",
             f"| `driftkeeper train`, 50 numerical x 20,000 rows (median of "
             f"{len(t['seconds']['samples'])}) | {t['seconds']['median']:.1f} s | "
             f"<= {TRAIN_GOAL_S:.0f} s | {MET[t['met']]} |",
             f"| validate + predict one row | "
             f"{s['validate_and_predict_one_row_us']['median']:.0f} µs | - | - |",
             f"| per-row monitoring: ring + counter, and the monitor's counting | "
             f"{s['request_bookkeeping_us']['median']:.1f} + "
             f"{s['monitor_counting_per_row_us']:.1f} µs | < {PER_ROW_GOAL_US:.0f} µs | "
             f"{MET[s['per_row_met']]} |",
             f"| one evaluation (1,000 rows), quiet / one feature moved | "
             f"{s['evaluation_quiet_ms']['median']:.1f} / "
             f"{s['evaluation_one_feature_moved_ms']['median']:.1f} ms | "
             f"< {EVALUATION_GOAL_MS:.0f} ms | {MET[s['evaluation_met']]} |", "",
             "| windows | n | data | prediction | performance | any label-free | goal | met |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for a in r["false_alarms"]:
        lines.append(f"| {a['case']} | {a['n']:,} | {a['data']:.1%} | {a['prediction']:.1%} | "
                     f"{a['performance']:.1%} | {a['any']:.1%} | {a['goal']} | "
                     f"{MET[a['met']]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quiet", type=int, default=500, help="quiet windows per size")
    parser.add_argument("--shifted", type=int, default=200, help="shifted windows per size")
    parser.add_argument("--train-runs", type=int, default=3)
    parser.add_argument("--output", type=Path, default=BENCH / "wide_tables.json")
    args = parser.parse_args(argv)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="driftkeeper-wide-") as tmp:
        work = Path(tmp)
        # prometheus_client reads this when the serving modules first import it.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(work / "prometheus")
        (work / "prometheus").mkdir()
        table = wide_table(TRAIN_ROWS + HELD_OUT_ROWS)
        csv = work / "wide.csv"
        table.iloc[:TRAIN_ROWS].to_csv(csv, index=False)
        held_out = table.iloc[TRAIN_ROWS:].reset_index(drop=True)
        print("training", file=sys.stderr)
        training = bench_training(csv, work, args.train_runs)
        model_dir = Path(training.pop("model_dir"))
        print("serving and evaluation", file=sys.stderr)
        serving = bench_serving(model_dir, held_out, work)
        print("false alarms", file=sys.stderr)
        alarms = bench_false_alarms(model_dir, held_out, args.quiet, args.shifted)
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
    results = {"command": "bench/wide_tables.py " + " ".join(argv or sys.argv[1:]),
               "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                           "loadavg_end": os.getloadavg()},
               "table": {"features": FEATURES, "train_rows": TRAIN_ROWS,
                         "held_out_rows": HELD_OUT_ROWS},
               "training": training, "serving": serving, "false_alarms": alarms,
               "elapsed_seconds": round(time.time() - started, 1)}
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    met = [training["met"], serving["per_row_met"], serving["evaluation_met"],
           *[a["met"] for a in alarms]]
    return 0 if all(m is not False for m in met) else 1


if __name__ == "__main__":
    sys.exit(main())

"""A multiclass model's label-free verdicts: quiet windows stay quiet, a class-prior shift
is caught.

Prediction drift of a model of K classes runs 1 + K tests (the one-number summary and each
class's probability) under the kind's share of the family-wise budget. This measures, on a
seeded 4-class table of 30,000 rows (scikit-learn's ``make_classification``: 10 features,
6 informative), with a third held out before training (the model trains on 20,000 rows:
an 80/20 split, so its references are the served model's own held-out predictions):

- quiet windows of unseen rows, each row at most once per window (n = 200 and 1,000):
  any label-free alarm <= 1 %, as ``spec.falseAlarmRate`` promises;
- a class-prior shift, class ``zero`` three times as common: caught by prediction drift in
  >= 95 % of windows from the default window size (1,000) up; n = 200 is reported.

Windows resampled from a small pool (a few hundred held-out rows of a small table) are not
an unchanged world: every window shares the pool's sampling error, which a 1,000-row window
sees. That is why this is not measured on digits or wine.

    .venv/bin/python bench/multiclass_alarms.py [--quiet 1000] [--shifted 200]

Writes ``bench/multiclass_alarms.json`` and prints a markdown table (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification

from driftkeeper.inference import infer_schema
from driftkeeper.model.store import ModelStore
from driftkeeper.model.train import TrainingConfig, train
from driftkeeper.serving.runtime import ServingModel
from false_alarms import BENCH, DEFAULT_WINDOW, MET, Draw, rates

SIZES = (200, 1000)
TARGET = "label"


def _resampled(rng: np.random.Generator, table: pd.DataFrame, n: int) -> pd.DataFrame:
    """Unseen rows, each at most once (resampling a small pool would make every window
    share its sampling error: a difference from the reference, not an unchanged world)."""
    return table.iloc[rng.choice(len(table), n, replace=False)].reset_index(drop=True)


def _more_zeros(rng: np.random.Generator, table: pd.DataFrame, n: int) -> pd.DataFrame:
    w = np.where(table[TARGET].to_numpy() == "zero", 3.0, 1.0)
    return table.iloc[rng.choice(len(table), n, p=w / w.sum())].reset_index(drop=True)


CASES: dict[str, tuple[Draw, bool]] = {"quiet": (_resampled, False),
                                       "class zero x3": (_more_zeros, True)}
NAMES = ("zero", "one", "two", "three")


def held_out_model(work: Path) -> tuple[ServingModel, pd.DataFrame]:
    X, y = make_classification(n_samples=30_000, n_features=10, n_informative=6,
                               n_redundant=2, n_classes=4, n_clusters_per_class=2,
                               class_sep=1.0, random_state=0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(10)])
    frame[TARGET] = [NAMES[t] for t in y]
    held = np.random.default_rng(2026).permutation(len(frame))[:len(frame) // 3]
    rows = work / "table.csv"
    frame.drop(index=held).to_csv(rows, index=False)
    schema = infer_schema(pd.read_csv(rows), TARGET)
    train(work / "model", TrainingConfig(data=str(rows)), schema=schema)
    model = ServingModel.from_bundle(ModelStore(work / "model").load())
    return model, frame.iloc[np.sort(held)].reset_index(drop=True)


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| windows | n | data | prediction | performance | any label-free | goal | met |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        lines.append(f"| {r['case']} | {r['n']:,} | {r['data']:.1%} | {r['prediction']:.1%} "
                     f"| {r['performance']:.1%} | {r['any']:.1%} | {r['goal']} "
                     f"| {MET[r['met']]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quiet", type=int, default=1000, help="quiet windows per size")
    parser.add_argument("--shifted", type=int, default=200, help="shifted windows per size")
    parser.add_argument("--output", type=Path, default=BENCH / "multiclass_alarms.json")
    args = parser.parse_args(argv)
    started = time.time()
    results = []
    with tempfile.TemporaryDirectory(prefix="driftkeeper-multiclass-") as tmp:
        model, table = held_out_model(Path(tmp))
        features = table.drop(columns=[TARGET])
        for size in SIZES:
            for name, (draw, shifted) in CASES.items():

                def rows(rng: np.random.Generator, _: pd.DataFrame, n: int,
                         draw: Draw = draw) -> pd.DataFrame:
                    return draw(rng, table, n)[features.columns]

                r = rates(model, table, rows, size, args.shifted if shifted else args.quiet,
                          seed=4)
                if shifted:
                    met = r["prediction"] >= 0.95 if size >= DEFAULT_WINDOW else None
                    goal = "prediction >= 95 %" if size >= DEFAULT_WINDOW else "reported"
                else:
                    met, goal = r["any"] <= 0.01, "any <= 1 %"
                results.append({"case": name, "n": size, **r, "goal": goal, "met": met})
            print(f"[{time.time() - started:5.0f}s] n={size}", file=sys.stderr)
    args.output.write_text(json.dumps({
        "command": "python bench/multiclass_alarms.py", "quiet_windows": args.quiet,
        "shifted_windows": args.shifted, "seconds": round(time.time() - started),
        "results": results}, indent=2) + "\n")
    print(markdown(results))
    return 0 if all(r["met"] is not False for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

"""How often each drift kind fires on the simulator's scenarios: false alarms and detection.

The diamonds are split once (seeded): 80 % train a fresh model (which holds out its own
20 % of those for its residual and prediction references), the other 20 % are the world the
traffic comes from, rows the model has never seen, so a window's true RMSE is comparable with
the held-out RMSE. For every scenario, ``--repeats`` seeded windows of ``--rows`` rows are
drawn the way the simulator draws traffic (one request per row; at full strength, progress
1.0, and for the gradual covariate shift also at partial strengths) and judged by the
default DriftPolicy: data drift on the inputs, prediction drift on the model's predictions, concept
drift on the same rows' true prices as labels. The true RMSE of each window (labels the
monitor has not seen yet when it judges inputs and predictions) says how much the shift
hurts the model.

    .venv/bin/python bench/drift_quality.py [--repeats 200] [--rows 1000]

Prints a markdown table and writes ``bench/drift_quality.json``. Takes about a minute for
training plus a few seconds per scenario on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from driftkeeper.data import load_diamonds
from driftkeeper.drift.evaluate import (
    evaluate_concept,
    evaluate_data,
    evaluate_performance,
    evaluate_prediction,
    locate_concept_drift,
)
from driftkeeper.drift.performance import estimate_window
from driftkeeper.drift.windows import data_window, prediction_window, residual_window
from driftkeeper.model.store import ModelStore
from driftkeeper.model.train import TrainingConfig, train
from driftkeeper.policy import default_policy
from driftkeeper.serving.runtime import ServingModel
from driftkeeper.simulate.scenarios import SCENARIOS
from driftkeeper.simulate.world import DIAMONDS_CONCEPT_COLORS as CONCEPT_COLORS
from driftkeeper.simulate.world import World

BENCH = Path(__file__).resolve().parent
KINDS = ("data", "prediction", "performance", "concept")
LABEL_FREE = ("data", "prediction", "performance")


@dataclass(frozen=True)
class Case:
    """A scenario at one strength (progress through its run)."""

    scenario: str
    progress: float

    @property
    def label(self) -> str:
        return self.scenario if self.progress == 1.0 else f"{self.scenario} @ {self.progress}"


CASES = [Case("none", 1.0), Case("lab", 1.0), Case("covariate-gradual", 0.15),
         Case("covariate-gradual", 0.3), Case("covariate-gradual", 0.6),
         Case("covariate-sudden", 1.0), Case("category-mix", 1.0), Case("concept", 1.0),
         Case("mixed", 1.0)]


POLICY = default_policy()


def judge(model: ServingModel, rows: pd.DataFrame, prices: np.ndarray) -> dict[str, Any]:
    """Every kind's verdict on one window, the window's true relative RMSE change and the
    loss model's estimate of it (made from the inputs alone)."""
    policy, profile = POLICY, model.bundle.profile
    X = profile.schema.encode(rows)
    predictions = model.predict(X)
    residuals = prices - predictions
    prediction = evaluate_prediction(profile, prediction_window(profile, predictions),
                                     policy.monitor.prediction)
    estimates = model.estimate_squared_errors(X, predictions)
    assert estimates is not None, "the model has no loss model"
    performance = evaluate_performance(profile, estimate_window(estimates),
                                       policy.monitor.performance)
    assert performance is not None and performance.score is not None
    verdicts = {
        "data": evaluate_data(profile, data_window(profile, X), policy.monitor.data).drift,
        "prediction": prediction.drift if prediction else None,
        "performance": performance.drift,
        "concept": evaluate_concept(profile, residual_window(profile, residuals),
                                    policy.monitor.concept).drift,
    }
    assert profile.residuals is not None
    rmse = float(np.sqrt(np.mean(residuals ** 2)))
    where = None
    if verdicts["concept"]:
        located = locate_concept_drift(profile, X, residuals, predictions,
                                       policy.monitor.concept.segments)
        where = [(loc.feature, loc.segments) for loc in located.locations] if located else []
    return {**verdicts, "rmse_change": rmse / profile.residuals.rmse - 1.0,
            "estimated_change": performance.score, "where": where}


PER_REQUEST = {"lab"}
"""Scenarios that draw something per request (the lab's noise factors): their windows are
made request by request, as the simulator sends them; the others draw rows independently,
so one call gives the same distribution."""


def window(case: Case, world: World, seed: int, rows: int
           ) -> tuple[pd.DataFrame, np.ndarray]:
    scenario, rng = SCENARIOS[case.scenario], np.random.default_rng(seed)
    if case.scenario not in PER_REQUEST:
        batch = scenario.generate(rng, world, case.progress, rows)
        return batch.rows, batch.labels
    batches = [scenario.generate(rng, world, case.progress, 1) for _ in range(rows)]
    return (pd.concat([b.rows for b in batches], ignore_index=True),
            np.concatenate([b.labels for b in batches]))


def run_case(model: ServingModel, world: World, case: Case, repeats: int,
             rows: int) -> dict[str, Any]:
    results = [judge(model, *window(case, world, seed, rows)) for seed in range(repeats)]
    rates = {k: float(np.mean([r[k] is True for r in results])) for k in KINDS}
    label_free = float(np.mean([any(r[k] is True for k in LABEL_FREE) for r in results]))
    any_kind = float(np.mean([any(r[k] is True for k in KINDS) for r in results]))
    changes = np.array([r["rmse_change"] for r in results])
    estimated = np.array([r["estimated_change"] for r in results])
    hurt = changes >= 0.10
    caught = [r["prediction"] is True or r["performance"] is True
              for r, h in zip(results, hurt, strict=True) if h]
    # Where concept drift lives, in windows that found it: the first location named.
    located = [r["where"] for r in results if r["where"] is not None]
    colors = [bool(w) and w[0] == ("color", list(CONCEPT_COLORS)) for w in located]
    within = [bool(w) and w[0][0] == "color" and set(CONCEPT_COLORS) <= set(w[0][1])
              for w in located]
    # How far the estimated RMSE is from the measured one, relative to the measured one.
    error = np.abs((1.0 + estimated) / (1.0 + changes) - 1.0)
    return {"case": case.label, "rates": rates, "label_free_any": label_free,
            "any_kind": any_kind, "rmse_change_median": float(np.median(changes)),
            "estimated_change_median": float(np.median(estimated)),
            "estimate_error_median": float(np.median(error)),
            "estimate_error_p90": float(np.quantile(error, 0.9)),
            "windows_rmse_up_10pct": int(hurt.sum()),
            "concept_windows_located": len(located),
            "first_location_is_colors_def": float(np.mean(colors)) if colors else None,
            "first_location_holds_colors_def": float(np.mean(within)) if within else None,
            "label_free_flags_when_rmse_up_10pct": (float(np.mean(caught)) if caught
                                                     else None)}


def where_markdown(rows: list[dict[str, Any]]) -> str:
    """Where concept drift lives, for the scenarios that reprice colours D, E, F."""
    lines = ["| scenario | windows with concept drift | first location named is exactly "
             "color D, E, F | first location is colour and holds D, E, F |",
             "|---|---:|---:|---:|"]
    for r in rows:
        if r["case"] in ("concept", "mixed"):
            exact, holds = (r["first_location_is_colors_def"],
                            r["first_location_holds_colors_def"])
            lines.append(f"| {r['case']} | {r['concept_windows_located']} | "
                         f"{'-' if exact is None else f'{exact:.1%}'} | "
                         f"{'-' if holds is None else f'{holds:.1%}'} |")
    return "\n".join(lines)


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| scenario | data | prediction | performance | concept | any kind | RMSE change: "
            "measured / estimated (medians) | estimate error (median, p90) | windows with "
            "RMSE +10 % or more: prediction or performance flags |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        rate = r["rates"]
        hurt = r["windows_rmse_up_10pct"]
        flagged = r["label_free_flags_when_rmse_up_10pct"]
        caught = "-" if flagged is None else f"{flagged:.0%} of {hurt}"
        lines.append(f"| {r['case']} | {rate['data']:.1%} | {rate['prediction']:.1%} | "
                     f"{rate['performance']:.1%} | {rate['concept']:.1%} | "
                     f"{r['any_kind']:.1%} | {r['rmse_change_median']:+.1%} / "
                     f"{r['estimated_change_median']:+.1%} | "
                     f"{r['estimate_error_median']:.1%}, {r['estimate_error_p90']:.1%} | "
                     f"{caught} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=BENCH / "drift_quality.json")
    args = parser.parse_args(argv)
    started = time.time()
    diamonds = load_diamonds()
    held = np.random.default_rng(2026).permutation(len(diamonds))[:len(diamonds) // 5]
    traffic = World.for_diamonds(diamonds.iloc[np.sort(held)].reset_index(drop=True))
    with tempfile.TemporaryDirectory(prefix="driftkeeper-quality-") as tmp:
        model_rows = Path(tmp) / "model-rows.csv"
        diamonds.drop(index=held).to_csv(model_rows, index=False)
        train(Path(tmp) / "model", TrainingConfig(data=str(model_rows)))
        bundle = ModelStore(Path(tmp) / "model").load()
        model = ServingModel.from_bundle(bundle)
        rows = []
        for case in CASES:
            rows.append(run_case(model, traffic, case, args.repeats, args.rows))
            print(f"[{time.time() - started:5.0f}s] {case.label}", file=sys.stderr)
    args.output.write_text(json.dumps({
        "command": "bench/drift_quality.py " + " ".join(argv or sys.argv[1:]),
        "repeats": args.repeats, "rows": args.rows, "policy": "defaults",
        "model": bundle.version, "elapsed_seconds": round(time.time() - started, 1),
        "results": rows}, indent=2) + "\n")
    print(markdown(rows))
    print()
    print(where_markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time to recovery on one machine: how long from a concept shift to drift cleared (issue 18).

Runs ``driftkeeper demo`` (the service with 2 workers, the local driver, the simulator;
the README's main job) with the concept scenario at ``--rate`` requests/s and the
simulator's 2 s label delay, ``--runs`` times with different seeds, and reports, from
the shift (the scenario's onset), the seconds to the first DriftDetected, RetrainStarted,
ModelPromoted and DriftCleared after it, with the medians over the runs.

    .venv/bin/python bench/recovery.py --output bench/recovery.json

Every process a run starts is stopped by its PID (the demo's own process group), and the
runs live in a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from driftkeeper.local.demo import DemoConfig, run_demo

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("DriftDetected", "RetrainStarted", "ModelPromoted", "DriftCleared")


def milestones(summary: dict[str, Any]) -> dict[str, float | None]:
    """Seconds from the shift to each step's first event after it (None: never)."""
    shift = summary["started"] + summary["onset_seconds"]
    found: dict[str, float | None] = dict.fromkeys(STEPS)
    after = shift
    for step in STEPS:  # in order: a step counts only after the one before it
        times = [e["time"] for e in summary["events"]
                 if e["reason"] == step and e["time"] >= after]
        if not times:
            break
        found[step] = round(min(times) - shift, 1)
        after = min(times)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=150.0)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "recovery.json")
    args = parser.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory(prefix="dk-recovery-") as tmp:
        for seed in range(args.runs):
            log = io.StringIO()
            config = DemoConfig(workdir=Path(tmp) / f"run{seed}", duration=args.duration,
                                rate=args.rate, scenario="concept", seed=seed)
            started = time.monotonic()
            summary = run_demo(config, Console(file=log, width=160))
            runs.append({"seed": seed, "seconds_from_shift": milestones(summary),
                         "serving": summary["serving"],
                         "wall_s": round(time.monotonic() - started, 1)})
            print(json.dumps(runs[-1]), file=sys.stderr)
    medians = {}
    for step in STEPS:
        values = [r["seconds_from_shift"][step] for r in runs
                  if r["seconds_from_shift"][step] is not None]
        medians[step] = round(statistics.median(values), 1) if len(values) == len(runs) else None
    result = {"command": " ".join(["bench/recovery.py", *(argv or sys.argv[1:])]),
              "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "cpus": os.cpu_count(), "rate": args.rate, "label_delay_s": 2.0,
              "median_seconds_from_shift": medians, "runs": runs}
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

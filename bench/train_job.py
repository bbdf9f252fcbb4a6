"""One training run in its own process, so its peak RSS is its own (figure 4 of run.py).

    python bench/train_job.py ours DIR   # driftkeeper's default training (`driftkeeper train`)
    python bench/train_job.py lab DIR    # the lab's src/train.py: forest pipeline, joblib.dump

Prints one JSON object: held-out RMSE and R², model file and size, fit seconds, seconds of
the whole job after imports, and the process's peak RSS.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import mean_squared_error, r2_score


def train_ours(out: Path) -> dict[str, Any]:
    """What `driftkeeper train --output DIR` runs (the CLI calls exactly this)."""
    from driftkeeper.model.store import MODEL_FILE
    from driftkeeper.model.train import TrainingConfig, train

    result = train(out, TrainingConfig())
    m = result.metrics
    return {"rmse": m["rmse"], "r2": m["r2"], "fit_seconds": m["fit_seconds"],
            "model_file": str(result.path / MODEL_FILE), "model_bytes": m["model_bytes"]}


def train_lab(out: Path) -> dict[str, Any]:
    """The lab's train_model(): fit on the 80/20 split, score the 20%, dump the pipeline."""
    import joblib

    import lab

    X_train, X_test, y_train, y_test = lab.split(lab.load_table())
    pipeline = lab.build_pipeline()
    started = time.perf_counter()
    pipeline.fit(X_train, y_train)
    fit_seconds = time.perf_counter() - started
    predicted = pipeline.predict(X_test)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model_pipeline.joblib"
    joblib.dump(pipeline, path)
    return {"rmse": float(np.sqrt(mean_squared_error(y_test, predicted))),
            "r2": float(r2_score(y_test, predicted)), "fit_seconds": round(fit_seconds, 3),
            "model_file": str(path), "model_bytes": path.stat().st_size}


def main(argv: list[str]) -> int:
    kind, out = argv[1], Path(argv[2])
    started = time.perf_counter()
    result = {"ours": train_ours, "lab": train_lab}[kind](out)
    result["job_seconds"] = round(time.perf_counter() - started, 3)
    # ru_maxrss is in KiB on Linux: the high-water mark of this process alone.
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

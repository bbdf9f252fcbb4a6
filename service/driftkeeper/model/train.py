"""Training: fit, evaluate on a held-out split, profile the reference, write a version.

Held-out rows never train the model: their residuals are the yardstick of concept drift
(the lab compared against training rows, which a forest has memorised, and so reported
concept drift on unchanged data).
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import scipy
import sklearn
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

from .. import __version__
from ..data import frame_hash, load_diamonds
from ..drift import calibration
from ..drift.profile import DEFAULT_BINS, build_profile
from ..errors import TrainingError
from ..schema import DIAMONDS_SCHEMA, FeatureSchema
from .estimators import RecalibratedRegressor, build_estimator, fit_params, model_kind
from .feedback import FeedbackStore
from .store import METADATA_FILE, METRICS_FILE, MODEL_FILE, PROFILE_FILE, ModelStore, write_json


@dataclass(frozen=True)
class TrainingConfig:
    """What to train on and how. With feedback, the newest labelled rows describe the world
    the new model will serve: they supply the held-out split and the drift reference, and
    they outweigh the base data (``feedback_share`` of the total sample weight)."""

    model: str = "hgb"
    seed: int = 42
    test_size: float = 0.2
    data: str | None = None  # base data CSV; None = the shipped diamonds table
    include_base: bool = True
    feedback_dir: str | None = None
    feedback_since: float | None = None  # only rows labelled at or after this time
    feedback_until: float | None = None  # only rows labelled before this time
    feedback_rows: int = 20_000
    min_feedback_rows: int = 500
    feedback_share: float = 0.8
    strategy: str = "auto"  # refit | recalibrate | auto (both; the better on held-out rows)
    bins: int = DEFAULT_BINS
    calibration_trials: int = calibration.TRIALS
    promote: bool = True


@dataclass(frozen=True)
class TrainingResult:
    version: str
    promoted: bool
    metrics: dict[str, Any]
    path: Path


@dataclass(frozen=True)
class _Split:
    X_train: np.ndarray
    y_train: np.ndarray
    weight: np.ndarray | None
    X_holdout: np.ndarray
    y_holdout: np.ndarray
    X_reference: np.ndarray
    y_reference: np.ndarray
    from_feedback: bool
    rows: dict[str, int]
    hashes: dict[str, str]
    feedback_until: float | None = None  # newest label used: the promotion gate must not
                                         # judge this model on rows it trained on


def _assemble(config: TrainingConfig, schema: FeatureSchema) -> _Split:
    target = schema.target.name
    base = load_diamonds(config.data, schema) if config.include_base else None
    feedback = pd.DataFrame()
    if config.feedback_dir:
        feedback = FeedbackStore(config.feedback_dir, schema).read(
            config.feedback_rows, since=config.feedback_since, until=config.feedback_until)
    hashes = {}
    if base is not None:
        hashes["base"] = frame_hash(base)
    if len(feedback) >= config.min_feedback_rows:
        fb = feedback[[*schema.names, target]]
        hashes["feedback"] = frame_hash(fb)
        fb_train, fb_hold = train_test_split(fb, test_size=config.test_size,
                                             random_state=config.seed)
        X_fb, y_fb = schema.encode(fb_train), fb_train[target].to_numpy(np.float64)
        if base is not None:
            X_base, y_base = schema.encode(base), base[target].to_numpy(np.float64)
            share = config.feedback_share
            w_fb = share / (1.0 - share) * len(X_base) / len(X_fb) if share < 1 else 1.0
            X_train = np.vstack([X_base, X_fb])
            y_train = np.concatenate([y_base, y_fb])
            weight = np.concatenate([np.ones(len(X_base)), np.full(len(X_fb), w_fb)])
        else:
            X_train, y_train, weight = X_fb, y_fb, None
        return _Split(X_train, y_train, weight, schema.encode(fb_hold),
                      fb_hold[target].to_numpy(np.float64), X_fb, y_fb, True,
                      {"base": 0 if base is None else len(base), "feedback": len(fb),
                       "train": len(X_train), "holdout": len(fb_hold)}, hashes,
                      float(feedback["ts"].max()))
    if base is None:
        raise TrainingError(
            f"only {len(feedback)} feedback rows (need {config.min_feedback_rows}) and the "
            f"base data is excluded: nothing to train on")
    train, hold = train_test_split(base, test_size=config.test_size, random_state=config.seed)
    X_train = schema.encode(train)
    y_train = train[target].to_numpy(np.float64)
    return _Split(X_train, y_train, None, schema.encode(hold),
                  hold[target].to_numpy(np.float64), X_train, y_train, False,
                  {"base": len(base), "feedback": len(feedback), "train": len(train),
                   "holdout": len(hold)}, hashes)


def train(model_dir: str | Path, config: TrainingConfig = TrainingConfig(),
          schema: FeatureSchema = DIAMONDS_SCHEMA) -> TrainingResult:
    """Train a new model version into ``model_dir`` and, if ``config.promote``, make it
    current. Nothing in the store changes unless every artefact was written."""
    started = time.time()
    store = ModelStore(model_dir)
    parent = store.current_version()
    split = _assemble(config, schema)

    fit_started = time.perf_counter()
    candidates = _fit_candidates(config, schema, split, store, parent)
    fit_seconds = time.perf_counter() - fit_started
    holdout_rmse = {name: _rmse(split.y_holdout, est.predict(split.X_holdout))
                    for name, est in candidates.items()}
    strategy = min(holdout_rmse, key=holdout_rmse.__getitem__)
    estimator = candidates[strategy]

    predicted = estimator.predict(split.X_holdout)
    residuals = split.y_holdout - predicted
    metrics = {
        "rmse": float(np.sqrt(mean_squared_error(split.y_holdout, predicted))),
        "mae": float(mean_absolute_error(split.y_holdout, predicted)),
        "r2": float(r2_score(split.y_holdout, predicted)),
        "holdout_rows": len(split.y_holdout),
        "fit_seconds": round(fit_seconds, 3),
        "strategy": strategy,
        "candidates_rmse": {k: round(v, 3) for k, v in holdout_rmse.items()},
    }
    profile = build_profile(schema, split.X_reference, residuals, n_bins=config.bins,
                            seed=config.seed, trials=config.calibration_trials)
    metadata = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "parent": parent,
        "model": {"kind": model_kind(estimator), "params": _params(estimator)},
        "schema": schema.to_dict(),
        "training": {**{k: v for k, v in asdict(config).items() if k != "promote"},
                     "rows": split.rows, "data_hash": split.hashes,
                     "feedback_until": split.feedback_until, "seconds": None},
        "versions": {"driftkeeper": __version__, "python": platform.python_version(),
                     "scikit-learn": sklearn.__version__, "numpy": np.__version__,
                     "pandas": pd.__version__, "scipy": scipy.__version__,
                     "joblib": joblib.__version__},
    }

    def write(tmp: Path) -> None:
        joblib.dump(estimator, tmp / MODEL_FILE, compress=3)
        profile.save(tmp / PROFILE_FILE)
        metrics["model_bytes"] = (tmp / MODEL_FILE).stat().st_size
        write_json(tmp / METRICS_FILE, metrics)
        metadata["training"]["seconds"] = round(time.time() - started, 3)
        write_json(tmp / METADATA_FILE, metadata)

    version = store.write_version(write, promote=config.promote)
    return TrainingResult(version, config.promote, metrics, store.path(version))


MAX_RECALIBRATION_DEPTH = 3
"""Corrections stack on corrections; past this depth only a refit is tried (each layer adds
trees to every prediction)."""


def _depth(estimator: Any) -> int:
    return 1 + _depth(estimator.base) if isinstance(estimator, RecalibratedRegressor) else 0


def _fit_candidates(config: TrainingConfig, schema: FeatureSchema, split: _Split,
                    store: ModelStore, parent: str | None) -> dict[str, Any]:
    """Fit the candidate models the strategy asks for, each on the same training rows."""
    if config.strategy not in ("auto", "refit", "recalibrate"):
        raise TrainingError(f"unknown strategy {config.strategy!r}")
    candidates: dict[str, Any] = {}
    if config.strategy in ("auto", "refit"):
        estimator = build_estimator(config.model, schema, config.seed)
        estimator.fit(split.X_train, split.y_train, **fit_params(config.model, split.weight))
        candidates["refit"] = estimator
    if config.strategy in ("auto", "recalibrate") and split.from_feedback and parent:
        base = store.load(parent).model
        if _depth(base) < MAX_RECALIBRATION_DEPTH:
            candidates["recalibrate"] = RecalibratedRegressor(
                base, random_state=config.seed).fit(split.X_reference, split.y_reference)
    if not candidates:
        raise TrainingError("strategy 'recalibrate' needs feedback rows and a current model "
                            "to correct")
    return candidates


def _rmse(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - predicted) ** 2)))


def _params(estimator: Any) -> dict[str, Any]:
    params = estimator.get_params(deep=False)
    return {k: v for k, v in params.items() if isinstance(v, (int, float, str, bool, type(None)))}

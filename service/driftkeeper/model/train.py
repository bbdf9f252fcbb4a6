"""Training: fit, evaluate on a held-out split, profile the reference, write a version.

Held-out rows never train the model: their residuals are the yardstick of concept drift
(the lab compared against training rows, which a forest has memorised, and so reported
concept drift on unchanged data).
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import scipy
import sklearn
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split

from .. import __version__
from ..data import bundled_diamonds, frame_hash, load_diamonds, load_table
from ..drift.impact import reference_sample
from ..drift.probability import Scored, score
from ..drift.profile import build_profile
from ..errors import TrainingError
from ..files import sha256_file, write_json
from ..schema import DIAMONDS_SCHEMA, FeatureSchema
from .config import TrainingConfig
from .custom import TableModel, build_from_factory, load_factory, load_model_file
from .estimators import (
    ClassProbabilities,
    ProbabilityClassifier,
    RecalibratedClassifier,
    RecalibratedMulticlass,
    RecalibratedRegressor,
    build_estimator,
    fit_params,
    model_kind,
)
from .export import verified_export
from .feedback import FeedbackStore
from .loss import export_loss_model, fit_loss_model, loss_inputs
from .store import (
    LOSS_FILE,
    METADATA_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PREDICTOR_FILE,
    PROFILE_FILE,
    ModelStore,
)

log = logging.getLogger("driftkeeper.train")


@dataclass(frozen=True)
class TrainingResult:
    version: str
    promoted: bool
    metrics: dict[str, Any]
    path: Path


@dataclass(frozen=True)
class _Data:
    """What training sees: the base rows and the recent labelled rows (either may be absent)."""

    base_X: np.ndarray | None
    base_y: np.ndarray | None
    recent_X: np.ndarray | None
    recent_y: np.ndarray | None
    rows: dict[str, int]
    hashes: dict[str, str]
    feedback_until: float | None  # newest label used: the promotion gate must not judge
                                  # this model on rows it trained on


@dataclass(frozen=True)
class _Fitted:
    """The chosen model, with rows it did not train on, scored, and the drift reference."""

    estimator: Any
    scored: Scored  # the held-out (or out-of-fold) rows in drift/probability.py's forms
    actual: np.ndarray
    reference_X: np.ndarray
    heldout_X: np.ndarray  # the rows of `scored` (held out, or out of fold)
    strategy: str
    candidates_rmse: dict[str, float]
    evaluation: str
    candidates_log_loss: dict[str, float] | None = None  # a classifier's out-of-fold scores


def _load(config: TrainingConfig, schema: FeatureSchema) -> _Data:
    target = schema.target.name
    base = None
    if config.include_base and config.data is not None:
        base = load_table(config.data, schema)
    elif config.include_base:
        shipped = set(pd.read_csv(bundled_diamonds(), nrows=0).columns)
        missing = [n for n in [*schema.names, target] if n not in shipped]
        if missing:
            raise TrainingError(f"no base data given and the shipped diamonds table has no "
                                f"column(s) {', '.join(missing)} of this schema: pass the "
                                f"table the model learns from (--data CSV)")
        base = load_diamonds(None, schema)
    feedback = pd.DataFrame()
    if config.feedback_dir:
        feedback = FeedbackStore(config.feedback_dir, schema).read(
            config.feedback_rows, since=config.feedback_since, until=config.feedback_until)
    use_feedback = len(feedback) >= config.min_feedback_rows
    if base is None and not use_feedback:
        raise TrainingError(
            f"only {len(feedback)} feedback rows (need {config.min_feedback_rows}) and the "
            f"base data is excluded: nothing to train on")
    hashes = {}
    if base is not None:
        hashes["base"] = frame_hash(base)
    recent = feedback[[*schema.names, target]] if use_feedback else None
    if recent is not None:
        hashes["feedback"] = frame_hash(recent)
    return _Data(
        base_X=None if base is None else schema.encode(base),
        base_y=None if base is None else schema.encode_target(base[target]),
        recent_X=None if recent is None else schema.encode(recent),
        recent_y=None if recent is None else schema.encode_target(recent[target]),
        rows={"base": 0 if base is None else len(base),
              "feedback": 0 if recent is None else len(recent)},
        hashes=hashes,
        feedback_until=float(feedback["ts"].max()) if use_feedback else None)


def _check_sources(config: TrainingConfig) -> None:
    """Refuse contradictory model sources before any data is read; import the factory
    early, so a typo fails in a second, not after loading the table."""
    if config.estimator and config.model_file:
        raise TrainingError("--estimator and --model-file exclude each other: a factory "
                            "to fit, or a model already fitted")
    if config.model_file and (config.feedback_dir or not config.include_base):
        raise TrainingError(f"--model-file {config.model_file} is evaluated on the held-out "
                            f"split of the base data (--data), not refitted: it cannot be "
                            f"combined with --feedback or --no-base (`driftkeeper retrain` "
                            f"learns from labels later)")
    if config.estimator:
        load_factory(config.estimator)


def _fresh_estimator(config: TrainingConfig, schema: FeatureSchema,
                     parent_model: Any | None) -> Any | None:
    """A new, unfitted estimator for a refit: from the user's factory, as a clone of the
    current model's own estimator (a version that came from a file), or of a built-in
    kind. None when the current model's estimator cannot be cloned."""
    if config.estimator:
        return build_from_factory(config.estimator, schema, config.seed)
    if config.clone_current:
        user_model = _innermost(parent_model)
        if not isinstance(user_model, TableModel):
            raise TrainingError("clone_current: the current model has no user's estimator "
                                "to clone (it was not trained with --estimator or "
                                "--model-file)")
        return user_model.refit_copy()
    return build_estimator(config.model, schema, config.seed)


def _fit_base_only(config: TrainingConfig, schema: FeatureSchema, data: _Data,
                   parent_model: Any | None) -> _Fitted:
    """No fresh labels: the classic split (the lab's 80/20, random_state 42); the model is
    the one fitted on the 80%, so its held-out error is honest. A small table is
    cross-validated instead (see ``TrainingConfig.small_table_rows``)."""
    assert data.base_X is not None and data.base_y is not None

    def fresh() -> Any:
        estimator = _fresh_estimator(config, schema, parent_model)
        if estimator is None:
            raise TrainingError("the current model's estimator cannot be cloned "
                                "(sklearn.base.clone failed), so it cannot be refitted: "
                                "only --strategy recalibrate on recent labels can update it")
        return estimator

    if len(data.base_y) < config.small_table_rows:
        return _fit_small_table(config, schema, fresh, data.base_X, data.base_y)
    X_train, X_hold, y_train, y_hold = train_test_split(
        data.base_X, data.base_y, test_size=config.test_size, random_state=config.seed)
    estimator = fresh().fit(X_train, y_train)
    scored = score(schema.target.n_classes, y_hold, estimator.predict(X_hold))
    return _Fitted(estimator, scored, y_hold, X_train, X_hold, "refit",
                   {"refit": _rmse(scored.residual)}, f"{config.test_size:.0%} held out")


def _fit_small_table(config: TrainingConfig, schema: FeatureSchema, fresh: Callable[[], Any],
                     X: np.ndarray, y: np.ndarray) -> _Fitted:
    """Every row held out once (K folds), the model fitted on all of them: a few hundred
    rows split 80/20 leave a concept reference of a few dozen residuals, whose own noise
    then hides any shift short of a third of the RMSE."""
    outputs = _out_of_fold(schema, lambda idx: fresh().fit(X[idx], y[idx]), X,
                           _group_folds(X, config.folds, config.seed))
    estimator = fresh().fit(X, y)
    scored = score(schema.target.n_classes, y, outputs)
    return _Fitted(estimator, scored, y, X, X, "refit", {"refit": _rmse(scored.residual)},
                   f"{config.folds}-fold cross-validation on {len(y)} rows")


def _fit_from_file(config: TrainingConfig, schema: FeatureSchema, data: _Data,
                   user_model: Any) -> _Fitted:
    """A model the user fitted: not refitted, only evaluated on the held-out split of the
    base data, which gives the residuals, the profile and the loss model as usual."""
    assert data.base_X is not None and data.base_y is not None
    X_train, X_hold, _, y_hold = train_test_split(
        data.base_X, data.base_y, test_size=config.test_size, random_state=config.seed)
    estimator = TableModel.fitted(user_model, schema)
    try:
        predicted = estimator.predict(X_hold)
    except Exception as exc:  # the user's model on our frame: say what it expects
        raise TrainingError(f"--model-file {config.model_file}: the model cannot predict "
                            f"the table's rows ({type(exc).__name__}: {exc}); it must be "
                            f"fitted on a DataFrame with the table's columns") from exc
    k = schema.target.n_classes
    expected = (len(y_hold), k) if k >= 3 else y_hold.shape
    if predicted.shape != expected or not np.isfinite(predicted).all():
        what = f"{k} finite class probabilities" if k >= 3 else "one finite prediction"
        raise TrainingError(f"--model-file {config.model_file}: expected {what} per row, "
                            f"got shape {predicted.shape} with "
                            f"{int((~np.isfinite(predicted)).sum())} non-finite values")
    scored = score(schema.target.n_classes, y_hold, predicted)
    return _Fitted(estimator, scored, y_hold, X_train, X_hold, "file",
                   {"file": _rmse(scored.residual)},
                   f"{config.test_size:.0%} held out of the base data; the model was "
                   f"fitted by its owner, so these rows may have been in its training data "
                   f"(the error may be optimistic)")


def _fit_with_feedback(config: TrainingConfig, schema: FeatureSchema, data: _Data,
                       parent_model: Any | None) -> _Fitted:
    """Fresh labels describe the world the new model will serve. Each strategy is scored by
    K-fold cross-validation on them (out-of-fold residuals: every label is held out once,
    which a small batch of labels needs), the best is refitted on all of them, and its
    out-of-fold residuals become the concept-drift reference."""
    assert data.recent_X is not None and data.recent_y is not None
    X, y = data.recent_X, data.recent_y
    recipes = _recipes(config, schema, data, parent_model)
    folds = _group_folds(X, config.folds, config.seed)
    oof = {name: score(schema.target.n_classes, y, _out_of_fold(schema, recipe, X, folds))
           for name, recipe in recipes.items()}
    scores = {name: _rmse(s.residual) for name, s in oof.items()}
    # A classifier is judged by its log loss (RMSE, the Brier score's root, would reward
    # hedged probabilities less), as the gate does.
    chosen = ({name: float(s.log_loss.mean()) for name, s in oof.items()}
              if schema.target.is_classification else scores)
    strategy = min(chosen, key=chosen.__getitem__)
    estimator = recipes[strategy](np.arange(len(y)))
    reference, evaluation = oof[strategy], f"{config.folds}-fold cross-validation"
    if strategy == "recalibrate" and schema.target.is_classification:
        # Platt or vector scaling fits 2 or 2K numbers: on these rows its error is its error
        # on new ones. Out-of-fold, each fold's slightly different numbers would spread
        # every residual the serving model gives in few values (a confident base model's
        # probabilities are near 0 or 1) over K near values, and the residual KS test would
        # then see that spread, not a change, on live traffic.
        reference = score(schema.target.n_classes, y, estimator.predict(X))
        evaluation = f"in-sample residuals of the recalibration ({evaluation} chose it)"
    return _Fitted(estimator, reference, y, X, X, strategy, scores,
                   f"{evaluation} on {len(y)} recent labels",
                   chosen if schema.target.is_classification else None)


def _out_of_fold(schema: FeatureSchema, fit: Callable[[np.ndarray], Any], X: np.ndarray,
                 folds: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Each row's output from the model fitted on the other folds (one number per row, or
    a multiclass model's K probabilities)."""
    k = schema.target.n_classes
    outputs = np.empty((len(X), k)) if k >= 3 else np.empty(len(X))
    for train_idx, test_idx in folds:
        outputs[test_idx] = fit(train_idx).predict(X[test_idx])
    return outputs


def _recipes(config: TrainingConfig, schema: FeatureSchema, data: _Data,
             parent_model: Any | None) -> dict[str, Any]:
    """Strategy name -> fit(recent row indices) -> fitted estimator."""
    if config.strategy not in STRATEGIES:
        raise TrainingError(f"unknown strategy {config.strategy!r}; one of {STRATEGIES}")
    X, y = data.recent_X, data.recent_y
    assert X is not None and y is not None
    recipes: dict[str, Any] = {}

    def refit(idx: np.ndarray) -> Any:
        estimator = _fresh_estimator(config, schema, parent_model)
        if data.base_X is None or data.base_y is None:
            return estimator.fit(X[idx], y[idx])
        share = config.feedback_share
        w_recent = share / (1.0 - share) * len(data.base_X) / len(idx) if share < 1 else 1.0
        weight = np.concatenate([np.ones(len(data.base_X)), np.full(len(idx), w_recent)])
        return estimator.fit(np.vstack([data.base_X, X[idx]]),
                             np.concatenate([data.base_y, y[idx]]),
                             **fit_params(estimator, weight))

    def recalibrate(idx: np.ndarray) -> Any:
        if schema.target.n_classes >= 3:
            return RecalibratedMulticlass(parent_model).fit(X[idx], y[idx])
        if schema.target.is_classification:
            return RecalibratedClassifier(parent_model).fit(X[idx], y[idx])
        return RecalibratedRegressor(parent_model, random_state=config.seed).fit(X[idx], y[idx])

    if config.strategy in ("auto", "refit"):
        if _can_refit(config, schema, parent_model):
            recipes["refit"] = refit
        elif config.strategy == "refit":
            raise TrainingError("strategy 'refit' needs a fresh copy of the current model's "
                                "estimator, and sklearn.base.clone cannot make one: only "
                                "'recalibrate' (or 'auto') can update this model")
        else:
            log.warning("the current model's estimator cannot be cloned: only "
                        "recalibrating it")
    can_recalibrate = parent_model is not None and _depth(parent_model) < MAX_RECALIBRATION_DEPTH
    if config.strategy in ("auto", "recalibrate") and can_recalibrate:
        recipes["recalibrate"] = recalibrate
    if not recipes:
        raise TrainingError("strategy 'recalibrate' needs a current model to correct (and "
                            f"at most {MAX_RECALIBRATION_DEPTH} corrections stacked)")
    return recipes


def train(model_dir: str | Path, config: TrainingConfig | None = None,
          schema: FeatureSchema = DIAMONDS_SCHEMA) -> TrainingResult:
    """Train a new model version into ``model_dir`` and, if ``config.promote``, make it
    current. Nothing in the store changes unless every artefact was written."""
    config = config or TrainingConfig()
    _check_task(schema, config)
    started = time.time()
    _check_sources(config)
    user_model = load_model_file(config.model_file) if config.model_file else None
    store = ModelStore(model_dir)
    parent = store.current_version()
    data = _load(config, schema)

    fit_started = time.perf_counter()
    parent_bundle = (store.load(parent) if parent and (
        data.recent_X is not None or config.clone_current) else None)
    parent_model = parent_bundle.model if parent_bundle else None
    if user_model is not None:
        fitted = _fit_from_file(config, schema, data, user_model)
    elif data.recent_X is None:
        fitted = _fit_base_only(config, schema, data, parent_model)
    else:
        fitted = _fit_with_feedback(config, schema, data, parent_model)
    fit_seconds = time.perf_counter() - fit_started
    estimator, residuals = fitted.estimator, fitted.scored.residual
    predicted = fitted.scored.summary  # one number per row (drift/probability.py)
    metrics = {
        **_heldout_metrics(schema, fitted.actual, fitted.scored),
        "holdout_rows": len(residuals),
        "evaluation": fitted.evaluation,
        "fit_seconds": round(fit_seconds, 3),
        "strategy": fitted.strategy,
        "candidates_rmse": {k: round(v, 3) for k, v in fitted.candidates_rmse.items()},
    }
    if fitted.candidates_log_loss is not None:
        metrics["candidates_log_loss"] = {k: round(v, 4)
                                          for k, v in fitted.candidates_log_loss.items()}
    # Predictions on the held-out rows are the reference of prediction drift, as their
    # residuals are of concept drift; their squared errors teach the loss model that
    # estimates performance before labels arrive.
    loss = fit_loss_model(fitted.heldout_X, predicted, residuals, config.seed)
    loss_arrays = export_loss_model(loss, fitted.heldout_X, predicted)
    estimates = (np.maximum(loss.predict(loss_inputs(fitted.heldout_X, predicted)), 0.0)
                 if loss_arrays is not None else None)
    metrics["loss_model"] = {"exported": loss_arrays is not None,
                             "estimated_rmse": (float(np.sqrt(estimates.mean()))
                                                if estimates is not None else None)}
    profile = build_profile(schema, fitted.reference_X, residuals, n_bins=config.bins,
                            seed=config.seed, trials=config.calibration_trials,
                            predictions=predicted, estimates=estimates,
                            sample=reference_sample(fitted.heldout_X, seed=config.seed),
                            heldout=fitted.heldout_X,
                            measures=(fitted.scored.log_loss, fitted.scored.correct)
                            if schema.target.is_classification else None,
                            heldout_labels=fitted.actual,
                            probabilities=fitted.scored.outputs
                            if schema.target.n_classes >= 3 else None)
    metadata = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "parent": parent,
        "model": {"kind": model_kind(estimator), "params": _params(estimator),
                  **_origin(config, fitted, parent_bundle.metadata if parent_bundle else {})},
        "schema": schema.to_dict(),
        "training": {**{k: v for k, v in asdict(config).items() if k != "promote"},
                     # Absolute: retraining reads the base table again, from wherever it runs.
                     "data": str(Path(config.data).resolve()) if config.data else None,
                     "rows": {**data.rows, "holdout": len(residuals)},
                     "data_hash": data.hashes, "feedback_until": data.feedback_until,
                     "seconds": None},
        "versions": {"driftkeeper": __version__, "python": platform.python_version(),
                     "scikit-learn": sklearn.__version__, "numpy": np.__version__,
                     "pandas": pd.__version__, "scipy": scipy.__version__,
                     "joblib": joblib.__version__},
    }

    exported = verified_export(estimator, fitted.reference_X[:2000])
    metrics["serving_export"] = exported is not None

    def write(tmp: Path) -> None:
        joblib.dump(estimator, tmp / MODEL_FILE, compress=3)
        if exported is not None:
            np.savez_compressed(tmp / PREDICTOR_FILE, **exported)
        if loss_arrays is not None:
            np.savez_compressed(tmp / LOSS_FILE, **loss_arrays)
        profile.save(tmp / PROFILE_FILE)
        metrics["model_bytes"] = (tmp / MODEL_FILE).stat().st_size
        write_json(tmp / METRICS_FILE, metrics)
        metadata["training"]["seconds"] = round(time.time() - started, 3)
        write_json(tmp / METADATA_FILE, metadata)

    version = store.write_version(write, promote=config.promote)
    return TrainingResult(version, config.promote, metrics, store.path(version))


def _check_task(schema: FeatureSchema, config: TrainingConfig) -> None:
    """Refuse what cannot be trained, naming the target."""
    target = schema.target
    if not target.is_classification:
        return
    if len(target.classes) < 2:
        raise TrainingError(f"target {target.name}: a classification needs 2 classes or "
                            f"more, found {len(target.classes)}")
    if len(target.classes) > MAX_CLASSES:
        raise TrainingError(f"target {target.name} has {len(target.classes)} classes; a "
                            f"classification takes at most {MAX_CLASSES} (a target of many "
                            f"values is a regression: --task regression)")

    if config.model != "hgb":
        raise TrainingError(f"--model {config.model} is for regression only; a "
                            f"classification (target {target.name}) trains 'hgb'")


def _heldout_metrics(schema: FeatureSchema, actual: np.ndarray,
                     scored: Scored) -> dict[str, Any]:
    """The task's held-out measures. A classifier's also include ``rmse`` (the Brier
    score's root, halved for K classes as drift/probability.py says): the drift reference
    and older readers of metrics.json use it."""
    predicted = scored.summary
    if schema.target.n_classes >= 3:
        present = np.unique(actual)
        return {"task": "classification", "rmse": _rmse(scored.residual),
                "log_loss": float(scored.log_loss.mean()),
                "accuracy": float(scored.correct.mean()),
                "brier": float(np.mean(2.0 * scored.residual ** 2)),
                "auc": None, "classes": len(schema.target.classes),
                "classes_in_holdout": len(present)}
    if not schema.target.is_classification:
        return {"task": "regression", "rmse": _rmse(actual - predicted),
                "mae": float(mean_absolute_error(actual, predicted)),
                "r2": float(r2_score(actual, predicted))}
    both = len(np.unique(actual)) == 2
    return {"task": "classification", "rmse": _rmse(actual - predicted),
            "log_loss": float(log_loss(actual, predicted, labels=[0.0, 1.0])),
            "accuracy": float(accuracy_score(actual, predicted > 0.5)),
            "brier": float(brier_score_loss(actual, predicted)),
            "auc": float(roc_auc_score(actual, predicted)) if both else None,
            "positive_class": schema.target.classes[1]}


def describe_metrics(m: dict[str, Any]) -> str:
    """The task's held-out measures in a line, as `train` and the demo print them."""
    if m.get("task") == "classification":
        auc = "n/a" if m.get("auc") is None else f"{m['auc']:.4f}"
        return (f"log loss {m['log_loss']:.4f}  accuracy {m['accuracy']:.4f}  "
                f"Brier {m['brier']:.4f}  AUC {auc}")
    return f"RMSE {m['rmse']:.4g}  MAE {m['mae']:.4g}  R² {m['r2']:.4f}"


STRATEGIES = ("auto", "refit", "recalibrate")

MAX_CLASSES = 50
"""Classes a classification may have: every class costs a tree per boosting round and a
probability in every answer, and a column of that many values is rather a quantity
(``--task classification`` on a price would otherwise train a class per price)."""

MAX_RECALIBRATION_DEPTH = 3
"""Corrections stack on corrections; past this depth only a refit is tried (each layer adds
trees to every prediction)."""


def _depth(estimator: Any) -> int:
    recalibrated = isinstance(estimator, (RecalibratedRegressor, RecalibratedClassifier,
                                          RecalibratedMulticlass))
    return 1 + _depth(estimator.base) if recalibrated else 0


def _group_folds(X: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """K folds in which identical rows stay together. Traffic repeats rows (a small table
    resampled, a popular item asked for again); a repeat in another fold would be scored
    by a model that saw its label, and out-of-fold errors, the new model's concept-drift
    reference, would come out too good."""
    _, groups = np.unique(X, axis=0, return_inverse=True)
    groups = groups.ravel()
    n_groups = int(groups.max()) + 1
    if n_groups < k:
        raise TrainingError(f"only {n_groups} distinct labelled rows; {k}-fold "
                            f"cross-validation needs at least {k}")
    fold_of = np.random.default_rng(seed).permutation(n_groups)[groups] % k
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(k)]


def _can_refit(config: TrainingConfig, schema: FeatureSchema,
               parent_model: Any | None) -> bool:
    """False only for a user's estimator from a file that scikit-learn cannot clone."""
    return not config.clone_current or _fresh_estimator(config, schema,
                                                        parent_model) is not None


def _innermost(estimator: Any) -> Any:
    """The model under any stacked corrections."""
    while isinstance(estimator, RecalibratedRegressor):
        estimator = estimator.base
    return estimator


ORIGIN_KEYS = ("source", "estimator", "file", "file_sha256", "refit")
"""What ``metadata["model"]`` records of where the model came from, so that
``driftkeeper retrain`` builds the same kind of estimator again (model/retrain.py)."""


def _origin(config: TrainingConfig, fitted: _Fitted,
            parent_metadata: dict[str, Any]) -> dict[str, Any]:
    """Where the stored model's (innermost) estimator came from: a recalibration keeps its
    parent's origin; a refit has the origin it was built from."""
    inherited = {k: v for k, v in (parent_metadata.get("model") or {}).items()
                 if k in ORIGIN_KEYS}
    if fitted.strategy == "recalibrate" or config.clone_current:
        origin = inherited or {"source": "builtin"}
    elif config.estimator:
        origin = {"source": "factory", "estimator": config.estimator}
    elif config.model_file:
        origin = {"source": "file", "file": str(Path(config.model_file).resolve()),
                  "file_sha256": sha256_file(config.model_file)}
    else:
        origin = {"source": "builtin"}
    user_model = _innermost(fitted.estimator)
    if isinstance(user_model, TableModel):
        origin["estimator_class"] = type(user_model.estimator).__name__
        if origin.get("source") == "file":
            origin["refit"] = user_model.refit_copy() is not None
    return origin


def _rmse(residuals: np.ndarray) -> float:
    return float(np.sqrt(np.mean(residuals**2)))


def _params(estimator: Any) -> dict[str, Any]:
    # The classifier's, not the wrapper's.
    if isinstance(estimator, (ProbabilityClassifier, ClassProbabilities)):
        estimator = estimator.classifier
    params = estimator.get_params(deep=False)
    return {k: v for k, v in params.items() if isinstance(v, (int, float, str, bool, type(None)))}

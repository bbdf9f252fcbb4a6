"""Export a fitted model to plain arrays for the service (``predictor.npz``).

Supported: HistGradientBoostingRegressor with squared error and numeric splits (also a
user's, wrapped in ``TableModel``, when its input is the encoded matrix), and
RecalibratedRegressor chains over it; a binary HistGradientBoostingClassifier (as a
ProbabilityClassifier) with the logistic link; a multiclass one (as ClassProbabilities,
having seen every class) with the softmax. Anything else (the lab's forest) is not
exported and the service falls back to loading the scikit-learn model. An export is only
written after it reproduced the estimator's own predictions.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .estimators import (
    RATIO_FLOOR,
    ClassProbabilities,
    ProbabilityClassifier,
    RecalibratedRegressor,
)
from .predictor import (
    ADDITIVE_FORMAT,
    FIELDS,
    FORMAT,
    IDENTITY,
    LOGISTIC,
    SOFTMAX,
    TreePredictor,
)

log = logging.getLogger("driftkeeper.train")


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


EXPORTABLE = {("HistGradientBoostingRegressor", "HalfSquaredError"),
              ("HistGradientBoostingClassifier", "HalfBinomialLoss"),
              ("HistGradientBoostingClassifier", "HalfMultinomialLoss")}
"""(estimator, loss) pairs whose prediction is a baseline plus a sum of trees (a binary
classifier's is the log-odds, behind the logistic link; a multiclass one has a sum per
class, behind the softmax)."""


def _hgb_arrays(model: Any, prefix: str, k: int = 0) -> dict[str, np.ndarray] | None:
    """Class ``k``'s trees (a multiclass model grows one per class and iteration)."""
    loss = type(getattr(model, "_loss", None)).__name__
    if (type(model).__name__, loss) not in EXPORTABLE:
        return None
    columns: dict[str, list[np.ndarray]] = {f: [] for f in FIELDS}
    offsets, depth = [0], 0
    for per_iteration in model._predictors:
        nodes = per_iteration[k].nodes
        if nodes["is_categorical"].any():
            return None
        columns["feature"].append(nodes["feature_idx"].astype(np.int64))
        columns["threshold"].append(nodes["num_threshold"].astype(np.float64))
        columns["left"].append(nodes["left"].astype(np.int64))
        columns["right"].append(nodes["right"].astype(np.int64))
        columns["is_leaf"].append(nodes["is_leaf"].astype(np.uint8))
        columns["value"].append(nodes["value"].astype(np.float64))
        offsets.append(offsets[-1] + len(nodes))
        depth = max(depth, int(nodes["depth"].max()))
    out = {prefix + f: np.concatenate(v) for f, v in columns.items()}
    out[prefix + "offsets"] = np.asarray(offsets, dtype=np.int64)
    out[prefix + "depth"] = np.asarray(depth + 1, dtype=np.int64)
    out[prefix + "baseline"] = np.asarray([float(np.ravel(model._baseline_prediction)[k])])
    return out


def _exportable_base(estimator: Any) -> Any:
    """The model whose trees read the encoded matrix: a user's estimator (``TableModel``)
    exports only when it is a bare gradient-boosting model on all-numerical columns in
    schema order, whose input then equals the encoded matrix (the verification checks)."""
    from .custom import TableModel

    if isinstance(estimator, TableModel):
        return estimator.encoded_input_model()
    return estimator


def _softmax_arrays(estimator: ClassProbabilities) -> dict[str, np.ndarray] | None:
    """A multiclass model: one stage per class index, each its class's trees. Only when
    the model saw every class (its k-th trees are then class index k's)."""
    model = estimator.classifier_
    if [int(c) for c in model.classes_] != list(range(estimator.n_classes)):
        return None
    arrays: dict[str, np.ndarray] = {"format": np.asarray([FORMAT]),
                                     "floor": np.asarray([RATIO_FLOOR]),
                                     "stages": np.asarray([estimator.n_classes]),
                                     "link": np.asarray([SOFTMAX])}
    for k in range(estimator.n_classes):
        part = _hgb_arrays(model, f"s{k}_", k)
        if part is None:
            return None
        arrays.update(part)
    return arrays


def export_trees(estimator: Any) -> dict[str, np.ndarray] | None:
    """The arrays of ``predictor.npz``, or None if the estimator is not supported."""
    if isinstance(estimator, ClassProbabilities):
        return _softmax_arrays(estimator)
    link = IDENTITY
    if isinstance(estimator, ProbabilityClassifier):
        estimator, link = estimator.classifier_, LOGISTIC
    stages, additive = [], []
    while isinstance(estimator, RecalibratedRegressor):
        stages.insert(0, estimator.correction_)
        additive.insert(0, estimator.additive)
        estimator = estimator.base
    stages.insert(0, _exportable_base(estimator))
    additive.insert(0, False)
    arrays: dict[str, np.ndarray] = {"format": np.asarray([FORMAT]),
                                     "floor": np.asarray([RATIO_FLOOR]),
                                     "stages": np.asarray([len(stages)]),
                                     "link": np.asarray([link])}
    if any(additive):  # format 1 stays what it was
        arrays["format"] = np.asarray([ADDITIVE_FORMAT])
        arrays["additive"] = np.asarray(additive, dtype=np.uint8)
    for i, model in enumerate(stages):
        part = _hgb_arrays(model, f"s{i}_")
        if part is None:
            return None
        arrays.update(part)
    return arrays


def verified_export(estimator: Any, X_check: np.ndarray) -> dict[str, np.ndarray] | None:
    """Export, then keep the export only if it reproduces ``estimator.predict`` on
    ``X_check``, row by row and as a batch (within 1e-12 relative: exp() may differ in the
    last bit between a scalar and a vectorised call).

    The export reads scikit-learn's private tree arrays. If a scikit-learn release changes
    them, the export is skipped with a warning and the service loads the pickled model:
    slower, never wrong, and training still succeeds."""
    try:
        arrays = export_trees(estimator)
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
        log.warning("cannot export %s to plain arrays (scikit-learn %s changed its "
                    "internals?): %s; the service will unpickle the model instead",
                    type(estimator).__name__, _sklearn_version(), exc)
        return None
    if arrays is None:
        return None
    predictor = TreePredictor.from_arrays(arrays)
    expected = np.asarray(estimator.predict(X_check), dtype=np.float64)
    batch = predictor.predict(X_check)
    rows = np.array([predictor.predict_row(r) for r in X_check[:200].tolist()])
    if np.allclose(batch, expected, rtol=1e-12, atol=0) and np.allclose(
            rows, expected[:200], rtol=1e-12, atol=0):
        return arrays
    return None

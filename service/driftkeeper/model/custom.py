"""Bring your own estimator: a user's scikit-learn model behind Driftkeeper's encoded matrix.

Everything in Driftkeeper (training splits, the drift reference, the loss model, the
service) passes the schema-encoded float matrix around. A user's estimator or Pipeline was
written for a DataFrame with the table's column names and values, so :class:`TableModel`
decodes the matrix back to that frame on every ``fit`` and ``predict``.

Two ways in: ``--estimator package.module:factory`` (a callable returning an unfitted
estimator, called again for every refit) and ``--model-file PATH`` (a fitted estimator,
pickled: loading it runs code from the file, so only trusted files may be given).
"""

from __future__ import annotations

import copy
import importlib
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import has_fit_parameter

from ..errors import TrainingError
from ..schema import FeatureSchema, level_text

log = logging.getLogger("driftkeeper.train")

TRUST_WARNING = ("unpickling runs code from the file: only give a file you trust (one you "
                 "or your team wrote)")


class TableModel(RegressorMixin, BaseEstimator):
    """A user's estimator fed the table it was written for.

    ``fit(X, y)`` and ``predict(X)`` take the encoded matrix, decode it to a DataFrame
    (columns = the schema's names; numericals as floats; categoricals as their level text,
    NaN where missing or unknown) and call the user's estimator, which is fitted as a copy:
    ``estimator`` stays unfitted, so a refit (``sklearn.base.clone``) starts afresh.

    For a classification target the user's classifier is fitted on the class labels (the
    schema's text) and ``predict`` returns what every other part of Driftkeeper calls a
    classifier's prediction: its ``predict_proba`` of ``classes[1]`` for two classes, every
    class's probability in the schema's class order for three or more.
    """

    def __init__(self, estimator: Any = None, schema: FeatureSchema | None = None) -> None:
        self.estimator = estimator
        self.schema = schema

    @classmethod
    def fitted(cls, estimator: Any, schema: FeatureSchema) -> TableModel:
        """Wrap an estimator the user already fitted (``--model-file``), without refitting."""
        model = cls(estimator, schema)
        model.estimator_ = estimator
        model.n_features_in_ = len(schema.features)
        return model

    def frame(self, X: np.ndarray) -> Any:
        """The encoded matrix as the user's DataFrame."""
        import pandas as pd

        assert self.schema is not None
        X = np.asarray(X, dtype=np.float64)
        columns: dict[str, np.ndarray] = {}
        for j, feature in enumerate(self.schema.features):
            col = X[:, j]
            if feature.kind == "numerical":
                columns[feature.name] = col
                continue
            levels = np.array([*feature.levels, np.nan], dtype=object)
            known = np.isfinite(col) & (col >= 0) & (col < len(feature.levels))
            columns[feature.name] = levels[np.where(known, col, len(feature.levels))
                                           .astype(np.intp)]
        return pd.DataFrame(columns)

    def fit(self, X: np.ndarray, y: np.ndarray,
            sample_weight: np.ndarray | None = None) -> TableModel:
        estimator = _unfitted_copy(self.estimator)
        frame = self.frame(X)
        kwargs = sample_weight_kwargs(estimator, sample_weight)
        if sample_weight is not None and not kwargs:
            log.warning("%s.fit takes no sample_weight: fitted without weights (recent "
                        "labels count as much as base rows)", type(estimator).__name__)
        y = self._labels(y)
        try:
            estimator.fit(frame, y, **kwargs)
        except TypeError as exc:
            if not kwargs or "sample_weight" not in str(exc):
                raise
            log.warning("%s.fit refused sample_weight (%s): refitted without weights",
                        type(estimator).__name__, exc)
            estimator = _unfitted_copy(self.estimator)
            estimator.fit(frame, y)
        self.estimator_ = estimator
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def _labels(self, y: np.ndarray) -> np.ndarray:
        """A classifier learns the class labels themselves (its ``classes_`` then name
        them); a regressor its numbers."""
        if self.schema is None or not self.schema.target.is_classification:
            return y
        return np.asarray(self.schema.target.classes, dtype=object)[
            np.asarray(y, dtype=np.float64).astype(np.intp)]

    def _probabilities(self, frame: Any) -> tuple[np.ndarray, list[str]]:
        """The user's classifier's ``predict_proba`` and its classes' names (as text)."""
        assert self.schema is not None
        model = self.estimator_
        if not hasattr(model, "predict_proba"):
            raise TrainingError(f"{type(model).__name__} has no predict_proba: a classifier "
                                f"of {self.schema.target.name} must give probabilities")
        proba = np.asarray(model.predict_proba(frame), dtype=np.float64)
        return proba, [level_text(c) for c in getattr(model, "classes_", ())]

    def _positive_probability(self, frame: Any) -> np.ndarray:
        """P(classes[1]) from the user's classifier, found by name among its ``classes_``
        (compared as text; a model fitted on class indices 0/1 has it second)."""
        assert self.schema is not None
        proba, names = self._probabilities(frame)
        positive = self.schema.target.classes[1]
        return proba[:, names.index(positive) if positive in names else 1]

    def _class_probabilities(self, frame: Any) -> np.ndarray:
        """Every class's probability in the schema's class order, found by name among the
        user's classifier's ``classes_``; a class it never saw gets 0, and a class the
        schema does not have is an error naming it."""
        assert self.schema is not None
        proba, names = self._probabilities(frame)
        classes = list(self.schema.target.classes)
        unknown = [n for n in names if n not in classes]
        if unknown or len(names) != proba.shape[1]:
            raise TrainingError(f"{type(self.estimator_).__name__} predicts classes "
                                f"{names} of which {unknown} are not among "
                                f"{self.schema.target.name}'s {classes}: fit it on the "
                                f"table's class labels")
        out = np.zeros((len(proba), len(classes)))
        out[:, [classes.index(n) for n in names]] = proba
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.schema is not None and self.schema.target.n_classes >= 3:
            return self._class_probabilities(self.frame(X))
        if self.schema is not None and self.schema.target.is_classification:
            return self._positive_probability(self.frame(X))
        predicted = np.asarray(self.estimator_.predict(self.frame(X)), dtype=np.float64)
        if predicted.ndim == 2 and predicted.shape[1] == 1:  # a one-column target
            return predicted[:, 0]
        return predicted

    def encoded_input_model(self) -> Any | None:
        """The fitted estimator itself when its input equals the encoded matrix, so its
        trees can be exported: a bare HistGradientBoostingRegressor on all-numerical
        columns in schema order. None otherwise (the service then unpickles this model)."""
        model = getattr(self, "estimator_", None)
        if self.schema is None or type(model).__name__ != "HistGradientBoostingRegressor":
            return None
        if any(f.kind != "numerical" for f in self.schema.features):
            return None
        names = getattr(model, "feature_names_in_", None)
        return model if names is not None and list(names) == self.schema.names else None

    def refit_copy(self) -> TableModel | None:
        """An unfitted copy for a refit on new labels (``sklearn.base.clone`` of the user's
        estimator), or None when scikit-learn cannot clone it: then only a recalibration
        of this model is possible."""
        try:
            return TableModel(clone(self.estimator), self.schema)
        except (TypeError, RuntimeError) as exc:
            log.debug("cannot clone %s: %s", type(self.estimator).__name__, exc)
            return None


def _unfitted_copy(estimator: Any) -> Any:
    """A fresh copy to fit: a clone for scikit-learn estimators, a deep copy otherwise."""
    try:
        return clone(estimator)
    except (TypeError, RuntimeError):
        return copy.deepcopy(estimator)


def sample_weight_kwargs(estimator: Any, sample_weight: np.ndarray | None) -> dict[str, Any]:
    """The keyword that passes weights to this estimator's ``fit`` (a Pipeline's final step
    as ``<step>__sample_weight``); empty when there are none or it takes none."""
    if sample_weight is None:
        return {}
    if isinstance(estimator, Pipeline):
        name, last = estimator.steps[-1]
        if last is None or last == "passthrough" or not has_fit_parameter(last,
                                                                          "sample_weight"):
            return {}
        return {f"{name}__sample_weight": sample_weight}
    return {"sample_weight": sample_weight} if has_fit_parameter(
        estimator, "sample_weight") else {}


def load_factory(spec: str) -> Callable[..., Any]:
    """The callable ``package.module:factory`` names (``--estimator``)."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise TrainingError(f"--estimator {spec!r}: expected package.module:factory (a "
                            f"module, a colon, then the callable in it)")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any error while importing the user's module
        raise TrainingError(f"--estimator {spec}: cannot import module {module_name!r} "
                            f"({type(exc).__name__}: {exc}); it must be installed or on "
                            f"PYTHONPATH") from exc
    factory: Any = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise TrainingError(f"--estimator {spec}: module {module_name!r} has no "
                                f"attribute {attribute!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise TrainingError(f"--estimator {spec}: {attribute!r} is a "
                            f"{type(factory).__name__}, not a callable returning an "
                            f"estimator")
    return factory


def factory_kwargs(factory: Callable[..., Any], schema: FeatureSchema,
                   seed: int) -> dict[str, Any]:
    """``schema``, ``seed`` and ``random_state`` for a factory that names them."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # some builtins have no signature
        return {}
    named = {name for name, p in parameters.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    offered = {"schema": schema, "seed": seed, "random_state": seed}
    return {name: value for name, value in offered.items() if name in named}


def build_from_factory(spec: str, schema: FeatureSchema, seed: int) -> TableModel:
    """An unfitted :class:`TableModel` around what the factory returns."""
    factory = load_factory(spec)
    try:
        estimator = factory(**factory_kwargs(factory, schema, seed))
    except Exception as exc:  # the user's code: say where it failed
        raise TrainingError(f"--estimator {spec}: the factory raised "
                            f"{type(exc).__name__}: {exc}") from exc
    require_estimator(estimator, f"--estimator {spec}", ("fit", "predict"))
    return TableModel(estimator, schema)


def require_estimator(obj: Any, origin: str, methods: tuple[str, ...]) -> None:
    """Refuse what is not a regressor before it is trained or served."""
    missing = [m for m in methods if not callable(getattr(obj, m, None))]
    if missing:
        raise TrainingError(f"{origin}: got a {type(obj).__name__}, which has no "
                            f"{' or '.join(missing)} method; expected a scikit-learn "
                            f"regressor or Pipeline")


def load_model_file(path: str | Path) -> Any:
    """The fitted estimator pickled in ``path`` (``--model-file``). Unpickling runs code
    from the file, hence the warning in the log every time."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"--model-file {path}: no such file")
    log.warning("--model-file %s: %s", path, TRUST_WARNING)
    import joblib  # reads plain pickles too

    try:
        model = joblib.load(path)
    except Exception as exc:  # a truncated file, a module the pickle names is missing, ...
        raise TrainingError(f"--model-file {path}: cannot be loaded ({type(exc).__name__}: "
                            f"{exc}); expected a fitted estimator saved with joblib.dump or "
                            f"pickle.dump, whose modules are importable here") from exc
    require_estimator(model, f"--model-file {path}", ("predict",))
    return model

"""The exported predictor: equal to scikit-learn, and a service that never imports it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from driftkeeper.model.export import export_trees, verified_export
from driftkeeper.model.predictor import TreePredictor
from driftkeeper.model.store import ModelStore
from driftkeeper.schema import DIAMONDS_SCHEMA


def test_export_is_bit_identical_to_scikit_learn(trained_model_dir: Path, diamonds) -> None:
    bundle = ModelStore(trained_model_dir).load()
    assert bundle.predictor_path is not None
    predictor = TreePredictor.load(bundle.predictor_path)
    X = DIAMONDS_SCHEMA.encode(diamonds)
    expected = bundle.model.predict(X)
    np.testing.assert_array_equal(predictor.predict(X), expected)
    rows = X[::97]
    np.testing.assert_array_equal([predictor.predict_row(r) for r in rows.tolist()],
                                  expected[::97])
    np.testing.assert_array_equal(predictor.predict(X[:1]), expected[:1])


def test_unsupported_models_are_not_exported(diamonds) -> None:
    from driftkeeper.model.estimators import build_estimator

    X = DIAMONDS_SCHEMA.encode(diamonds.head(500))
    forest = build_estimator("rf", DIAMONDS_SCHEMA).fit(X, diamonds["price"].head(500))
    assert export_trees(forest) is None
    assert verified_export(forest, X) is None


WORKER = """
import sys, tempfile, time
from pathlib import Path
import numpy as np
import driftkeeper.serving.app
from driftkeeper.model.store import ModelStore
from driftkeeper.policy import default_policy
from driftkeeper.serving import monitor
from driftkeeper.serving.metrics import report_metrics
from driftkeeper.contract.rings import FeedbackRows, InputRows
from driftkeeper.serving.rings import RingWriter
from driftkeeper.serving.runtime import ServingModel
from driftkeeper.serving.tally import tally_metrics, update_tally

bundle = ModelStore(sys.argv[1]).load(with_estimator=False)
model = ServingModel.from_bundle(bundle)
print(model.predict(np.array([[0.5, 4.0, 1.0, 4.0, 61.5, 55.0]]))[0])
# Everything the pod's evaluator does, on a window drifted every way: data drift (with
# each drifted feature's impact), prediction drift (KS with its p-value), estimated
# performance, concept drift and where it lives, the counters and the gauges.
rng = np.random.default_rng(0)
X = bundle.profile.sample[rng.integers(0, len(bundle.profile.sample), 1000)].copy()
X[:, 0] *= 1.4
p = model.predict(X)
r = np.where(X[:, 2] < 3, 0.3 * p, 0.0) + rng.normal(0, 300, 1000)
d, now = Path(tempfile.mkdtemp()), time.time()
RingWriter(d / "inputs-1.ring", InputRows(6).width, 5000).append(
    np.column_stack([np.full(1000, now), X, np.full(1000, model.number), p]))
RingWriter(d / "feedback-1.ring", FeedbackRows(6).width, 5000).append(
    FeedbackRows(6).pack(np.full(1000, now), model.number, r, p, X))
report = monitor.evaluate(model, default_policy(), d, now)
assert report.data.drift and report.prediction.pvalue is not None, report
assert report.performance.drift and report.concept.segments.locations, report
tally, _ = update_tally(None, bundle.profile, model.version, model.number, d, now,
                        estimate=model.estimate_squared_errors)
list(tally_metrics(tally)), list(report_metrics(report.to_dict()))
heavy = [m for m in ("sklearn", "scipy", "pandas", "joblib", "matplotlib") if m in sys.modules]
assert not heavy, heavy
"""


def test_service_modules_import_no_heavy_libraries(trained_model_dir: Path) -> None:
    """A worker serves from predictor.npz and evaluates every drift kind without
    scikit-learn, scipy or pandas in memory (scipy alone costs a worker ~65 MB)."""
    out = subprocess.run([sys.executable, "-c", WORKER, str(trained_model_dir)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) > 0


def test_a_changed_scikit_learn_falls_back_to_the_pickled_model(tmp_path, monkeypatch,
                                                                caplog) -> None:
    """If scikit-learn's private tree arrays change shape, training still succeeds and the
    service loads the pickled model instead of the export."""
    from driftkeeper.model import export
    from driftkeeper.model.store import ModelStore
    from driftkeeper.model.train import TrainingConfig, train
    from driftkeeper.serving.runtime import ModelHolder

    def renamed_internals(model, prefix):
        raise AttributeError("'HistGradientBoostingRegressor' object has no attribute "
                             "'_predictors'")

    monkeypatch.setattr(export, "_hgb_arrays", renamed_internals)
    result = train(tmp_path / "m", TrainingConfig(calibration_trials=1000))
    assert result.metrics["serving_export"] is False
    assert "cannot export" in caplog.text
    holder = ModelHolder(ModelStore(tmp_path / "m"))
    assert holder.refresh()
    assert type(holder.model.predictor).__name__ != "TreePredictor"


def _multiclass(X: np.ndarray, y: np.ndarray, n_classes: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    from driftkeeper.model.estimators import ClassProbabilities

    return ClassProbabilities(HistGradientBoostingClassifier(max_iter=30, random_state=0),
                              n_classes).fit(X, y)


def test_a_multiclass_export_gives_scikit_learns_probabilities() -> None:
    """Issue 19 part 1, first step: K >= 3 classes exported as K boosted sums behind the
    softmax; workers predict every class's probability without scikit-learn (wine: 3
    classes; digits: 10 classes, 64 features)."""
    from sklearn.datasets import load_digits, load_wine

    from driftkeeper.model.predictor import SOFTMAX

    for X, y in (load_wine(return_X_y=True), load_digits(return_X_y=True)):
        n_classes = int(y.max()) + 1
        model = _multiclass(X, y, n_classes)
        arrays = verified_export(model, X)
        assert arrays is not None and int(arrays["link"][0]) == SOFTMAX
        predictor = TreePredictor.from_arrays(arrays)
        assert predictor.classes == n_classes
        probabilities = predictor.predict(X)
        assert probabilities.shape == (len(X), n_classes)
        np.testing.assert_allclose(probabilities, model.predict(X), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
        np.testing.assert_allclose(predictor.predict_row(X[5].tolist()), probabilities[5],
                                   rtol=1e-12)


def test_a_multiclass_model_that_missed_a_class_is_not_exported() -> None:
    """Its k-th trees would not be class index k's: the service unpickles it instead."""
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    seen = y != 1
    model = _multiclass(X[seen], y[seen], 3)
    assert model.predict(X[:4]).shape == (4, 3) and not model.predict(X[:4])[:, 1].any()
    assert export_trees(model) is None


def test_an_older_reader_refuses_a_softmax_file(monkeypatch) -> None:
    """The link tells: a reader that knows identity and logistic only (as every release
    before the softmax) raises rather than mispredicting."""
    from sklearn.datasets import load_wine

    from driftkeeper.model import predictor as module

    X, y = load_wine(return_X_y=True)
    arrays = export_trees(_multiclass(X, y, 3))
    monkeypatch.setattr(module, "LINKS", (module.IDENTITY, module.LOGISTIC))
    with pytest.raises(ValueError, match="predictor link 2 is not one of"):
        TreePredictor.from_arrays(arrays)

"""The exported predictor: equal to scikit-learn, and a service that never imports it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

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


def test_service_modules_import_no_heavy_libraries(trained_model_dir: Path) -> None:
    """A worker serves from predictor.npz: no scikit-learn, scipy or pandas in memory."""
    code = (
        "import sys\n"
        "from driftkeeper.model.store import ModelStore\n"
        "from driftkeeper.serving.runtime import ServingModel\n"
        "import driftkeeper.serving.app\n"
        f"bundle = ModelStore({str(trained_model_dir)!r}).load(with_estimator=False)\n"
        "model = ServingModel.from_bundle(bundle)\n"
        "import numpy as np\n"
        "print(model.predict(np.array([[0.5, 4.0, 1.0, 4.0, 61.5, 55.0]]))[0])\n"
        "heavy = [m for m in ('sklearn', 'scipy', 'pandas', 'joblib', 'matplotlib')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
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

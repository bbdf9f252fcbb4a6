"""What a training run is told: the one place for training defaults.

Kept free of scikit-learn and pandas imports so the command line can show these defaults
without loading them. A DriftPolicy's retraining settings map onto it in
``model/retrain.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..drift import calibration
from ..drift.profile import DEFAULT_BINS


@dataclass(frozen=True)
class TrainingConfig:
    """What to train on and how. With feedback, the recent labelled rows describe the world
    the new model will serve: they are the drift reference, they are cross-validated to give
    the held-out residuals, and in a refit they outweigh the base data (``feedback_share``
    of the total sample weight)."""

    model: str = "hgb"
    # A user's estimator instead of a built-in kind (model/custom.py): a factory called for
    # every fit, "package.module:factory" ...
    estimator: str | None = None
    # ... or a fitted, pickled estimator, evaluated on the held-out split, not refitted
    # (unpickling runs code from the file: trusted files only) ...
    model_file: str | None = None
    # ... or, for a refit on labels, a clone of the current model's own estimator (how a
    # version that came from a file is retrained: there is no factory to call).
    clone_current: bool = False
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
    strategy: str = "auto"  # refit | recalibrate | auto (both; the better out of fold)
    folds: int = 5  # cross-validation folds over feedback rows (and small tables)
    small_table_rows: int = 5_000  # fewer base rows are cross-validated, not split 80/20
    bins: int = DEFAULT_BINS
    calibration_trials: int = calibration.TRIALS
    promote: bool = True

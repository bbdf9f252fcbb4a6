"""The lab that Driftkeeper replaces, reproduced for benchmarking only.

Source: the "ML Model Drift Monitoring System" lab (src/train.py, src/data_drift.py,
src/concept_drift.py, src/app.py). The model, the split and the drift computations below are
the lab's, line for line where it matters for cost; only the data source differs (the
diamonds table shipped with driftkeeper instead of a download through seaborn, same rows).

Nothing in the product imports this module, and it imports nothing from the product but the
data loader.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from driftkeeper.data import load_diamonds

FEATURES = ["carat", "cut", "color", "clarity", "depth", "table"]
CATEGORICAL = ["cut", "color", "clarity"]
NUMERIC = ["carat", "depth", "table"]
TARGET = "price"
THRESHOLD = 0.15  # the lab's DATA_DRIFT_THRESHOLD and CONCEPT_DRIFT_THRESHOLD


def load_table() -> pd.DataFrame:
    """The diamonds table as the lab sees it: categories as plain strings (object dtype)."""
    frame = load_diamonds()
    for column in CATEGORICAL:
        frame[column] = frame[column].astype(str).astype(object)
    return frame


def build_pipeline() -> Pipeline:
    """The lab's model: scaler + one-hot (first level dropped) + a 100-tree forest."""
    preprocessor = ColumnTransformer(
        transformers=[
            ("num", StandardScaler(), NUMERIC),
            ("cat", OneHotEncoder(drop="first", sparse_output=False), CATEGORICAL),
        ]
    )
    return Pipeline([
        ("preprocessor", preprocessor),
        ("regressor", RandomForestRegressor(n_estimators=100, random_state=42)),
    ])


def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """The lab's 80/20 split (random_state=42): X_train, X_test, y_train, y_test."""
    return train_test_split(frame[FEATURES], frame[TARGET], test_size=0.2, random_state=42)


def current_window(frame: pd.DataFrame, rows: int = 1000, seed: int = 0) -> pd.DataFrame:
    """A window like the lab's simulated traffic: resampled rows with jittered numerics and
    1% price noise (monitor_drifts in src/app.py), seeded for repeatability."""
    rng = np.random.default_rng(seed)
    new = frame.sample(n=rows, replace=True, random_state=seed).reset_index(drop=True)
    new["carat"] = new["carat"] * rng.uniform(0.98, 1.02)
    new["depth"] = new["depth"] * rng.uniform(0.99, 1.01)
    new["table"] = new["table"] * rng.uniform(0.99, 1.01)
    new["price"] = new["price"] + rng.normal(0, new["price"] * 0.01)
    return new


def detect_data_drift(reference_data: pd.DataFrame, current_data: pd.DataFrame,
                      threshold: float = THRESHOLD) -> tuple[bool, dict[str, float], float]:
    """src/data_drift.py: KS on standardised numerics, a KL sum on categoricals."""
    drift_scores: dict[str, float] = {}
    for column in reference_data.columns:
        if reference_data[column].dtype.name in ["object", "category"]:
            ref_dist = reference_data[column].value_counts(normalize=True)
            curr_dist = current_data[column].value_counts(normalize=True)
            all_categories = list(set(ref_dist.index) | set(curr_dist.index))
            ref_probs = np.array([ref_dist.get(cat, 0) for cat in all_categories])
            curr_probs = np.array([curr_dist.get(cat, 0) for cat in all_categories])
            ref_probs = ref_probs / sum(ref_probs)
            curr_probs = curr_probs / sum(curr_probs)
            drift_scores[column] = np.sum(ref_probs * np.log(ref_probs / curr_probs))
        else:
            scaler = StandardScaler()
            ref_normalized = scaler.fit_transform(
                reference_data[column].values.reshape(-1, 1)).ravel()
            curr_normalized = scaler.transform(
                current_data[column].values.reshape(-1, 1)).ravel()
            ks_statistic, _ = ks_2samp(ref_normalized, curr_normalized)
            drift_scores[column] = ks_statistic
    overall = float(np.mean(list(drift_scores.values())))
    return overall > threshold, drift_scores, overall


def detect_concept_drift(model_pipeline: Any, X_reference: pd.DataFrame,
                         y_reference: pd.Series, X_current: pd.DataFrame,
                         y_current: pd.Series,
                         threshold: float = THRESHOLD) -> tuple[bool, float]:
    """src/concept_drift.py: relative MSE change, reference rows predicted every time."""
    y_pred_reference = model_pipeline.predict(X_reference)
    y_pred_current = model_pipeline.predict(X_current)
    mse_reference = mean_squared_error(y_reference, y_pred_reference)
    mse_current = mean_squared_error(y_current, y_pred_current)
    if mse_reference == 0:
        change = 0.0 if mse_current == 0 else 1.0
    else:
        change = (mse_current - mse_reference) / mse_reference
    return change > threshold, float(change)


def monitor_drifts(model_pipeline: Any, X_reference: pd.DataFrame, y_reference: pd.Series,
                   X_current: pd.DataFrame, y_current: pd.Series) -> tuple[float, float]:
    """The drift computation of one monitor_drifts tick (without its download and prints):
    returns (data drift score, concept drift score)."""
    _, _, data_score = detect_data_drift(X_reference, X_current)
    _, concept_score = detect_concept_drift(model_pipeline, X_reference, y_reference,
                                            X_current, y_current)
    return data_score, concept_score

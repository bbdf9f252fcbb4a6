"""spec.falseAlarmRate is family-wise: on seeded windows of an unchanged world (with the
lab's per-row noise), any label-free verdict fires at most about that often, while clear
shifts are still caught. The full measurement, at n = 200, 1,000 and 5,000 on held-out
rows, is bench/false_alarms.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftkeeper.drift.batch import batch_windows
from driftkeeper.drift.judge import Windows, evaluate_all
from driftkeeper.drift.settings import MonitorSettings
from driftkeeper.model.store import ModelStore
from driftkeeper.policy import default_policy, parse_policy
from driftkeeper.policy.document import LABEL_FREE
from driftkeeper.serving.runtime import ServingModel

FAMILY = default_policy().monitor
PER_KIND = parse_policy({k: {"falseAlarmRate": 0.01} for k in LABEL_FREE}).monitor


@pytest.fixture(scope="module")
def model(trained_model_dir: Path) -> ServingModel:
    return ServingModel.from_bundle(ModelStore(trained_model_dir).load())


def fired(model: ServingModel, windows: Windows, monitor: MonitorSettings) -> set[str]:
    """The label-free kinds whose verdict is drift."""
    report = evaluate_all(model.bundle.profile, windows, monitor, model.version, 0.0)
    assert report.prediction is not None and report.performance is not None
    verdicts = {"data": report.data, "prediction": report.prediction,
                "performance": report.performance}
    return {kind for kind, verdict in verdicts.items() if verdict.drift is True}


def lab_rows(diamonds: pd.DataFrame, rng: np.random.Generator, n: int = 1000) -> pd.DataFrame:
    """n rows as n requests of the lab: every numerical feature times U(0.99, 1.01)."""
    rows = diamonds.iloc[rng.integers(0, len(diamonds), n)].reset_index(drop=True)
    for name in ("carat", "depth", "table"):
        rows[name] = rows[name] * rng.uniform(0.99, 1.01, n)
    return rows


def windows_of(model: ServingModel, rows: pd.DataFrame) -> Windows:
    return batch_windows(model, model.bundle.schema.encode(rows))


def test_quiet_windows_set_off_any_label_free_kind_about_one_percent(model, diamonds) -> None:
    rng = np.random.default_rng(19)
    windows = [windows_of(model, lab_rows(diamonds, rng)) for _ in range(400)]
    family = sum(bool(fired(model, w, FAMILY)) for w in windows)
    before = sum(bool(fired(model, w, PER_KIND)) for w in windows)
    # The 1 % budget plus the sampling error of 400 windows (4 fired here; 8 with the old
    # budget of 1 % per kind, which this bound would refuse).
    assert family <= 6
    assert before >= family  # a share of one budget never fires more


def _more_i_and_j(diamonds: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    weight = np.where(diamonds["color"].isin(["I", "J"]), 3.0, 1.0)
    picked = rng.choice(len(diamonds), 1000, p=weight / weight.sum())
    return diamonds.iloc[picked].reset_index(drop=True)


SHIFTS: dict[str, Callable[[pd.DataFrame, np.random.Generator], pd.DataFrame]] = {
    "carat x1.3": lambda d, rng: lab_rows(d, rng).assign(carat=lambda f: f.carat * 1.3),
    "depth +1": lambda d, rng: lab_rows(d, rng).assign(depth=lambda f: f.depth + 1.0),
    "colours I and J x3": _more_i_and_j,
}


@pytest.mark.parametrize("shift", sorted(SHIFTS))
def test_clear_shifts_are_still_caught(model, diamonds, shift: str) -> None:
    rng = np.random.default_rng(5)
    caught = [bool(fired(model, windows_of(model, SHIFTS[shift](diamonds, rng)), FAMILY))
              for _ in range(40)]
    assert np.mean(caught) >= 0.95


def test_a_small_carat_shift_is_caught_by_prediction_or_performance(model, diamonds) -> None:
    rng = np.random.default_rng(11)
    caught = []
    for _ in range(40):
        rows = lab_rows(diamonds, rng).assign(carat=lambda f: f.carat * 1.1)
        caught.append(bool(fired(model, windows_of(model, rows), FAMILY)
                           & {"prediction", "performance"}))
    assert np.mean(caught) >= 0.95

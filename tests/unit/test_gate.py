"""The promotion gate: a candidate replaces the serving model only when it is better, by the
policy's margin, on enough fresh labelled rows."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from driftkeeper.model.gate import judge
from driftkeeper.model.store import ModelBundle, ModelStore


class Offset:
    """The serving estimator's predictions plus a constant: a model known to be worse."""

    def __init__(self, model, offset: float) -> None:
        self.model, self.offset = model, offset

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict(X) + self.offset


@pytest.fixture(scope="module")
def serving(trained_model_dir: Path) -> ModelBundle:
    return ModelStore(trained_model_dir).load()


def _as(bundle: ModelBundle, version: str, offset: float) -> ModelBundle:
    return replace(bundle, version=version, model=Offset(bundle.model, offset))


def test_the_better_model_is_promoted_and_the_reason_gives_both_rmses(serving,
                                                                       diamonds) -> None:
    rows = diamonds.sample(400, random_state=1)
    worse = _as(serving, "v1", 800.0)  # the serving model, off by $800
    verdict = judge(serving, worse, rows)
    assert verdict.promote and verdict.rows == 400
    y, X = rows["price"].to_numpy(), serving.schema.encode(rows)
    assert verdict.candidate_rmse == pytest.approx(np.sqrt(np.mean((y - serving.model.predict(X))
                                                                   ** 2)))
    assert verdict.serving_rmse > verdict.candidate_rmse
    assert f"{verdict.candidate_rmse:.1f}" in verdict.reason and "better" in verdict.reason
    assert not judge(worse, serving, rows).promote  # and never the other way round


def test_min_improvement_is_a_margin_the_candidate_must_clear(serving, diamonds) -> None:
    rows = diamonds.sample(400, random_state=2)
    same = _as(serving, "v2", 0.0)
    assert judge(same, serving, rows, min_improvement=0.0).promote  # as good: promoted
    assert not judge(same, serving, rows, min_improvement=0.01).promote
    slightly = _as(serving, "v1", 150.0)
    base = judge(serving, slightly, rows)
    gain = 1 - base.candidate_rmse / base.serving_rmse
    assert judge(serving, slightly, rows, min_improvement=gain * 0.9).promote
    assert not judge(serving, slightly, rows, min_improvement=gain * 1.1).promote


def test_too_few_rows_never_promote(serving, diamonds) -> None:
    verdict = judge(serving, _as(serving, "v1", 5000.0), diamonds.head(49), min_rows=50)
    assert not verdict.promote and verdict.rows == 49
    assert math.isnan(verdict.candidate_rmse) and "only 49" in verdict.reason

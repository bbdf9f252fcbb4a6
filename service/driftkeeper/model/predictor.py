"""Tree-ensemble predictions from plain arrays: the service never imports scikit-learn.

At training time the fitted model is exported to ``predictor.npz`` (``model/export.py``) and
checked against scikit-learn's own predictions; the service loads only that file. Importing
scikit-learn (and the scipy and pandas it pulls in) costs a worker ~120 MB of its ~180 MB, and
its ``predict`` spends ~350 µs on validation and per-tree calls for one row, where walking the
trees from lists takes ~13 µs.

Stages: stage 0 is a gradient-boosted sum of trees; each further stage is a correction
(see RecalibratedRegressor), multiplicative, ``prediction = max(prediction, floor) *
exp(stage)``, or, where ``additive`` marks it, ``prediction + stage``. Trees are summed in
scikit-learn's order, so results are bit-identical to its ``predict``.

Format 1 has multiplicative corrections only (files written before additive ones existed
have no ``additive`` array); format 2 adds ``additive`` (one flag per stage) and is written
only when a stage is additive, so an older reader refuses such a file instead of
mispredicting.

A binary classifier (``link`` 1, logistic) is served as a probability: its boosted sum is a
log-odds, and the prediction is ``1 / (1 + exp(-sum))``, P(classes[1]). Files written before
the link existed have none: identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import numpy as np

FORMAT = 1
IDENTITY, LOGISTIC, SOFTMAX = 0, 1, 2
"""Links from the boosted sum to the prediction (``link`` in ``predictor.npz``). SOFTMAX:
a classifier of K >= 3 classes, whose K stages are the classes' boosted sums (no
corrections) and whose prediction is the row of K probabilities. A reader that knows only
the first two links refuses such a file."""
LINKS = (IDENTITY, LOGISTIC, SOFTMAX)
ADDITIVE_FORMAT = 2  # at least one additive correction: older readers must refuse it
FORMATS = (FORMAT, ADDITIVE_FORMAT)
FIELDS = ("feature", "threshold", "left", "right", "is_leaf", "value")
CHUNK_ROWS = 1024
"""Rows per vectorised batch: larger batches spill the per-tree node arrays out of cache
(6,000 rows at once took 1.5x as long as in chunks of 1,000)."""


@dataclass(frozen=True)
class Stage:
    """One boosted sum: a baseline plus trees, as lists (rows) and as arrays (batches)."""

    baseline: float
    trees: list[tuple[list[bool], list[int], list[float], list[int], list[int], list[float]]]
    arrays: dict[str, np.ndarray]  # FIELDS concatenated over trees, plus "offsets", "depth"

    def predict_row(self, row: list[float]) -> float:
        total = self.baseline
        for is_leaf, feature, threshold, left, right, value in self.trees:
            node = 0
            while not is_leaf[node]:
                node = left[node] if row[feature[node]] <= threshold[node] else right[node]
            total += value[node]
        return total

    @cached_property
    def _descent(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Node arrays for descending all trees at once, in global node ids: split feature,
        threshold, and children interleaved (``children[2 * node + went_right]``); a leaf
        is its own child both ways (threshold +inf), so every row takes ``depth`` steps
        with four gathers each and no leaf test."""
        a = self.arrays
        per_node = np.repeat(a["offsets"][:-1], np.diff(a["offsets"]))
        ids = np.arange(len(per_node))
        leaf = a["is_leaf"].astype(bool)
        feature = np.where(leaf, 0, a["feature"]).astype(np.intp)
        threshold = np.where(leaf, np.inf, a["threshold"])
        children = np.empty(2 * len(ids), dtype=np.intp)
        children[0::2] = np.where(leaf, ids, a["left"] + per_node)
        children[1::2] = np.where(leaf, ids, a["right"] + per_node)
        return feature, threshold, children, a["value"]

    def predict(self, X: np.ndarray) -> np.ndarray:
        a = self.arrays
        feature, threshold, children, value = self._descent
        n_rows = len(X)
        columns = np.ascontiguousarray(np.asarray(X, dtype=np.float64).T).ravel()
        rows = np.arange(n_rows)
        # All trees descend together (trees x rows), node ids global.
        nodes = np.repeat(a["offsets"][:-1, None].astype(np.intp), n_rows, axis=1)
        for _ in range(int(a["depth"])):
            went_right = ~(columns[feature[nodes] * n_rows + rows] <= threshold[nodes])
            nodes = children[2 * nodes + went_right]
        values = value[nodes]
        total = np.full(n_rows, self.baseline)
        for t in range(len(values)):  # in tree order, as scikit-learn adds them
            total += values[t]
        return total


class TreePredictor:
    """A model exported by ``driftkeeper.model.export``: stages of boosted trees."""

    def __init__(self, stages: list[Stage], floor: float,
                 additive: list[bool] | None = None, link: int = IDENTITY) -> None:
        self.stages = stages
        self.floor = floor
        self.additive = additive or [False] * len(stages)  # per stage; stage 0 unused
        self.link = link

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TreePredictor:
        if int(arrays["format"][0]) not in FORMATS:
            raise ValueError(f"predictor format {int(arrays['format'][0])} is not one of "
                             f"{FORMATS}")
        stages = []
        for s in range(int(arrays["stages"][0])):
            a = {f: arrays[f"s{s}_{f}"] for f in (*FIELDS, "offsets", "depth")}
            offsets = a["offsets"].tolist()
            trees = []
            for t in range(len(offsets) - 1):
                lo, hi = offsets[t], offsets[t + 1]
                trees.append((a["is_leaf"][lo:hi].astype(bool).tolist(),
                              a["feature"][lo:hi].tolist(), a["threshold"][lo:hi].tolist(),
                              a["left"][lo:hi].tolist(), a["right"][lo:hi].tolist(),
                              a["value"][lo:hi].tolist()))
            a["is_leaf"] = a["is_leaf"].astype(bool)
            stages.append(Stage(float(arrays[f"s{s}_baseline"][0]), trees, a))
        additive = (arrays["additive"].astype(bool).tolist() if "additive" in arrays
                    else [False] * len(stages))
        link = int(arrays["link"][0]) if "link" in arrays else IDENTITY
        if link not in LINKS:
            raise ValueError(f"predictor link {link} is not one of {LINKS}")
        if link == SOFTMAX and (len(stages) < 3 or any(additive)):
            raise ValueError(f"a softmax predictor has one stage per class (at least 3) "
                             f"and no corrections, not {len(stages)} stages")
        return cls(stages, float(arrays["floor"][0]), additive, link)

    @classmethod
    def load(cls, path: str | Path | BinaryIO) -> TreePredictor:
        """From an ``.npz`` file or stream (arrays only: pickles are refused)."""
        with np.load(path, allow_pickle=False) as data:
            return cls.from_arrays({k: data[k] for k in data.files})

    @property
    def classes(self) -> int:
        """Columns of a prediction: K for a softmax predictor, else 1 (one number a row)."""
        return len(self.stages) if self.link == SOFTMAX else 1

    def predict_row(self, row: list[float]) -> float | np.ndarray:
        if self.link == SOFTMAX:
            return _softmax(np.array([[s.predict_row(row) for s in self.stages]]))[0]
        prediction = self.stages[0].predict_row(row)
        for stage, additive in zip(self.stages[1:], self.additive[1:], strict=True):
            if additive:
                prediction = prediction + stage.predict_row(row)
            else:
                prediction = max(prediction, self.floor) * math.exp(stage.predict_row(row))
        if self.link == LOGISTIC:
            return float(_expit(np.array([prediction]))[0])
        return prediction

    def predict(self, X: np.ndarray) -> np.ndarray:
        """One number per row, or (softmax) one row of K probabilities per row."""
        if len(X) == 1:
            return np.array([self.predict_row(X[0].tolist())])
        if len(X) > CHUNK_ROWS:  # node arrays of (trees x rows) stay in cache
            return np.concatenate([self.predict(X[i:i + CHUNK_ROWS])
                                   for i in range(0, len(X), CHUNK_ROWS)])
        if self.link == SOFTMAX:
            return _softmax(np.column_stack([s.predict(X) for s in self.stages]))
        prediction = self.stages[0].predict(X)
        for stage, additive in zip(self.stages[1:], self.additive[1:], strict=True):
            if additive:
                prediction = prediction + stage.predict(X)
            else:
                prediction = np.maximum(prediction, self.floor) * np.exp(stage.predict(X))
        return _expit(prediction) if self.link == LOGISTIC else prediction


def _expit(x: np.ndarray) -> np.ndarray:
    """The logistic function without overflow: exp of a non-positive number only."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (rows, K) sums, shifted by each row's maximum (no overflow)."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)

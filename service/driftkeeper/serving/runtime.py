"""What a worker holds: the serving model and the policy, both hot-reloaded.

A new model version is loaded beside the old one and swapped in with one attribute
assignment; requests in flight finish on the object they started with, so a reload never
fails a request. A broken version or policy is logged and skipped, never half-applied.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..drift.profile import NumericalProfile
from ..errors import DriftkeeperError
from ..model.store import PREDICTOR_FILE, ModelBundle, ModelStore, version_number
from ..policy import DriftPolicy, default_policy, load_policy
from . import metrics
from .predictor import TreePredictor

log = logging.getLogger("driftkeeper.service")


@dataclass
class ServingModel:
    """A loaded model version plus what the request path needs precomputed."""

    bundle: ModelBundle
    number: int
    numeric: list[tuple[int, str, Any]]  # (column, feature, NumericBins)
    categorical: list[tuple[int, str, int]]  # (column, feature, number of levels)
    predictor: Any  # a TreePredictor, or the scikit-learn estimator when not exported
    _edges: dict[str, tuple[float, list[float]]] = field(default_factory=dict)
    _bin_counters: dict[tuple[str, int], Any] = field(default_factory=dict)

    @classmethod
    def from_bundle(cls, bundle: ModelBundle) -> ServingModel:
        numeric, categorical = [], []
        for j, feat in enumerate(bundle.schema.features):
            prof = bundle.profile.features[feat.name]
            if isinstance(prof, NumericalProfile):
                numeric.append((j, feat.name, prof.bins))
            else:
                categorical.append((j, feat.name, len(feat.levels)))
        predictor = (TreePredictor.load(bundle.predictor_path) if bundle.predictor_path
                     else bundle.model)
        model = cls(bundle, version_number(bundle.version), numeric, categorical, predictor)
        model._edges = {name: (float(b.edges[0]), b.edges[1:].tolist())
                        for _, name, b in numeric}
        return model

    @property
    def version(self) -> str:
        return self.bundle.version

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.predictor.predict(X), dtype=np.float64)

    def count_bins(self, X: np.ndarray) -> None:
        """Add the rows to the mergeable per-feature bin counters."""
        if len(X) == 1:  # the common single-row request: no numpy round trips
            row = X[0].tolist()
            for j, name, _ in self.numeric:
                lowest, upper = self._edges[name]
                x = row[j]
                self._counter(name, 0 if x < lowest else bisect_left(upper, x) + 1).inc()
            for j, name, _ in self.categorical:
                self._counter(name, int(row[j])).inc()
            return
        for j, name, bins in self.numeric:
            self._count(name, bins.bin_index(X[:, j]))
        for j, name, _ in self.categorical:
            self._count(name, X[:, j].astype(np.int64))

    def _count(self, name: str, bins: np.ndarray) -> None:
        values, counts = np.unique(bins, return_counts=True)
        for b, c in zip(values.tolist(), counts.tolist(), strict=True):
            self._counter(name, b).inc(c)

    def _counter(self, name: str, b: int) -> Any:
        key = (name, b)
        child = self._bin_counters.get(key)
        if child is None:
            child = metrics.FEATURE_BINS.labels(name, str(b), self.version)
            self._bin_counters[key] = child
        return child


class ModelHolder:
    """The current model of a model directory, reloaded when ``current`` moves."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self.model: ServingModel | None = None
        self._skipped: str | None = None  # a version that failed to load

    def refresh(self) -> bool:
        """Load the current version if it changed; True when a new model was swapped in."""
        target = self.store.current_version()
        loaded = self.model.version if self.model else None
        if target is None or target == loaded or target == self._skipped:
            return False
        try:
            # Models that cannot be exported (the lab's forest) are served by scikit-learn.
            exported = (self.store.path(target) / PREDICTOR_FILE).is_file()
            bundle = self.store.load(target, with_estimator=not exported)
            new = ServingModel.from_bundle(bundle)
        except (DriftkeeperError, OSError, ValueError, KeyError) as exc:
            log.error("cannot load model %s, keeping %s: %s", target, loaded, exc)
            metrics.RELOADS.labels("failed").inc()
            self._skipped = target
            return False
        old, self.model = self.model, new
        if old is not None:  # multiprocess gauges cannot be removed, only zeroed
            metrics.MODEL_INFO.labels(old.version, old.bundle.metadata["model"]["kind"]).set(0)
        metrics.MODEL_INFO.labels(new.version, new.bundle.metadata["model"]["kind"]).set(1)
        metrics.RELOADS.labels("loaded").inc()
        self._skipped = None
        log.info("worker %d serves model %s (was %s)", os.getpid(), new.version, loaded)
        return True


class PolicyHolder:
    """The DriftPolicy from a file (or the defaults), re-read when the file changes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.policy: DriftPolicy = default_policy()
        self.error: str | None = None
        self._stamp: tuple[float, int] | None = None

    def invalidate(self) -> None:
        """Re-read the file on the next refresh (a new model may reject old feature names)."""
        self._stamp = None

    def refresh(self, model: ServingModel | None) -> bool:
        if self.path is None:
            return False
        try:
            st = self.path.stat()
        except FileNotFoundError:
            if self.error is None:
                self.error = f"policy file {self.path} not found; using the previous policy"
                log.warning(self.error)
            return False
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            policy = load_policy(self.path, model.bundle.schema if model else None)
        except DriftkeeperError as exc:
            self.error = str(exc)
            metrics.POLICY_ERRORS.inc()
            log.error("rejected policy %s, keeping the previous one: %s", self.path, exc)
            return False
        self.policy, self.error = policy, None
        log.info("policy %s loaded from %s", policy.name, self.path)
        return True

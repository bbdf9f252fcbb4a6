"""What a worker holds: the serving model and the policy, both hot-reloaded.

A new model version is loaded beside the old one and swapped in with one attribute
assignment; requests in flight finish on the object they started with, so a reload never
fails a request. A version that fails to load is retried with backoff (a transient error,
such as a file still being synced, heals; a corrupt version is never served), and the
failure is counted and shown in ``/healthz``. A broken policy is logged and skipped, never
half-applied.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..drift.performance import loss_inputs
from ..drift.probability import summaries
from ..errors import DriftkeeperError
from ..model.predictor import TreePredictor
from ..model.store import PREDICTOR_FILE, PROFILE_FILE, ModelBundle, ModelStore, version_number
from ..policy import DriftPolicy, default_policy, load_policy
from . import metrics

log = logging.getLogger("driftkeeper.service")


@dataclass
class ServingModel:
    """A loaded model version plus what the request path needs precomputed."""

    bundle: ModelBundle
    number: int
    predictor: Any  # a TreePredictor, or the scikit-learn estimator when not exported
    reference: bytes  # GET /reference: the version's reference profile, as stored
    loss: TreePredictor | None = None  # the loss model (None: no performance estimates)

    @classmethod
    def from_bundle(cls, bundle: ModelBundle) -> ServingModel:
        predictor = (TreePredictor.load(bundle.predictor_path) if bundle.predictor_path
                     else bundle.model)
        reference = (bundle.path / PROFILE_FILE).read_bytes()
        loss = TreePredictor.load(bundle.loss_path) if bundle.loss_path else None
        return cls(bundle, version_number(bundle.version), predictor, reference, loss)

    @property
    def version(self) -> str:
        return self.bundle.version

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The raw outputs: one number per row, or (rows, K) class probabilities."""
        return np.asarray(self.predictor.predict(X), dtype=np.float64)

    def monitored(self, X: np.ndarray) -> np.ndarray:
        """One number per row, as the windows track predictions (drift/probability.py)."""
        return summaries(self.predict(X))

    @property
    def estimates_losses(self) -> bool:
        """Whether this version estimates each row's loss before labels (performance)."""
        return self.loss is not None and self.bundle.profile.performance is not None

    def estimate_squared_errors(self, X: np.ndarray, predictions: np.ndarray
                                ) -> np.ndarray | None:
        """The loss model's estimate of each row's squared error (None without one).
        Batches only: the evaluator calls it, never the request path."""
        if self.loss is None or not self.estimates_losses:
            return None
        if not len(X):
            return np.empty(0)
        return np.maximum(self.loss.predict(loss_inputs(X, predictions)), 0.0)


RETRY_FIRST = 1.0  # seconds before a version that failed to load is tried again
RETRY_MAX = 60.0  # the wait doubles up to this


@dataclass
class LoadFailure:
    """A version that failed to load: when to try again, and why it failed."""

    version: str
    attempts: int
    retry_at: float
    error: str
    since: float  # when the first attempt failed


class ModelHolder:
    """The current model of a model directory, reloaded when ``current`` moves."""

    def __init__(self, store: ModelStore, clock: Callable[[], float] = time.monotonic,
                 serving: bool = True) -> None:
        self.store = store
        self.clock = clock
        self.serving = serving  # a worker's (shown in model_info and reload counts)
        self.model: ServingModel | None = None
        self.failure: LoadFailure | None = None  # the target version, while it fails

    def refresh(self) -> bool:
        """Load the current version if it changed; True when a new model was swapped in."""
        target = self.store.current_version()
        loaded = self.model.version if self.model else None
        now = self.clock()
        failed = self.failure if self.failure and self.failure.version == target else None
        if target is None or target == loaded or (failed and now < failed.retry_at):
            return False
        try:
            # Models that cannot be exported (the lab's forest) are served by scikit-learn.
            exported = (self.store.path(target) / PREDICTOR_FILE).is_file()
            bundle = self.store.load(target, with_estimator=not exported)
            new = ServingModel.from_bundle(bundle)
        except (DriftkeeperError, OSError, ValueError, KeyError) as exc:
            attempts = failed.attempts + 1 if failed else 1
            wait = min(RETRY_FIRST * 2 ** (attempts - 1), RETRY_MAX)
            error = f"{type(exc).__name__}: {exc}"
            if failed is None or failed.error != error:  # once per distinct error
                log.error("cannot load model %s, keeping %s (retrying with backoff): %s",
                          target, loaded, error)
            if self.serving:
                metrics.RELOADS.labels("failed").inc()
            self.failure = LoadFailure(target, attempts, now + wait, error,
                                       failed.since if failed else now)
            return False
        old, self.model = self.model, new
        self.failure = None
        if not self.serving:
            log.info("monitor %d follows model %s (was %s)", os.getpid(), new.version, loaded)
            return True
        if old is not None:  # multiprocess gauges cannot be removed, only zeroed
            metrics.MODEL_INFO.labels(old.version, old.bundle.metadata["model"]["kind"]).set(0)
        metrics.MODEL_INFO.labels(new.version, new.bundle.metadata["model"]["kind"]).set(1)
        metrics.RELOADS.labels("loaded").inc()
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

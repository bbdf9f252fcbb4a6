"""Reference profiles (and exported predictors) of model versions, fetched from replicas.

The fleet's windows are judged against the serving version's reference profile, which only
the model pods hold (``GET /reference``). A version's profile never changes, so it is
fetched once and kept while the version may still serve; the exported predictor
(``GET /reference/predictor``, arrays only, never a pickle) measures drifted features'
impact. Bounded: the newest few versions.
"""

from __future__ import annotations

import io
import logging
from collections import OrderedDict

import requests

from driftkeeper.drift.profile import ReferenceProfile
from driftkeeper.model.predictor import TreePredictor

from .kube import Endpoint

log = logging.getLogger("driftkeeper.operator")

KEEP = 4
"""Versions kept per policy: the serving one and a few before it (a rollback, a rollout)."""


class ReferenceCache:
    """A policy's reference profiles and predictors by version, newest used last."""

    def __init__(self, session: requests.Session, timeout: float, keep: int = KEEP) -> None:
        self.session = session
        self.timeout = timeout
        self.keep = keep
        self._profiles: OrderedDict[str, ReferenceProfile] = OrderedDict()
        self._predictors: dict[str, TreePredictor | None] = {}

    def __len__(self) -> int:
        return len(self._profiles)

    def profile(self, version: str, endpoints: list[Endpoint]) -> ReferenceProfile | None:
        """The version's profile, from the first replica that serves it (None: none does)."""
        if version in self._profiles:
            self._profiles.move_to_end(version)
            return self._profiles[version]
        for endpoint in endpoints:
            try:
                resp = self.session.get(endpoint.url + "/reference", timeout=self.timeout)
                doc = resp.json() if resp.status_code == 200 else {}
                if doc.get("model_version") != version:
                    continue
                profile = ReferenceProfile.from_dict(doc["profile"])
            except (requests.RequestException, ValueError, KeyError) as exc:
                log.warning("reference of %s from %s: %s", version, endpoint.name, exc)
                continue
            self._profiles[version] = profile
            self._predictors[version] = self._fetch_predictor(version, endpoint)
            while len(self._profiles) > self.keep:
                oldest, _ = self._profiles.popitem(last=False)
                self._predictors.pop(oldest, None)
            return profile
        return None

    def predictor(self, version: str) -> TreePredictor | None:
        """The version's exported arrays (None: served from a pickle, or unreadable)."""
        return self._predictors.get(version)

    def _fetch_predictor(self, version: str, endpoint: Endpoint) -> TreePredictor | None:
        try:
            resp = self.session.get(endpoint.url + "/reference/predictor",
                                    timeout=self.timeout)
            if resp.status_code != 200 or resp.headers.get("X-Model-Version") != version:
                return None
            return TreePredictor.load(io.BytesIO(resp.content))
        except (requests.RequestException, ValueError, KeyError, OSError) as exc:
            log.warning("predictor of %s from %s: %s", version, endpoint.name, exc)
            return None

"""Reference profiles (and exported predictors) of model versions, fetched from replicas.

The fleet's windows are judged against the serving version's reference profile, which only
the model pods hold (``GET /reference``). A version's profile never changes, so it is
fetched once and kept while the version may still serve; the exported predictor
(``GET /reference/predictor``, arrays only, never a pickle) measures drifted features'
impact. Bounded: the newest few versions.

Policies that watch the same Service share one cache (``SharedReferences``): a version's
profile is held once per operator, not once per policy. The key is the Service, never the
version name alone: every model directory has its own "v1".
"""

from __future__ import annotations

import io
import logging
import threading
import weakref
from collections import OrderedDict

import requests

from driftkeeper.drift.profile import ReferenceProfile
from driftkeeper.model.predictor import TreePredictor

from .kube import Endpoint

log = logging.getLogger("driftkeeper.operator")

KEEP = 4
"""Versions kept per policy: the serving one and a few before it (a rollback, a rollout)."""


class ReferenceCache:
    """One Service's reference profiles and predictors by version, newest used last.
    Thread-safe: the policies sharing it tick in different threads."""

    def __init__(self, timeout: float, keep: int = KEEP) -> None:
        self.timeout = timeout
        self.keep = keep
        self._profiles: OrderedDict[str, ReferenceProfile] = OrderedDict()
        self._predictors: dict[str, TreePredictor | None] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._profiles)

    def profile(self, version: str, endpoints: list[Endpoint],
                session: requests.Session) -> ReferenceProfile | None:
        """The version's profile, from the first replica that serves it (None: none does).
        One fetch per version: a second policy asking meanwhile waits for the first."""
        with self._lock:
            return self._profile(version, endpoints, session)

    def _profile(self, version: str, endpoints: list[Endpoint],
                 session: requests.Session) -> ReferenceProfile | None:
        if version in self._profiles:
            self._profiles.move_to_end(version)
            return self._profiles[version]
        for endpoint in endpoints:
            try:
                resp = session.get(endpoint.url + "/reference", timeout=self.timeout)
                doc = resp.json() if resp.status_code == 200 else {}
                if doc.get("model_version") != version:
                    continue
                profile = ReferenceProfile.from_dict(doc["profile"])
            except (requests.RequestException, ValueError, KeyError) as exc:
                log.warning("reference of %s from %s: %s", version, endpoint.name, exc)
                continue
            self._profiles[version] = profile
            self._predictors[version] = self._fetch_predictor(version, endpoint, session)
            while len(self._profiles) > self.keep:
                oldest, _ = self._profiles.popitem(last=False)
                self._predictors.pop(oldest, None)
            return profile
        return None

    def predictor(self, version: str) -> TreePredictor | None:
        """The version's exported arrays (None: served from a pickle, or unreadable)."""
        with self._lock:
            return self._predictors.get(version)

    def _fetch_predictor(self, version: str, endpoint: Endpoint,
                         session: requests.Session) -> TreePredictor | None:
        try:
            resp = session.get(endpoint.url + "/reference/predictor",
                                    timeout=self.timeout)
            if resp.status_code != 200 or resp.headers.get("X-Model-Version") != version:
                return None
            return TreePredictor.load(io.BytesIO(resp.content))
        except (requests.RequestException, ValueError, KeyError, OSError) as exc:
            log.warning("predictor of %s from %s: %s", version, endpoint.name, exc)
            return None


class SharedReferences:
    """Each watched Service's ReferenceCache, shared by the policies that watch it. A cache
    lives while some policy holds it (weak values): deleting the last policy of a Service
    frees its profiles."""

    def __init__(self, timeout: float, keep: int = KEEP) -> None:
        self.timeout, self.keep = timeout, keep
        self._caches: weakref.WeakValueDictionary[tuple[str, str], ReferenceCache] = \
            weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def for_service(self, namespace: str, service: str) -> ReferenceCache:
        with self._lock:
            cache = self._caches.get((namespace, service))
            if cache is None:
                cache = ReferenceCache(self.timeout, self.keep)
                self._caches[(namespace, service)] = cache
            return cache

    def __len__(self) -> int:
        return len(self._caches)

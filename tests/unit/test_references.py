"""Reference profiles shared between the policies that watch one Service: fetched once,
never confused with another Service's version of the same name, freed with the last
policy."""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from driftkeeper.model.store import ModelStore
from driftkeeper_operator.kube import Endpoint
from driftkeeper_operator.references import ReferenceCache, SharedReferences


class FakeResponse:
    def __init__(self, doc: dict[str, Any] | None) -> None:
        self.status_code = 200 if doc is not None else 404
        self._doc = doc or {}
        self.headers: dict[str, str] = {}
        self.content = b""

    def json(self) -> dict[str, Any]:
        return self._doc


class FakeSession:
    """/reference of each replica URL; counts the fetches, slowly (to let threads race)."""

    def __init__(self, docs: dict[str, dict[str, Any]]) -> None:
        self.docs, self.gets = docs, []
        self._lock = threading.Lock()

    def get(self, url: str, timeout: float) -> FakeResponse:
        with self._lock:
            self.gets.append(url)
        time.sleep(0.01)
        base, _, path = url.rpartition("/reference")
        return FakeResponse(self.docs.get(base) if not path else None)


@pytest.fixture(scope="module")
def profile_doc(trained_model_dir: Path) -> dict[str, Any]:
    return ModelStore(trained_model_dir).load(with_estimator=False).profile.to_dict()


def _doc(profile: dict[str, Any], version: str = "v1", rows: int | None = None):
    profile = dict(profile)
    if rows is not None:  # a distinguishable profile: another model's "v1"
        profile["n_reference"] = rows
    return {"model_version": version, "profile": profile}


def test_policies_of_one_service_share_one_fetch(profile_doc) -> None:
    shared = SharedReferences(timeout=1.0)
    session = FakeSession({"http://a": _doc(profile_doc)})
    endpoints = [Endpoint("a", "http://a")]
    first, second = shared.for_service("ml", "diamonds"), shared.for_service("ml", "diamonds")
    assert first is second
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(
        first.profile("v1", endpoints, session))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(results) == 4 and all(r is results[0] for r in results)
    assert session.gets.count("http://a/reference") == 1  # four policies, one fetch


def test_another_service_never_gets_this_services_v1(profile_doc) -> None:
    shared = SharedReferences(timeout=1.0)
    session = FakeSession({"http://a": _doc(profile_doc, rows=111),
                           "http://b": _doc(profile_doc, rows=222)})
    a = shared.for_service("ml", "diamonds").profile("v1", [Endpoint("a", "http://a")], session)
    b = shared.for_service("ml", "prices").profile("v1", [Endpoint("b", "http://b")], session)
    other_ns = shared.for_service("other", "diamonds")
    assert a is not None and b is not None
    assert (a.n_reference, b.n_reference) == (111, 222)
    assert len(other_ns) == 0  # same Service name, another namespace: its own cache


def test_the_cache_goes_with_the_last_policy_holding_it(profile_doc) -> None:
    shared = SharedReferences(timeout=1.0)
    cache = shared.for_service("ml", "diamonds")
    cache.profile("v1", [Endpoint("a", "http://a")], FakeSession({"http://a": _doc(profile_doc)}))
    assert len(shared) == 1
    del cache
    gc.collect()
    assert len(shared) == 0


def test_versions_kept_are_bounded(profile_doc) -> None:
    cache = ReferenceCache(timeout=1.0, keep=2)
    for n in range(1, 6):
        session = FakeSession({"http://a": _doc(profile_doc, version=f"v{n}")})
        assert cache.profile(f"v{n}", [Endpoint("a", "http://a")], session) is not None
    assert len(cache) == 2

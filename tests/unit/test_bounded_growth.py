"""Bounded growth: 200 promotions leave bounded disk (versions kept by retention), memory
(one serving model, one set of validators) and metric series; the driver's events and
retrain records rotate; segment series are capped per feature."""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bad_inputs import GOOD_ROW
from driftkeeper.drift.segments import MAX_SEGMENTS, SegmentFeature, layout_from_schema
from driftkeeper.local import driver as driver_module
from driftkeeper.model.store import ModelStore
from driftkeeper.schema import Feature, FeatureSchema, Target
from driftkeeper.serving.app import create_app, state_of
from driftkeeper.serving.config import ServiceConfig
from driftkeeper.serving.monitor_process import Monitor
from driftkeeper.serving.runtime import ServingModel


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _series(text: str) -> set[tuple[str, tuple]]:
    """Every series, its version label written as "vN" (the serving one differs)."""
    return {(s.name, tuple(sorted((k, "vN" if k in ("model_version", "version") else v)
                                  for k, v in s.labels.items())))
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_two_hundred_promotions_leave_bounded_disk_memory_and_series(
        model_dir: Path, tmp_path: Path) -> None:
    store = ModelStore(model_dir)
    one_version = _bytes(store.path("v1"))
    template = tmp_path / "template"  # v1 itself is deleted by retention along the way
    shutil.copytree(store.path("v1"), template)
    config = ServiceConfig(model_dir=model_dir, state_dir=tmp_path / "state")
    config.windows_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(config, start_background=False)
    client = app.test_client()
    state = state_of(app)
    monitor = Monitor(config)
    labelled = {**GOOD_ROW, "price": 1700}
    series_after: dict[int, set] = {}
    try:
        for n in range(2, 202):
            shutil.copytree(template, store.path(f"v{n}"))
            store.promote(f"v{n}")
            deleted = store.prune(keep=10)
            assert f"v{n}" not in deleted and f"v{n - 1}" not in deleted
            state.tick()
            monitor.tick(now=1_800_000_000.0 + n)
            assert client.post("/predict", json=GOOD_ROW).get_json()["model_version"] == f"v{n}"
            assert client.post("/feedback", json=labelled).status_code == 200
            scraped = client.get("/metrics").get_data(as_text=True)  # as Prometheus does
            if n in (21, 201):
                series_after[n] = _series(scraped)
        versions = store.versions()
        assert len(versions) == 10 and versions[-1] == "v201"
        assert store.current_version() == "v201" and store.previous_version() == "v200"
        assert _bytes(store.versions_dir) <= 10 * one_version * 1.01
        assert not list(store.versions_dir.glob(".trash-*"))
        assert len(state._validators) <= 2  # the serving version's, with and without target
        gc.collect()
        serving = [o for o in gc.get_objects() if isinstance(o, ServingModel)]
        # Two holders, the worker's and the monitor's: each its current model (and at most
        # one still referenced).
        assert len(serving) <= 4
        # The same series after 20 promotions and after 200: no label grows with versions.
        assert series_after[201] == series_after[21], series_after[201] ^ series_after[21]
        text = client.get("/metrics").get_data(as_text=True)
        assert 'model_version="v201"' in text and 'model_version="v200"' not in text
    finally:
        state.stop()


def test_retention_never_deletes_the_serving_version_or_its_predecessor(
        model_dir: Path) -> None:
    store = ModelStore(model_dir)
    for n in range(2, 8):
        shutil.copytree(store.path("v1"), store.path(f"v{n}"))
    store.promote("v3")
    store.promote("v2")  # a rollback: v2 serves, v3 is what it replaced
    deleted = store.prune(keep=2)
    assert set(store.versions()) == {"v2", "v3", "v6", "v7"}
    assert sorted(deleted) == ["v1", "v4", "v5"]
    with pytest.raises(ValueError, match="at least 2"):
        store.prune(keep=1)


def test_a_prune_cut_short_leaves_only_trash_that_the_next_one_removes(
        model_dir: Path) -> None:
    store = ModelStore(model_dir)
    shutil.copytree(store.path("v1"), store.versions_dir / ".trash-v0-deadbeef")
    assert store.versions() == ["v1"]  # trash is never a version
    store.prune(keep=2)
    assert not list(store.versions_dir.glob(".trash-*"))


def test_the_drivers_events_and_retrain_records_rotate(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(driver_module, "EVENTS_MAX_BYTES", 2000)
    events = tmp_path / "driver" / "events.jsonl"
    events.parent.mkdir()

    class Minimal:  # only what _log_events needs
        events_file = events

    log_events = driver_module.LocalDriver._log_events
    for i in range(500):
        log_events(Minimal, [driver_module.Event("Normal", "Tick", f"event {i}", float(i))])
    files = sorted(p.name for p in events.parent.iterdir())
    assert files == ["events.jsonl", "events.jsonl.1"]
    assert all(p.stat().st_size <= 2000 + 200 for p in events.parent.iterdir())
    kept = driver_module.read_events(events.parent)
    assert kept[-1]["message"] == "event 499"
    assert [e["time"] for e in kept] == sorted(e["time"] for e in kept)
    records = tmp_path / "retrains"
    records.mkdir()
    for i in range(30):
        (records / f"2027010{i // 10}T0000{i % 10:02d}.json").write_text("{}")
        (records / f"2027010{i // 10}T0000{i % 10:02d}.log").write_text("")
    running = {records / "20270100T000000.json", records / "20270100T000000.log"}
    driver_module._keep_newest(records, driver_module.RETRAIN_RECORDS, keep=running)
    left = sorted(p.name for p in records.iterdir())
    assert len(left) == 2 * driver_module.RETRAIN_RECORDS + 2  # the newest, and the running
    assert "20270102T000009.json" in left and "20270100T000000.json" in left


def test_segments_of_a_feature_with_many_levels_are_capped_and_say_so() -> None:
    levels = tuple(f"L{i:04d}" for i in range(1000))
    schema = FeatureSchema(features=(Feature("item", "categorical", levels=levels),
                                     Feature("x", "numerical", exclusive_minimum=None)),
                           target=Target("y"))
    rng = np.random.default_rng(0)
    codes = np.concatenate([np.repeat(np.arange(30), 100 - np.arange(30)),
                            rng.integers(30, 1000, 400)])
    X = np.column_stack([codes, rng.normal(size=len(codes))])
    item, _ = layout_from_schema(schema, X)
    assert item.size == MAX_SEGMENTS and item.pooled == 1000 - (MAX_SEGMENTS - 1)
    assert item.levels[:3] == ("L0000", "L0001", "L0002")  # the most frequent, kept
    assert item.levels[-1] == f"other ({item.pooled} levels)"
    assigned = item.assign(np.array([0.0, 18.0, 19.0, 999.0, 1000.0, np.nan]))
    assert assigned.tolist() == [0, 18, MAX_SEGMENTS - 1, MAX_SEGMENTS - 1, -1, -1]
    again = SegmentFeature.from_dict(json.loads(json.dumps(item.to_dict())))
    assert again == item
    small = SegmentFeature.from_dict({"name": "cut", "kind": "categorical",
                                      "levels": ["Fair", "Good"]})  # an older profile
    assert small.assign(np.array([1.0, 0.0])).tolist() == [1, 0] and small.pooled == 0

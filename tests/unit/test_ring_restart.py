"""A serving container restarted beside a running monitor (``--monitor external``, the
chart's pod): the dead workers' rings the monitor has not finished counting stay, those it
has are removed, a crash loop cannot pile them up, and a new worker never takes over an old
worker's ring, even with the same pid."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from driftkeeper.serving.config import ServiceConfig
from driftkeeper.serving.monitor import drop_counted_rings
from driftkeeper.serving.rings import RingWriter, ring_head
from driftkeeper.serving.server import prepare_state_dir


def _dead_ring(directory: Path, name: str, rows: int, mtime: float) -> Path:
    ring = RingWriter(directory / name, 3, 100)
    ring.append(np.ones((rows, 3)))
    ring.close()  # its writer is gone
    os.utime(ring.path, (mtime, mtime))
    return ring.path


def _position(path: Path) -> list[int]:
    return [path.stat().st_ino, ring_head(path)]


def test_counted_rings_go_unread_ones_stay_and_live_ones_are_never_touched(
        tmp_path: Path) -> None:
    counted = _dead_ring(tmp_path, "inputs-7.aaaa0001.ring", 5, 1000)
    unread = _dead_ring(tmp_path, "inputs-8.aaaa0002.ring", 5, 1001)
    partly = _dead_ring(tmp_path, "feedback-8.aaaa0003.ring", 5, 1002)
    live = RingWriter(tmp_path / "inputs-9.aaaa0004.ring", 3, 100)
    positions = {counted.name: _position(counted),
                 partly.name: [partly.stat().st_ino, 2]}  # 3 of its rows not counted yet
    try:
        assert drop_counted_rings(tmp_path, positions) == [counted.name]
        assert sorted(p.name for p in tmp_path.glob("*.ring")) == sorted(
            [unread.name, partly.name, live.path.name])
    finally:
        live.close()


def test_a_counted_ring_recreated_under_its_name_is_not_taken_for_counted(
        tmp_path: Path) -> None:
    old = _dead_ring(tmp_path, "inputs-7.aaaa0001.ring", 5, 1000)
    positions = {old.name: [old.stat().st_ino + 1, 5]}  # another file of that name
    assert drop_counted_rings(tmp_path, positions) == []


def test_a_crash_loop_keeps_only_the_newest_unread_rings(tmp_path: Path) -> None:
    rings = [_dead_ring(tmp_path, f"inputs-{i}.aaaa{i:04d}.ring", 1, 1000 + i)
             for i in range(6)]
    deleted = drop_counted_rings(tmp_path, {}, keep=4)
    assert sorted(deleted) == sorted(r.name for r in rings[:2])  # the two oldest


def _config(tmp_path: Path, monitor: str) -> ServiceConfig:
    return ServiceConfig(model_dir=tmp_path / "models", state_dir=tmp_path / "state",
                         monitor=monitor)


def test_an_external_monitor_keeps_the_unread_rings_of_a_restart(tmp_path: Path) -> None:
    config = _config(tmp_path, "external")
    config.windows_dir.mkdir(parents=True)
    unread = _dead_ring(config.windows_dir, "inputs-7.aaaa0001.ring", 5, 1000)
    prepare_state_dir(config)
    assert unread.exists()


def test_an_internal_monitor_starts_afresh(tmp_path: Path) -> None:
    config = _config(tmp_path, "internal")
    config.windows_dir.mkdir(parents=True)
    unread = _dead_ring(config.windows_dir, "inputs-7.aaaa0001.ring", 5, 1000)
    prepare_state_dir(config)
    assert not unread.exists() and config.windows_dir.is_dir()


def test_a_worker_never_takes_over_a_ring_with_its_pid(model_dir: Path,
                                                       tmp_path: Path) -> None:
    """Two workers with one pid (this process, twice: as a restarted container's worker in
    a new PID namespace can be): the second writes a ring of its own, the first's rows
    stay."""
    from driftkeeper.serving.app import create_app, state_of

    config = ServiceConfig(model_dir=model_dir, state_dir=tmp_path / "state")
    config.windows_dir.mkdir(parents=True)
    rings = []
    for _ in range(2):
        app = create_app(config, start_background=False)
        ring = state_of(app).ring("inputs", 3)
        ring.append(np.ones((5, 3)))
        rings.append(ring.path)
        state_of(app).stop()
    assert rings[0] != rings[1]
    assert [ring_head(r) for r in rings] == [5, 5]

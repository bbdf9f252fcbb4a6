"""The local driver around real training subprocesses: failures never touch the serving
model, and the driver's memory survives a restart."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from driftkeeper.local.driver import DriverConfig, LocalDriver
from driftkeeper.model.feedback import FeedbackStore
from driftkeeper.model.store import ModelStore
from driftkeeper.policy.engine import Observation
from driftkeeper.schema import DIAMONDS_SCHEMA
from traffic import to_rows

pytestmark = pytest.mark.slow


@pytest.fixture
def drivers():
    """Drivers a test creates; their training processes are stopped even if it fails."""
    made: list[LocalDriver] = []
    yield made
    for driver in made:
        driver.shutdown()


def _driver(drivers: list, *args, **kwargs) -> LocalDriver:
    driver = LocalDriver(DriverConfig(*args, **kwargs))
    drivers.append(driver)
    return driver


def _policy(tmp_path: Path, **retraining) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "driftkeeper.io/v1alpha1", "kind": "DriftPolicy",
        "metadata": {"name": "t"},
        "spec": {"evaluation": {"interval": "1s", "consecutiveBreaches": 2},
                 "retraining": {"cooldown": "1h", "maxFailures": 3,
                                "trainingData": {"minFeedbackRows": 500}, **retraining},
                 "promotion": {"evaluationRows": 200}}}))
    return path


def _drifting(driver: LocalDriver, monkeypatch) -> None:
    """Feed the driver concept-drift verdicts instead of reading a service. The episode
    begins an hour ago, so labels written by the test count as fresh."""
    clock = {"t": time.time() - 3600}

    def observe(now: float) -> Observation:
        clock["t"] += 1.0
        return Observation(evaluated_at=clock["t"], model_version="v1",
                           drift={"data": False, "concept": True},
                           scores={"data": 0.01, "concept": 0.4},
                           thresholds={"data": 0.15, "concept": 0.2},
                           samples={"data": 1000, "concept": 1000})

    monkeypatch.setattr(driver, "_observe", observe)


def _labels(model_dir: Path, diamonds, n: int = 1200) -> None:
    store = FeedbackStore(model_dir / "feedback", DIAMONDS_SCHEMA)
    rows = diamonds.sample(n, random_state=1)
    store.append(to_rows(rows, with_price=True), "v1", rows["price"].to_numpy() * 0.9)
    store.close()


def _fingerprint(model_dir: Path) -> tuple[str | None, bytes]:
    store = ModelStore(model_dir)
    version = store.current_version()
    return version, (store.path(version) / "profile.json").read_bytes()


def _tick_until(driver: LocalDriver, predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        driver.tick()
        time.sleep(0.2)


def _events(driver: LocalDriver) -> list[str]:
    return [json.loads(line)["reason"] for line in driver.events_file.read_text().splitlines()]


def test_training_on_bad_data_fails_and_changes_nothing(model_dir, tmp_path, diamonds,
                                                        monkeypatch, drivers) -> None:
    before = _fingerprint(model_dir)
    bad = tmp_path / "bad.csv"
    bad.write_text("carat,cut,color\n0.3,Ideal,E\n")
    _labels(model_dir, diamonds)
    driver = _driver(drivers, _policy(tmp_path), "http://127.0.0.1:9", model_dir,
                     base_data=str(bad))
    _drifting(driver, monkeypatch)
    _tick_until(driver, lambda: "RetrainFailed" in _events(driver))
    assert _fingerprint(model_dir) == before
    assert ModelStore(model_dir).versions() == ["v1"]
    assert driver.state.failures == 1
    failed = next(json.loads(x) for x in driver.events_file.read_text().splitlines()
                  if json.loads(x)["reason"] == "RetrainFailed")
    assert "missing column" in failed["message"]


def test_killed_training_changes_nothing(model_dir, tmp_path, diamonds, monkeypatch,
                                         drivers) -> None:
    before = _fingerprint(model_dir)
    _labels(model_dir, diamonds)
    driver = _driver(drivers, _policy(tmp_path), "http://127.0.0.1:9", model_dir)
    _drifting(driver, monkeypatch)
    _tick_until(driver, lambda: driver.retrain is not None)
    time.sleep(1.0)  # let it get going (loading data, fitting)
    os.kill(driver.retrain.pid, signal.SIGKILL)
    _tick_until(driver, lambda: driver.retrain is None)
    assert "RetrainFailed" in _events(driver)
    assert _fingerprint(model_dir) == before
    assert ModelStore(model_dir).versions() == ["v1"]


def test_a_restarted_driver_adopts_the_running_retrain(model_dir, tmp_path, diamonds,
                                                       monkeypatch, drivers) -> None:
    """The driver dies while training runs (no clean-up); a new driver starts from its
    files, follows that training to its outcome and starts no second one."""
    _labels(model_dir, diamonds)
    policy = _policy(tmp_path)
    driver = _driver(drivers, policy, "http://127.0.0.1:9", model_dir)
    _drifting(driver, monkeypatch)
    _tick_until(driver, lambda: driver.retrain is not None)
    pid = driver.retrain.pid
    restarted = _driver(drivers, policy, "http://127.0.0.1:9", model_dir)
    assert restarted.retrain is not None and restarted.retrain.pid == pid
    assert "RetrainAdopted" in _events(restarted)
    assert restarted.state.retrains == 1 and restarted.state.retrain_started is not None
    _drifting(restarted, monkeypatch)
    _tick_until(restarted, lambda: restarted.retrain is None, timeout=240)
    ended = [e for e in _events(restarted) if e in ("ModelPromoted", "PromotionRejected",
                                                     "RetrainFailed")]
    assert ended in (["ModelPromoted"], ["PromotionRejected"]), _events(restarted)
    assert restarted.state.retrains == 1 and restarted.state.failures == 0
    driver.retrain.process.wait(timeout=30)  # the old handle: the same, finished process
    for _ in range(5):  # the cooldown holds: no new retrain right away
        restarted.tick()
    assert restarted.retrain is None and restarted.state.retrains == 1


def test_a_retrain_gone_while_the_driver_was_down_is_a_failure(model_dir, tmp_path, diamonds,
                                                               monkeypatch, drivers) -> None:
    _labels(model_dir, diamonds)
    policy = _policy(tmp_path)
    driver = _driver(drivers, policy, "http://127.0.0.1:9", model_dir)
    _drifting(driver, monkeypatch)
    _tick_until(driver, lambda: driver.retrain is not None)
    started = driver.state.retrain_started
    os.kill(driver.retrain.pid, signal.SIGKILL)
    driver.retrain.process.wait(timeout=30)
    restarted = _driver(drivers, policy, "http://127.0.0.1:9", model_dir)
    assert restarted.retrain is None
    assert restarted.state.retrains == 1 and restarted.state.failures == 1
    assert restarted.state.last_retrain_end is not None
    assert restarted.state.last_retrain_end >= started
    assert ModelStore(model_dir).versions() == ["v1"]
    # and its cooldown still holds: no new retrain right away
    _drifting(restarted, monkeypatch)
    for _ in range(5):
        restarted.tick()
    assert restarted.retrain is None
    assert "RetrainDeferred" in _events(restarted)


def test_successful_retrain_is_gated_and_promoted(model_dir, tmp_path, diamonds,
                                                  monkeypatch, drivers) -> None:
    """Labels where D/E/F got 25% dearer: the candidate wins on fresh rows and is promoted."""
    store = FeedbackStore(model_dir / "feedback", DIAMONDS_SCHEMA)
    rows = diamonds.sample(1500, random_state=2)
    dearer = rows["color"].isin(["D", "E", "F"])
    rows = rows.assign(price=np.where(dearer, rows["price"] * 1.25, rows["price"]))
    store.append(to_rows(rows, with_price=True), "v1", rows["price"].to_numpy())
    store.close()
    driver = _driver(drivers, _policy(tmp_path), "http://127.0.0.1:9", model_dir)
    _drifting(driver, monkeypatch)
    _tick_until(driver, lambda: "ModelPromoted" in _events(driver)
                or "PromotionRejected" in _events(driver))
    assert "ModelPromoted" in _events(driver)
    assert ModelStore(model_dir).current_version() == "v2"
    meta = ModelStore(model_dir).load().metadata
    assert meta["parent"] == "v1"

"""Every simulator scenario against a real service: the verdict matches what the scenario
documents a correct monitor should say."""

from __future__ import annotations

import threading
import time

import pytest
import requests
import yaml

from driftkeeper.simulate.runner import SimulationConfig, SimulationError, simulate
from driftkeeper.simulate.scenarios import SCENARIOS
from driftkeeper.simulate.world import World
from service_process import free_port, running_service

pytestmark = pytest.mark.slow

ROWS_PER_REQUEST = 20
REQUESTS = 200  # 4,000 rows: the last 1,000 (the window) are well past every onset


@pytest.fixture(scope="module")
def service(trained_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scenarios")
    import shutil

    model_dir = tmp / "model"
    shutil.copytree(trained_model_dir, model_dir, symlinks=True)
    policy = tmp / "policy.yaml"
    policy.write_text(yaml.safe_dump({"spec": {
        "evaluation": {"interval": "250ms"},
        "window": {"size": 1000, "minSamples": 200},
        "concept": {"window": {"size": 1000, "minSamples": 200}}}}))
    with running_service(model_dir, tmp, workers=2, policy=policy) as svc:
        yield svc


def _check(expectation: str, verdict: bool | None, what: str) -> None:
    if expectation == "drift":
        assert verdict is True, f"{what}: expected drift"
    elif expectation == "none":
        assert verdict is False, f"{what}: expected no drift"


@pytest.mark.parametrize("name", [n for n, s in SCENARIOS.items() if "prior" not in s.needs])
def test_scenario_verdict_matches_its_expectation(service, diamonds, name: str) -> None:
    scenario = SCENARIOS[name]
    seen: dict[str, set] = {"data": set(), "concept": set()}
    stop = threading.Event()

    def watch() -> None:  # what the monitor said during the run
        while not stop.is_set():
            resp = requests.get(service.url + "/drift", timeout=5)
            if resp.status_code == 200:  # 503 until the first evaluation is published
                report = resp.json()
                seen["data"].add(report["data"]["drift"])
                seen["concept"].add(report["concept"]["drift"])
            stop.wait(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = simulate(SimulationConfig(url=service.url, scenario=name, rate=25,
                                           requests=REQUESTS, batch=ROWS_PER_REQUEST,
                                           label_delay=0.1, seed=1))
    finally:
        stop.set()
        watcher.join()
    assert result.errors == 0 and result.labelled == REQUESTS * ROWS_PER_REQUEST
    done = time.time()
    report = service.wait_for(lambda r: r["evaluated_at"] > done, what="a final evaluation")
    _check(scenario.expect_data, report["data"]["drift"], f"{name} data")
    _check(scenario.expect_concept, report["concept"]["drift"], f"{name} concept")
    drifted = scenario.drifted_features(World.for_diamonds(diamonds))
    assert set(drifted) <= set(report["data"]["drifted_features"])
    if name == "recovery":  # drift must have appeared on the way, then cleared
        assert True in seen["data"] and True in seen["concept"]


def test_simulator_is_deterministic_for_a_seed(diamonds) -> None:
    import numpy as np

    world = World.for_diamonds(diamonds)
    a = SCENARIOS["mixed"].generate(np.random.default_rng(3), world, 0.5, 50)
    b = SCENARIOS["mixed"].generate(np.random.default_rng(3), world, 0.5, 50)
    assert a.rows.equals(b.rows) and (a.labels == b.labels).all()


def test_simulator_says_when_the_service_is_down() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SimulationError, match="is `driftkeeper serve` running"):
        simulate(SimulationConfig(url=url, scenario="none", requests=5))

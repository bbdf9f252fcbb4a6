"""The local driver's loop outlives a bad tick and says why it stopped."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from driftkeeper.local.driver import DriverConfig, LocalDriver


def test_a_bad_tick_does_not_end_the_loop(model_dir: Path, tmp_path: Path,
                                          monkeypatch) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"apiVersion": "driftkeeper.io/v1alpha1",
                                      "kind": "DriftPolicy", "metadata": {"name": "t"},
                                      "spec": {"evaluation": {"interval": "100ms"}}}))
    driver = LocalDriver(DriverConfig(policy, "http://127.0.0.1:9", model_dir))
    real_tick, calls = driver.tick, []

    def flaky_tick(now=None):
        calls.append(1)
        if len(calls) <= 2:
            raise OSError("feedback store unreadable")
        return real_tick(now)

    monkeypatch.setattr(driver, "tick", flaky_tick)
    why = driver.run(duration=1.5)
    assert why == "ran for its duration of 1.5s"
    assert len(calls) > 3  # it carried on after the failures
    events = [json.loads(line) for line in driver.events_file.read_text().splitlines()]
    failed = [e for e in events if e["reason"] == "TickFailed"]
    assert len(failed) == 1 and "feedback store unreadable" in failed[0]["message"]

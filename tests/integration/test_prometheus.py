"""A real Prometheus (Debian's package) scrapes the service and answers PromQL queries."""

from __future__ import annotations

import contextlib
import shutil
import time

import pytest
import requests
import yaml

from prometheus_process import running_prometheus
from service_process import running_service
from traffic import send_batches, to_rows

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None,
                       reason="prometheus not installed (make test-tools installs it)"),
]


def _query(prometheus: str, promql: str, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.ConnectionError):
            body = requests.get(prometheus + "/api/v1/query", params={"query": promql},
                                timeout=5).json()
            if body.get("status") == "success" and body["data"]["result"]:
                return body["data"]["result"]
        time.sleep(0.5)
    raise AssertionError(f"no result for {promql!r}")


def test_prometheus_scrapes_drift_gauges(model_dir, tmp_path, diamonds) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"spec": {"evaluation": {"interval": "500ms"}}}))
    with running_service(model_dir, tmp_path, workers=2, policy=policy) as svc:
        sample = diamonds.sample(600, random_state=2)
        send_batches(svc.url + "/predict", to_rows(sample.assign(carat=sample.carat * 1.3)))
        send_batches(svc.url + "/feedback", to_rows(sample, with_price=True))
        svc.wait_for(lambda r: r["concept"]["samples"] == 600, what="a full evaluation")
        target = svc.url.removeprefix("http://")
        with running_prometheus(target, tmp_path) as prometheus:
            up = _query(prometheus, 'up{driftkeeper="model"} == 1')
            assert up[0]["metric"]["instance"] == target
            data = _query(prometheus, "data_drift")
            assert float(data[0]["value"][1]) > 0
            concept = _query(prometheus, "concept_drift")
            assert len(concept) == 1
            carat = _query(prometheus, 'driftkeeper_feature_drift{feature="carat"}')
            assert carat[0]["metric"]["method"] == "psi"
            assert float(carat[0]["value"][1]) > float(
                _query(prometheus, 'driftkeeper_feature_drift_threshold{feature="carat"}')
                [0]["value"][1])
            verdict = _query(prometheus, 'driftkeeper_drift_detected{kind="data"}')
            assert float(verdict[0]["value"][1]) == 1.0
            # The mergeable bin counters sum over workers into one histogram per feature.
            bins = _query(prometheus,
                          'sum(driftkeeper_feature_bin_total{feature="cut"})')
            assert float(bins[0]["value"][1]) == 600

"""The service under real gunicorn with several workers, over real HTTP on loopback."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from bad_inputs import (
    BAD_FEEDBACK_INPUTS,
    BAD_PREDICT_INPUTS,
    GOOD_ROW,
    oversized_body,
    too_many_rows,
)
from driftkeeper.model.train import TrainingConfig, train
from driftkeeper.serving.rings import read_ring
from service_process import running_service
from traffic import send_batches, send_each, to_rows

pytestmark = pytest.mark.slow


@pytest.fixture
def fast_policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "driftkeeper.io/v1alpha1", "kind": "DriftPolicy",
        "metadata": {"name": "test"},
        "spec": {"evaluation": {"interval": "300ms"},
                 "window": {"size": 1000, "minSamples": 200},
                 "concept": {"window": {"size": 1000, "minSamples": 200}}}}))
    return path


def _after(sent: float, samples: int, kind: str = "data"):
    """A report evaluated after the last row was sent, over ``samples`` rows."""
    return lambda r: (r.get("evaluated_at") or 0) > sent and r[kind]["samples"] == samples


def test_data_drift_over_two_workers(model_dir, tmp_path, fast_policy, diamonds) -> None:
    """1,000 resampled reference rows: no drift; the same rows with carat x1.3: drift on carat.

    Rows go one request each, each on a new connection, so both workers take traffic; the window
    must hold exactly the 1,000 rows (no per-worker monitors, no double counting).
    """
    sample = diamonds.sample(1000, replace=True, random_state=7)
    with running_service(model_dir, tmp_path, workers=2, policy=fast_policy) as svc:
        statuses = send_each(svc.url + "/predict", to_rows(sample), fresh_connections=True)
        assert set(statuses) == {200}
        # Both workers took traffic (each ring holds rows), yet one window holds them all.
        rings = [read_ring(p) for p in (svc.state_dir / "windows").glob("inputs-*.ring")]
        assert len(rings) == 2 and all(len(r) > 0 for r in rings)
        assert sum(len(r) for r in rings) == 1000
        report = svc.wait_for(_after(time.time(), 1000), what="a 1000-row window")
        assert report["data"]["drift"] is False, report["data"]
        assert report["data"]["drifted_features"] == []
        # The predictions of both workers, one window, against the held-out predictions.
        assert report["prediction"]["samples"] == 1000
        assert report["prediction"]["drift"] is False, report["prediction"]
        # The loss model's estimate of the same rows' RMSE: close to the held-out one.
        assert report["performance"]["samples"] == 1000
        assert report["performance"]["drift"] is False, report["performance"]

        metrics = requests.get(svc.url + "/metrics", timeout=5).text
        pids = {line.split('pid="')[1].split('"')[0] for line in metrics.splitlines()
                if line.startswith("driftkeeper_model_info{") and line.endswith(" 1.0")}
        assert len(pids) == 2
        assert metrics.count("\ndata_drift ") == 1  # one pod-level series, not one per worker
        served = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                     if line.startswith("driftkeeper_predictions_total"))
        assert served == 1000

        drifted = sample.assign(carat=sample["carat"] * 1.3)
        assert set(send_each(svc.url + "/predict", to_rows(drifted))) == {200}
        report = svc.wait_for(_after(time.time(), 1000), what="the drifted window")
        assert report["data"]["drift"] is True
        assert report["data"]["drifted_features"] == ["carat"]
        assert report["data"]["features"]["carat"]["drift"] is True
        assert report["prediction"]["drift"] is True  # dearer-looking diamonds: prices move
        metrics = requests.get(svc.url + "/metrics", timeout=5).text
        assert 'driftkeeper_drift_detected{kind="prediction"} 1.0' in metrics
        assert 'driftkeeper_drift_statistic{kind="prediction",statistic="ks"}' in metrics
        assert "driftkeeper_prediction_bin_total{" in metrics
        # Heavier-looking diamonds are dearer and harder: the estimated RMSE rises.
        assert report["performance"]["drift"] is True, report["performance"]
        assert report["performance"]["rmse_estimated"] > report["performance"]["rmse_reference"]
        assert 'driftkeeper_drift_detected{kind="performance"} 1.0' in metrics
        assert "driftkeeper_estimated_squared_error_total{" in metrics


def test_concept_drift_from_labelled_feedback(model_dir, tmp_path, fast_policy,
                                              diamonds) -> None:
    """Feedback without change: no concept drift; price x1.25 for colors D, E, F: drift."""
    rows = diamonds.sample(1000, random_state=11)
    with running_service(model_dir, tmp_path, workers=2, policy=fast_policy) as svc:
        send_batches(svc.url + "/feedback", to_rows(rows, with_price=True), size=100)
        report = svc.wait_for(_after(time.time(), 1000, "concept"), what="unchanged feedback")
        assert report["concept"]["drift"] is False, report["concept"]

        dearer = rows["color"].isin(["D", "E", "F"])
        changed = rows.assign(price=rows["price"].where(~dearer, rows["price"] * 1.25))
        send_batches(svc.url + "/feedback", to_rows(changed, with_price=True), size=100)
        report = svc.wait_for(_after(time.time(), 1000, "concept"), what="changed feedback")
        concept = report["concept"]
        assert concept["drift"] is True
        assert concept["score"] > concept["threshold"]
        assert concept["rmse"] > concept["rmse_reference"]
        # Where it lives: both workers' labelled rows, per segment, name the colours.
        where = concept["segments"]["locations"]
        assert where[0]["feature"] == "color" and where[0]["segments"] == ["D", "E", "F"]
        assert "above the model" in where[0]["message"]
        metrics = requests.get(svc.url + "/metrics", timeout=5).text
        # One bounded series per located segment; the sentence is in /drift only.
        from prometheus_client.parser import text_string_to_metric_families

        (family,) = [f for f in text_string_to_metric_families(metrics)
                     if f.name == "driftkeeper_concept_location"]
        color = {s.labels["segment"]: s.value for s in family.samples
                 if s.labels["feature"] == "color"}
        assert set(color) == {"D", "E", "F"}
        assert all(abs(v - where[0]["shift"]) < 1e-9 for v in color.values())
        assert all(set(s.labels) == {"feature", "segment"} for s in family.samples)
        assert "driftkeeper_segment_rows_total{feature=\"color\"" in metrics
        stored = list((model_dir / "feedback").glob("*.csv"))
        assert stored, "feedback rows must reach the store for retraining"


def test_bad_inputs_get_4xx_and_the_server_keeps_serving(model_dir, tmp_path) -> None:
    with running_service(model_dir, tmp_path, workers=2,
                         extra_args=["--max-rows", "100"]) as svc:
        session = requests.Session()
        cases = [(e, b, s, f) for (_, b, s, f) in BAD_PREDICT_INPUTS for e in ["/predict"]]
        cases += [("/feedback", b, s, f) for (_, b, s, f) in BAD_FEEDBACK_INPUTS]
        cases += [("/predict", too_many_rows(100), 413, "instances"),
                  ("/predict", oversized_body(4 * 1024 * 1024), 413, "body")]
        for endpoint, body, status, field in cases:
            resp = session.post(svc.url + endpoint, data=body,
                                headers={"Content-Type": "application/json"}, timeout=10)
            assert resp.status_code == status, (endpoint, body[:80], resp.text[:200])
            assert resp.headers["Content-Type"].startswith("application/json")
            assert resp.json()["field"] == field
            ok = session.post(svc.url + "/predict", json=GOOD_ROW, timeout=10)
            assert ok.status_code == 200
        metrics = session.get(svc.url + "/metrics", timeout=5).text
        assert 'driftkeeper_invalid_inputs_total{endpoint="/predict",reason="unknown_category"}' \
            in metrics
        assert "Traceback" not in svc.log()


def test_hot_reload_under_load_fails_no_request(model_dir, tmp_path, fast_policy,
                                                diamonds) -> None:
    rows = to_rows(diamonds.sample(200, random_state=3))
    with running_service(model_dir, tmp_path, workers=2, policy=fast_policy) as svc:
        statuses: list[int] = []
        versions: set[str] = set()
        stop = threading.Event()

        def load() -> None:
            with requests.Session() as session:
                i = 0
                while not stop.is_set():
                    resp = session.post(svc.url + "/predict", json=rows[i % len(rows)],
                                        timeout=10)
                    statuses.append(resp.status_code)
                    if resp.status_code == 200:
                        versions.add(resp.json()["model_version"])
                    i += 1

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            train(model_dir, TrainingConfig(seed=5, calibration_trials=1000))
            deadline = time.monotonic() + 20
            while "v2" not in versions and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert versions == {"v1", "v2"}
        assert len(statuses) > 100 and set(statuses) == {200}
        svc.wait_for(lambda r: r["model_version"] == "v2", what="drift measured against v2")


def _counter(url: str, name: str) -> float:
    return sum(s.value for s in _samples(url, name))


def test_a_killed_monitor_is_restarted_and_serving_never_stops(model_dir, tmp_path,
                                                               fast_policy, diamonds) -> None:
    """The monitor is a process of its own, off the request path: SIGKILL it while
    clients predict, and not one request fails; `serve` starts a new monitor, which
    counts on from the dead one's counters (none lost, none twice) and evaluates again.
    Workers never evaluate: every report comes from the monitor."""
    rows = to_rows(diamonds.sample(600, random_state=5))
    with running_service(model_dir, tmp_path, workers=2, policy=fast_policy) as svc:
        send_each(svc.url + "/predict", rows[:300])
        report = svc.wait_for(lambda r: r["data"]["samples"] == 300, what="300 rows")
        monitor_pid = report["evaluator_pid"]
        workers = {requests.get(svc.url + "/healthz", timeout=5).json()["pid"]
                   for _ in range(20)}
        assert monitor_pid not in workers and monitor_pid != svc.process.pid
        assert _counter(svc.url, "driftkeeper_window_rows_total") >= 300

        statuses: list[int] = []
        stop = threading.Event()

        def client() -> None:
            for row in rows[300:]:
                if stop.is_set():
                    return
                statuses.append(requests.post(svc.url + "/predict", json=row,
                                              timeout=10).status_code)

        thread = threading.Thread(target=client)
        thread.start()
        try:
            time.sleep(0.3)
            os.kill(monitor_pid, signal.SIGKILL)
            thread.join(timeout=120)
        finally:
            stop.set()
            thread.join()
        assert len(statuses) == 300 and set(statuses) == {200}  # serving never stopped
        report = svc.wait_for(lambda r: r["evaluator_pid"] != monitor_pid
                              and r["data"]["samples"] == 600, timeout=60,
                              what="a new monitor's report of all 600 rows")
        assert _counter(svc.url, "driftkeeper_monitor_restarts_total") == 1
        data_rows = [s for s in _samples(svc.url, "driftkeeper_window_rows_total")
                     if s.labels["kind"] == "data"]
        assert [s.value for s in data_rows] == [600.0]  # every row once
        assert "restarting it" in svc.log()


def _samples(url: str, name: str) -> list:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(url + "/metrics", timeout=5).text
    return [s for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == name]


def test_every_acknowledged_label_survives_the_service_being_killed(model_dir, tmp_path,
                                                                    diamonds) -> None:
    """Eight clients send labels; the whole pod (gunicorn master and workers) is SIGKILLed
    mid-traffic. A /feedback answer comes only once its rows are on disk (group commit),
    so every acknowledged row is in the store; at most the requests in flight when the
    pod died (one per client) may be stored without an answer."""
    from driftkeeper.model.feedback import FeedbackStore
    from driftkeeper.schema import DIAMONDS_SCHEMA

    rows = to_rows(diamonds.sample(2000, random_state=31), with_price=True)
    acknowledged, failed = [0], [0]
    lock = threading.Lock()
    with running_service(model_dir, tmp_path, workers=2) as svc:
        def client(k: int) -> None:
            session = requests.Session()
            i = k
            while True:
                batch = [rows[(i + j) % len(rows)] for j in range(5)]
                i += 8
                try:
                    resp = session.post(svc.url + "/feedback", json={"instances": batch},
                                        timeout=10)
                except requests.RequestException:
                    with lock:
                        failed[0] += 1
                    return
                if resp.status_code == 200:
                    with lock:
                        acknowledged[0] += resp.json()["accepted"]

        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(8)]
        for t in threads:
            t.start()
        time.sleep(3.0)
        os.killpg(svc.process.pid, signal.SIGKILL)  # no goodbye, no flush, no atexit
        for t in threads:
            t.join(timeout=30)
    stored = len(FeedbackStore(model_dir / "feedback", DIAMONDS_SCHEMA).read())
    assert acknowledged[0] > 100
    assert acknowledged[0] <= stored <= acknowledged[0] + 5 * 8, (acknowledged, stored)


def test_corked_responses_leave_at_once(model_dir, tmp_path) -> None:
    """Each response is corked while gunicorn writes it and pushed when it is done: on a
    keep-alive connection no answer waits for the kernel's 200 ms cork timer, and a client
    that sends ``Expect: 100-continue`` gets its interim answer before it sends the body."""
    import json
    import socket
    import statistics

    body = json.dumps(GOOD_ROW).encode()
    with running_service(model_dir, tmp_path, workers=1) as svc:
        took = []
        with requests.Session() as session:  # one keep-alive connection
            for _ in range(30):
                started = time.perf_counter()
                assert session.post(svc.url + "/predict", json=GOOD_ROW).status_code == 200
                took.append(time.perf_counter() - started)
        assert statistics.median(took) < 0.1, took  # a stuck cork holds each for 200 ms
        host, port = svc.url.removeprefix("http://").split(":")
        interim = []
        for _ in range(5):
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                started = time.perf_counter()
                sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: "
                             b"application/json\r\nExpect: 100-continue\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
                assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue")
                interim.append(time.perf_counter() - started)
                sock.sendall(body)
                answer = b""
                while b"model_version" not in answer:
                    answer += sock.recv(4096)
                assert answer.startswith(b"HTTP/1.1 200")
        assert statistics.median(interim) < 0.1, interim


def _counted_inputs(url: str) -> float:
    """The pod's monitor's count of input rows (driftkeeper_window_rows_total, data)."""
    text = requests.get(url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("driftkeeper_window_rows_total{") and 'kind="data"' in line)


def test_a_restarted_serving_container_loses_no_row_to_the_external_monitor(
        model_dir, tmp_path, fast_policy, diamonds) -> None:
    """--monitor external, as in the chart's pod: the monitor runs on its own, and the
    serving container restarts while rows it accepted are still uncounted (the monitor is
    frozen meanwhile). The new container keeps those rings; once the monitor runs again
    it counts every row exactly once."""
    import subprocess
    import sys

    from service_process import stop_process

    state = tmp_path / "state"
    exe = Path(sys.executable).with_name("driftkeeper")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    monitor = subprocess.Popen([str(exe), "monitor", "--model-dir", str(model_dir),
                                "--state-dir", str(state), "--policy", str(fast_policy)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                               start_new_session=True)
    rows = to_rows(diamonds.sample(600, random_state=3))
    external = ["--monitor", "external"]
    try:
        with running_service(model_dir, tmp_path, policy=fast_policy, extra_args=external,
                             state_dir=state) as svc:
            assert set(send_each(svc.url + "/predict", rows[:300])) == {200}
            deadline = time.monotonic() + 60
            while _counted_inputs(svc.url) < 300 and time.monotonic() < deadline:
                time.sleep(0.3)
            assert _counted_inputs(svc.url) == 300
            os.kill(monitor.pid, signal.SIGSTOP)
            assert set(send_each(svc.url + "/predict", rows[300:500])) == {200}
        with running_service(model_dir, tmp_path, policy=fast_policy, extra_args=external,
                             state_dir=state) as svc:
            os.kill(monitor.pid, signal.SIGCONT)
            assert set(send_each(svc.url + "/predict", rows[500:])) == {200}
            deadline = time.monotonic() + 60
            while _counted_inputs(svc.url) < 600 and time.monotonic() < deadline:
                time.sleep(0.3)
            time.sleep(2)  # a few more ticks: nothing may be counted twice either
            assert _counted_inputs(svc.url) == 600
    finally:
        os.kill(monitor.pid, signal.SIGCONT)
        stop_process(monitor)

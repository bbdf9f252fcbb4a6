"""The Kopf operator against a Kubernetes API (each test runs on KMock's emulator and on a
real kube-apiserver, where the operator has only the chart's RBAC), with real model
replicas and a test kubelet.

One policy's life: created (ConfigMap, status), drift judged over the whole fleet, thresholds
edited, concept drift retrained by exactly one Job and promoted, a second drift held back by
the cooldown, deleted (Jobs and ConfigMap gone). Then failures (a failing Job spends the
budget and changes nothing), an operator restart in the middle of a Job (followed, not
duplicated), and invalid specs.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Iterator

import pandas as pd
import pytest
import requests
import yaml

from driftkeeper.model.store import ModelStore
from driftkeeper.policy import parse_policy
from harness.cluster import wait_until
from harness.rig import CLAIM, IMAGE, SERVICE, Rig, dearer, operator_rig, policy_spec
from prometheus_process import running_prometheus

pytestmark = pytest.mark.slow

POLICY = "diamonds"


def _status(rig: Rig, *path: str):
    """A status field, or None."""
    value = rig.status(POLICY)
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _condition(rig: Rig, kind: str) -> dict:
    return next((c for c in _status(rig, "conditions") or [] if c["type"] == kind), {})


@contextlib.contextmanager
def labels_flowing(rig: Rig, frame: pd.DataFrame, batch: int = 60,
                   pause: float = 0.25) -> Iterator[None]:
    """Labelled rows of ``frame`` (cycled) to every replica until the block ends."""
    stop = threading.Event()
    errors: list[Exception] = []

    def send() -> None:
        start = 0
        while not stop.is_set():
            part = frame.iloc[start % len(frame):][:batch]
            start += batch
            try:
                for i in range(len(rig.replicas)):
                    rig.label(i, part)
            except requests.RequestException as exc:
                errors.append(exc)
                return
            stop.wait(pause)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors


# The real node (test_real_node.py) runs these two on a real API server with the real Job
# controller and kubelet; here, the emulator keeps them fast where the node cannot run.
emulator_only = pytest.mark.parametrize("cluster", ["kmock"], indirect=True)


@emulator_only
def test_policy_lifecycle(cluster, model_dir, tmp_path, diamonds) -> None:
    normal = diamonds.sample(4000, random_state=11).reset_index(drop=True)
    with operator_rig(cluster, model_dir, tmp_path) as rig:
        ns = rig.namespace

        # Created: the normalised policy lands in the ConfigMap the replicas mount.
        cluster.create_policy(ns, POLICY, policy_spec())
        cm = wait_until(lambda: cluster.config_map(ns, f"driftpolicy-{POLICY}"), 30,
                        "the policy ConfigMap")
        pushed = parse_policy(yaml.safe_load(cm["data"]["policy.yaml"]))
        assert pushed.data_window.size == 400 and pushed.spec["target"]["service"] == SERVICE
        owner = cm["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"]) == ("DriftPolicy", POLICY)
        wait_until(lambda: _status(rig, "observedGeneration") == 1, 30, "observedGeneration")
        wait_until(lambda: "PolicyApplied" in cluster.reasons(ns, POLICY), 30, "an event")
        wait_until(lambda: rig.policy_file.is_file(), 10, "the replicas' policy file")

        # Two replicas, each with too few rows for a verdict of its own; drifted together.
        heavy = normal[:400].assign(carat=normal["carat"][:400] * 1.5)
        rig.predict(0, heavy[:200])
        rig.predict(1, heavy[200:])
        wait_until(lambda: _status(rig, "data", "drift") is True, 60, "the fleet's verdict")
        assert _status(rig, "data", "samples") >= 400
        assert _status(rig, "data", "driftedFeatures") == ["carat"]
        # With the version's exported arrays, the fleet's verdict says how far prices move.
        assert _status(rig, "data", "predictionShifts", "carat") > 0.2
        assert "moved predictions +" in _condition(rig, "DataDrift")["message"]
        assert _status(rig, "performance", "samples") >= 400  # estimated before labels
        assert _status(rig, "endpoints") == 2
        for svc in rig.replicas:  # each alone: below minSamples, no verdict
            own = wait_until(lambda url=svc.url: (d := requests.get(url + "/drift", timeout=5)
                                                  .json()["data"])["samples"] == 200 and d,
                             30, "a replica's own evaluation")
            assert own["drift"] is None
        assert _condition(rig, "DataDrift")["status"] == "True"
        assert "DriftDetected" in cluster.reasons(ns, POLICY)

        # Back to normal traffic and labels: monitoring, nothing drifts.
        rig.predict(0, normal[400:800])
        rig.predict(1, normal[800:1200])
        rig.label(0, normal[1200:1400])
        rig.label(1, normal[1400:1600])
        wait_until(lambda: _status(rig, "phase") == "Monitoring"
                   and _status(rig, "concept", "drift") is False, 60, "Monitoring")
        assert _condition(rig, "Ready")["status"] == "True"

        # Edited thresholds reach the ConfigMap, the replicas and the next evaluation.
        cluster.patch_policy(ns, POLICY, {"concept": {"threshold": 5}})
        wait_until(lambda: _status(rig, "concept", "threshold") == 5, 30, "threshold 5")
        cm = cluster.config_map(ns, f"driftpolicy-{POLICY}")
        assert yaml.safe_load(cm["data"]["policy.yaml"])["spec"]["concept"]["threshold"] == 5
        wait_until(lambda: requests.get(rig.replicas[0].url + "/drift", timeout=5).json()[
            "concept"]["threshold"] == 5, 30, "a replica using threshold 5")
        assert _status(rig, "observedGeneration") == 2
        cluster.patch_policy(ns, POLICY, {"concept": {"threshold": "auto"}})
        wait_until(lambda: _status(rig, "concept", "threshold") != 5, 30, "threshold auto")

        # Concept drift: D/E/F cost half as much again. One Job retrains; v2 is promoted.
        shifted = dearer(normal[1600:4000])
        with labels_flowing(rig, shifted):
            job = wait_until(lambda: cluster.jobs(ns), 120, "a retraining Job")[0]
            wait_until(lambda: _status(rig, "lastRetrain", "outcome") == "promoted", 180,
                       "the promotion")
            wait_until(lambda: _status(rig, "modelVersion") == "v2", 60, "v2 serving")
            wait_until(lambda: _status(rig, "concept", "drift") is False, 90,
                       "concept drift to clear under v2")
        assert len(cluster.jobs(ns)) == 1
        assert ModelStore(model_dir).current_version() == "v2"
        # Named for the policy's generation (3: two edits) and the drift's start.
        assert job["metadata"]["name"].startswith(f"{POLICY}-retrain-g3-")
        assert job["metadata"]["annotations"]["driftkeeper.io/generation"] == "3"
        assert job["metadata"]["ownerReferences"][0]["name"] == POLICY
        spec = job["spec"]
        assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 300
        pod = spec["template"]["spec"]
        container = pod["containers"][0]
        assert container["image"] == IMAGE
        assert container["command"][:2] == ["driftkeeper", "retrain"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert {v["name"]: v for v in pod["volumes"]}["models"][
            "persistentVolumeClaim"]["claimName"] == CLAIM
        # The claim is ReadWriteOnce: the Job must run where a model pod runs.
        (term,) = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        last = _status(rig, "lastRetrain")
        assert last["job"] == job["metadata"]["name"] and last["candidate"] == "v2"
        assert last["candidateRmse"] < last["servingRmse"]
        reasons = cluster.reasons(ns, POLICY)
        for reason in ("RetrainStarted", "RetrainJobCreated", "ModelPromoted", "DriftCleared"):
            assert reason in reasons, reasons
        for svc in rig.replicas:
            assert requests.get(svc.url + "/readyz", timeout=5).json()["model_version"] == "v2"
            counters = [line for line in requests.get(svc.url + "/metrics", timeout=5)
                        .text.splitlines() if 'model_version="' in line]
            # Only the serving version's counters: the label set does not grow per promotion.
            assert counters and not [line for line in counters if 'model_version="v1"' in line]

        # Drift again within the cooldown (prices fall): held back, no second Job.
        cheaper = normal[:2400].assign(price=normal["price"][:2400] * 0.6)
        with labels_flowing(rig, cheaper):
            wait_until(lambda: "RetrainDeferred" in cluster.reasons(ns, POLICY), 90,
                       "the cooldown to hold a retrain back")
        assert _status(rig, "phase") in ("Cooldown", "Drifting")
        assert len(cluster.jobs(ns)) == 1

        # Deleted: its Job and ConfigMap go with it.
        cluster.delete_policy(ns, POLICY)
        wait_until(lambda: cluster.policy(ns, POLICY) is None, 60, "the policy to go")
        wait_until(lambda: not cluster.jobs(ns), 30, "the Job to go")
        assert cluster.config_map(ns, f"driftpolicy-{POLICY}") is None
        assert "Traceback" not in rig.operator_log(), rig.operator_log()[-4000:]


def test_failed_retrains_spend_the_budget_and_change_nothing(cluster, model_dir, tmp_path,
                                                              diamonds) -> None:
    normal = diamonds.sample(3000, random_state=12).reset_index(drop=True)
    with operator_rig(cluster, model_dir, tmp_path,
                      claims={"empty-claim": tmp_path / "empty"}) as rig:
        ns = rig.namespace
        # The Job mounts a claim (one the Deployment mounts too) that holds no model store:
        # it fails, as with a wrong volume.
        spec = policy_spec(target={"service": SERVICE, "modelClaim": "empty-claim",
                                   "modelDir": "/empty-claim"})
        spec["retraining"] = {**spec["retraining"], "maxFailures": 1}
        cluster.create_policy(ns, POLICY, spec)
        with labels_flowing(rig, dearer(normal)):
            wait_until(lambda: _status(rig, "lastRetrain", "outcome") == "failed", 180,
                       "the failed retrain")
            wait_until(lambda: _status(rig, "phase") == "Degraded", 60,
                       "the budget to be spent")
        last = _status(rig, "lastRetrain")
        assert "no current model" in last["message"]
        assert _status(rig, "failures") == 1
        events = {e["reason"]: e for e in cluster.events(ns, POLICY)}
        assert events["RetrainFailed"]["type"] == "Warning"
        assert events["RetrainBudgetExhausted"]["type"] == "Warning"
        assert len(cluster.jobs(ns)) == 1
        assert ModelStore(model_dir).current_version() == "v1"
        assert ModelStore(model_dir).versions() == ["v1"]


@emulator_only
def test_a_restarted_operator_follows_the_running_job(cluster, model_dir, tmp_path,
                                                     diamonds) -> None:
    normal = diamonds.sample(3000, random_state=13).reset_index(drop=True)
    with operator_rig(cluster, model_dir, tmp_path) as rig:
        ns = rig.namespace
        rig.kubelet.hold.set()  # the Job's pod stays Pending until we say
        cluster.create_policy(ns, POLICY, policy_spec())
        with labels_flowing(rig, dearer(normal)):
            wait_until(lambda: cluster.jobs(ns), 120, "a retraining Job")
            wait_until(lambda: _status(rig, "phase") == "Retraining", 30, "Retraining")
            rig.stop_operator(kill=True)  # dies without a goodbye
            time.sleep(1.0)
            rig.start_operator()
            time.sleep(5.0)  # several ticks of the new operator while the Job waits
            assert len(cluster.jobs(ns)) == 1
            rig.kubelet.hold.clear()
            wait_until(lambda: _status(rig, "lastRetrain", "outcome") == "promoted", 180,
                       "the promotion")
        assert len(cluster.jobs(ns)) == 1
        (started,) = rig.kubelet.started_jobs
        assert started == cluster.jobs(ns)[0]["metadata"]["name"]
        assert ModelStore(model_dir).current_version() == "v2"
        assert cluster.reasons(ns, POLICY).count("RetrainStarted") == 1


def test_invalid_spec_is_reported_and_fixing_it_recovers(cluster, model_dir, tmp_path) -> None:
    with operator_rig(cluster, model_dir, tmp_path) as rig:
        ns = rig.namespace
        spec = policy_spec()
        del spec["target"]  # valid for the schema, not for the operator
        cluster.create_policy(ns, POLICY, spec)
        wait_until(lambda: _status(rig, "phase") == "Invalid", 30, "phase Invalid")
        ready = _condition(rig, "Ready")
        assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
        assert "spec.target" in ready["message"]
        warning = next(e for e in cluster.events(ns, POLICY) if e["reason"] == "InvalidPolicy")
        assert warning["type"] == "Warning" and "spec.target" in warning["message"]
        assert cluster.config_map(ns, f"driftpolicy-{POLICY}") is None
        if cluster.backend == "kmock":  # a real API server rejects this one itself
            cluster.patch_policy(ns, POLICY, {"target": {"service": SERVICE},
                                              "window": {"size": 10, "minSamples": 500}})
            wait_until(lambda: "minSamples" in _condition(rig, "Ready").get("message", ""),
                       30, "the window error")
        cluster.patch_policy(ns, POLICY, {"target": {"service": SERVICE},
                                          "window": {"size": 400, "minSamples": 300}})
        wait_until(lambda: cluster.config_map(ns, f"driftpolicy-{POLICY}"), 30,
                   "the ConfigMap once valid")
        wait_until(lambda: _status(rig, "phase") not in (None, "Invalid"), 30, "a valid phase")
        assert "Traceback" not in rig.operator_log(), rig.operator_log()[-4000:]


@pytest.mark.parametrize(("retraining_job", "target", "field"), [
    ({"image": "attacker/miner:latest"}, {}, "spec.retraining.job.image"),
    ({"serviceAccountName": "admin"}, {}, "spec.retraining.job.serviceAccountName"),
    ({}, {"modelClaim": "postgres-data"}, "spec.target.modelClaim"),
])
def test_a_policy_cannot_choose_what_its_job_runs_as_or_mounts(
        cluster, model_dir, tmp_path, diamonds, retraining_job: dict, target: dict,
        field: str) -> None:
    """Creating a policy grants nothing: another image, ServiceAccount or claim makes it
    Invalid with a Warning event naming the field, and no Job is ever made for it, even
    while its model drifts."""
    normal = diamonds.sample(2000, random_state=15).reset_index(drop=True)
    with operator_rig(cluster, model_dir, tmp_path) as rig:
        ns = rig.namespace
        spec = policy_spec(target={"service": SERVICE, "modelClaim": CLAIM, **target})
        spec["retraining"] = {**spec["retraining"], "job": retraining_job}
        cluster.create_policy(ns, POLICY, spec)
        wait_until(lambda: _status(rig, "phase") == "Invalid", 30, "phase Invalid")
        ready = _condition(rig, "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
        assert field in ready["message"]
        warning = wait_until(lambda: next((e for e in cluster.events(ns, POLICY)
                                           if e["reason"] == "InvalidPolicy"), None),
                             30, "the InvalidPolicy event")
        assert warning["type"] == "Warning" and field in warning["message"]
        with labels_flowing(rig, dearer(normal)):
            time.sleep(8.0)  # a fleet drifting with labels: a valid policy would retrain
        assert cluster.jobs(ns) == []
        assert _status(rig, "phase") == "Invalid"
        assert "Traceback" not in rig.operator_log(), rig.operator_log()[-4000:]


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="prometheus not installed (make test-tools installs it)")
def test_fleet_counters_from_prometheus(cluster, model_dir, tmp_path, diamonds) -> None:
    """With spec.target.prometheus, the windows are sum(increase(...)) over the replicas'
    series in Prometheus, as a ServiceMonitor would label them."""
    normal = diamonds.sample(2000, random_state=14).reset_index(drop=True)
    with operator_rig(cluster, model_dir, tmp_path) as rig:
        ns = rig.namespace
        targets = [svc.url.removeprefix("http://") for svc in rig.replicas]
        with running_prometheus(targets, tmp_path, {"namespace": ns, "service": SERVICE}
                                ) as prometheus:
            spec = policy_spec(target={"service": SERVICE, "modelClaim": CLAIM,
                                       "prometheus": {"url": prometheus}})
            cluster.create_policy(ns, POLICY, spec)

            def scraped() -> bool:  # rows counted before a series' first scrape are lost
                with contextlib.suppress(requests.RequestException):
                    body = requests.get(prometheus + "/api/v1/query", timeout=5, params={
                        "query": 'driftkeeper_window_rows_total{kind="data"}'}).json()
                    return len(body.get("data", {}).get("result", [])) == 2
                return False

            wait_until(scraped, 60, "Prometheus to scrape both replicas")
            heavy = normal[:600].assign(carat=normal["carat"][:600] * 1.5)
            rig.predict(0, heavy[:300])
            rig.predict(1, heavy[300:])
            rig.label(0, normal[600:900])
            rig.label(1, normal[900:1200])
            wait_until(lambda: _status(rig, "data", "drift") is True, 90,
                       "the fleet's verdict from Prometheus")
            wait_until(lambda: _status(rig, "concept", "drift") is False, 60,
                       "a concept verdict from Prometheus")
            # The 600 rows arrived at once, within the range chosen from the rate: all of
            # them, exactly (counter differences, no extrapolation), once both replicas'
            # counters were scraped.
            wait_until(lambda: _status(rig, "data", "samples") == 600, 30, "600 rows")
            assert _status(rig, "data", "driftedFeatures") == ["carat"]
            assert _status(rig, "modelVersion") == "v1"
            assert _status(rig, "endpoints") == 2

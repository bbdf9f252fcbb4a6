"""The policy worker's decisions around retraining Jobs, with an in-memory Kubernetes:
following, adopting, a vanished Job, a missing image, an invalid spec, no replicas."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from driftkeeper.model.retrain import RetrainOutcome
from driftkeeper.policy.engine import policy_generation
from driftkeeper_operator.builders import POLICY_LABEL
from driftkeeper_operator.config import OperatorConfig
from driftkeeper_operator.kube import Endpoint
from driftkeeper_operator.worker import PolicyWorker, parse_for_cluster

NOW = 1_800_000_000.0
SPEC = {"target": {"service": "diamonds"},
        "evaluation": {"interval": "2s", "consecutiveBreaches": 2},
        "retraining": {"triggers": ["concept"], "trainingData": {"minFeedbackRows": 100}},
        "promotion": {"evaluationRows": 50}}


class FakeKube:
    """The calls the worker makes, against dicts."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, list[str]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.created: list[dict[str, Any]] = []
        self.endpoints: list[Endpoint] = []

    def ready_endpoints(self, namespace: str, service: str, port: str) -> list[Endpoint]:
        return self.endpoints

    def policy_jobs(self, namespace: str, policy: str) -> list[dict[str, Any]]:
        return [j for j in self.jobs.values()
                if j["metadata"]["labels"].get(POLICY_LABEL) == policy]

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.jobs.get(name)

    def create_job(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.created.append(manifest)
        job = copy.deepcopy(manifest)
        self.jobs[job["metadata"]["name"]] = job
        return job

    def termination_messages(self, namespace: str, job: str) -> list[str]:
        return self.messages.get(job, [])

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses.append(status)


def _body(status: dict[str, Any] | None = None, spec: dict[str, Any] | None = None):
    return {"apiVersion": "driftkeeper.io/v1alpha1", "kind": "DriftPolicy",
            "metadata": {"name": "diamonds", "namespace": "ml", "uid": "u-1", "generation": 4},
            "spec": spec or SPEC, "status": status or {}}


def _job(name: str, conditions: list | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {POLICY_LABEL: "diamonds"},
                         "creationTimestamp": "2027-01-15T08:00:00Z"},
            "status": {"conditions": conditions or []}}


def _worker(kube: FakeKube, image: str | None = "img:1") -> PolicyWorker:
    return PolicyWorker("diamonds", "ml", kube, OperatorConfig(image=image), clock=lambda: NOW)


def _running_engine(job: str) -> dict[str, Any]:
    policy = parse_for_cluster("diamonds", SPEC)[0]
    return {"engine": {"retrain_started": NOW - 60, "retrains": 1, "job": job,
                       "drifting": {"data": False, "concept": True},
                       "breaches": {"data": 0, "concept": 3}, "episode_start": NOW - 120,
                       "policy_generation": policy_generation(policy)}}


def test_without_replicas_the_policy_is_not_ready() -> None:
    kube = FakeKube()
    result = _worker(kube).tick(_body())
    ready = next(c for c in result.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NoReadyEndpoints")
    assert result.status["phase"] == "InsufficientData"
    assert result.status["observedGeneration"] == 4 and result.delay == 2.0
    assert kube.statuses == [result.status]


def test_invalid_spec_is_left_to_the_spec_handler() -> None:
    kube = FakeKube()
    result = _worker(kube).tick(_body(spec={"window": {"size": 5}}))
    assert result.status is None and kube.statuses == []


def test_a_running_job_is_followed_to_its_outcome() -> None:
    kube = FakeKube()
    kube.jobs["diamonds-retrain-1"] = _job("diamonds-retrain-1")
    worker = _worker(kube)
    status = _running_engine("diamonds-retrain-1")
    assert worker.tick(_body(status)).status["phase"] == "Retraining"
    kube.jobs["diamonds-retrain-1"]["status"]["conditions"] = [
        {"type": "Complete", "status": "True"}]
    kube.messages["diamonds-retrain-1"] = [RetrainOutcome(
        "promoted", "v2 promoted: better", serving="v1", candidate="v2", candidate_rmse=500.0,
        serving_rmse=900.0, rows={"train": 800, "judge": 200}).to_json()]
    result = worker.tick(_body(status))
    assert [e.reason for e in result.events] == ["ModelPromoted"]
    assert "diamonds-retrain-1" in result.events[0].message
    last = result.status["lastRetrain"]
    assert (last["outcome"], last["candidate"], last["trainRows"]) == ("promoted", "v2", 800)
    # Still drifting until the new model is measured; the Job is no longer followed.
    assert result.status["phase"] == "Drifting" and result.status["engine"]["job"] is None
    assert kube.created == []


def test_a_job_running_without_a_record_is_adopted_not_duplicated() -> None:
    """The status was lost (or never written) while a Job ran: follow that Job."""
    kube = FakeKube()
    kube.jobs["diamonds-retrain-4"] = _job("diamonds-retrain-4")
    result = _worker(kube).tick(_body({}))
    assert [e.reason for e in result.events] == ["RetrainAdopted"]
    assert result.status["engine"]["job"] == "diamonds-retrain-4"
    assert result.status["phase"] == "Retraining"
    assert kube.created == []


def test_a_vanished_job_is_a_failed_retrain() -> None:
    kube = FakeKube()
    result = _worker(kube).tick(_body(_running_engine("diamonds-retrain-1")))
    assert [e.reason for e in result.events] == ["RetrainFailed"]
    assert "disappeared" in result.events[0].message
    assert result.status["failures"] == 1
    assert result.status["lastRetrain"]["outcome"] == "failed"


@pytest.mark.parametrize(("image", "created"), [(None, 0), ("img:1", 1)])
def test_a_due_retrain_starts_one_job_if_there_is_an_image(image: str | None,
                                                            created: int) -> None:
    kube = FakeKube()
    status = {"engine": {"breaches": {"data": 0, "concept": 3},
                         "drifting": {"data": False, "concept": True},
                         "episode_start": NOW - 100, "last_evaluation": NOW - 1,
                         "labelsBaseline": -1000.0}}  # 1000 labels since the episode began
    result = _worker(kube, image).tick(_body(status))
    reasons = [e.reason for e in result.events]
    assert len(kube.created) == created
    if image is None:
        assert reasons == ["RetrainStarted", "RetrainFailed"]
        assert "DRIFTKEEPER_IMAGE" in result.events[-1].message
        assert result.status["failures"] == 1
    else:
        assert reasons == ["RetrainStarted", "RetrainJobCreated"]
        job = kube.created[0]
        assert job["metadata"]["name"] == "diamonds-retrain-1"
        assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
        assert "--since" in job["spec"]["template"]["spec"]["containers"][0]["command"]
        assert result.status["lastRetrain"]["outcome"] == "running"

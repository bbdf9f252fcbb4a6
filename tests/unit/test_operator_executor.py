"""The policy executor around retraining Jobs, with an in-memory Kubernetes: following,
adopting, a vanished Job, a missing image, an invalid spec, no replicas, a 409 that
returns another retrain's Job, a policy asking for another volume, and failures that
must not flood the policy with events."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from driftkeeper.model.retrain import RetrainOutcome
from driftkeeper.policy.engine import policy_generation
from driftkeeper.policy.reconcile import RetrainRequest
from driftkeeper_operator.builders import POLICY_LABEL, request_annotations
from driftkeeper_operator.config import OperatorConfig
from driftkeeper_operator.executor import PolicyWorker, parse_for_cluster
from driftkeeper_operator.jobsettings import JobSettings
from driftkeeper_operator.kube import Endpoint

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
        self.deleted: list[str] = []
        self.endpoints: list[Endpoint] = []
        self.deployment: dict[str, Any] | None = deployment()
        self.claim: dict[str, Any] | None = {"spec": {"accessModes": ["ReadWriteOnce"]}}
        self.fail: Exception | None = None  # raised by every read, when set

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.deployment

    def get_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.claim

    def delete_job(self, namespace: str, name: str) -> None:
        self.deleted.append(name)
        self.jobs.pop(name, None)

    def ready_endpoints(self, namespace: str, service: str, port: str) -> list[Endpoint]:
        if self.fail is not None:
            raise self.fail
        return self.endpoints

    def policy_jobs(self, namespace: str, policy: str) -> list[dict[str, Any]]:
        return [j for j in self.jobs.values()
                if j["metadata"]["labels"].get(POLICY_LABEL) == policy]

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.jobs.get(name)

    def create_job(self, manifest: dict[str, Any]) -> dict[str, Any]:
        name = manifest["metadata"]["name"]
        if name in self.jobs:  # 409: the API server returns nothing; Kube reads it back
            return self.jobs[name]
        self.created.append(manifest)
        job = copy.deepcopy(manifest)
        self.jobs[name] = job
        return job

    def termination_messages(self, namespace: str, job: str) -> list[str]:
        return self.messages.get(job, [])

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses.append(status)


def deployment(claim: str = "diamonds-models", path: str = "/models") -> dict[str, Any]:
    return {"metadata": {"name": "diamonds"},
            "spec": {"selector": {"matchLabels": {"app": "diamonds"}},
                     "template": {"spec": {
                         "volumes": [{"name": "m", "persistentVolumeClaim": {
                             "claimName": claim}}],
                         "containers": [{"name": "model", "volumeMounts": [
                             {"name": "m", "mountPath": path}]}]}}}}


def _body(status: dict[str, Any] | None = None, spec: dict[str, Any] | None = None):
    return {"apiVersion": "driftkeeper.io/v1alpha1", "kind": "DriftPolicy",
            "metadata": {"name": "diamonds", "namespace": "ml", "uid": "u-1", "generation": 4},
            "spec": spec or SPEC, "status": status or {}}


REQUEST = RetrainRequest(1, NOW - 120, "4", NOW - 60, "diamonds-retrain-g4-1")


def _job(name: str, conditions: list | None = None,
         request: RetrainRequest | None = REQUEST) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {POLICY_LABEL: "diamonds"},
                         "annotations": request_annotations(request) if request else {},
                         "creationTimestamp": "2027-01-15T08:00:00Z"},
            "status": {"conditions": conditions or []}}


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _worker(kube: FakeKube, image: str | None = "img:1", clock: Clock | None = None
            ) -> PolicyWorker:
    return PolicyWorker("diamonds", "ml", kube,
                        OperatorConfig(image=image, job=JobSettings(image=image)),
                        clock=clock or Clock())


def _running_engine(job: str) -> dict[str, Any]:
    policy = parse_for_cluster("diamonds", SPEC)[0]
    request = {**REQUEST.to_dict(), "handle": job}
    return {"engine": {"retrain_started": NOW - 60, "retrains": 1, "retrain": request,
                       "drifting": {"data": False, "concept": True},
                       "breaches": {"data": 0, "concept": 3}, "episode_start": NOW - 120,
                       "policy_generation": policy_generation(policy)}}


def _decisions(result: Any) -> list[str]:
    """The events of the engine's decisions (without the target's NoReadyEndpoints)."""
    return [e.reason for e in result.events if e.reason != "NoReadyEndpoints"]


def _due(fresh: int = 1000) -> dict[str, Any]:
    """A policy whose concept drift is due for a retrain, with ``fresh`` labels counted."""
    return {"engine": {"breaches": {"data": 0, "concept": 3},
                       "drifting": {"data": False, "concept": True},
                       "episode_start": NOW - 100, "last_evaluation": NOW - 1,
                       "labels": {"fresh": fresh, "seen": {}}}}


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
    assert _decisions(result) == ["ModelPromoted"]
    assert "diamonds-retrain-1" in result.events[0].message
    last = result.status["lastRetrain"]
    assert (last["outcome"], last["candidate"], last["trainRows"]) == ("promoted", "v2", 800)
    # Still drifting until the new model is measured; the Job is no longer followed.
    assert result.status["phase"] == "Drifting" and result.status["engine"]["retrain"] is None
    assert kube.created == []


def test_a_job_running_without_a_record_is_adopted_not_duplicated() -> None:
    """The status was lost (or never written) while a Job ran: follow that Job."""
    kube = FakeKube()
    kube.jobs["diamonds-retrain-4"] = _job("diamonds-retrain-4")
    result = _worker(kube).tick(_body({}))
    assert _decisions(result) == ["RetrainAdopted"]
    assert result.status["engine"]["retrain"]["handle"] == "diamonds-retrain-4"
    assert result.status["engine"]["retrain"]["since"] == REQUEST.since  # its annotations
    assert result.status["phase"] == "Retraining"
    assert kube.created == []


def test_a_vanished_job_is_a_failed_retrain() -> None:
    kube = FakeKube()
    result = _worker(kube).tick(_body(_running_engine("diamonds-retrain-1")))
    assert _decisions(result) == ["RetrainFailed"]
    assert "disappeared" in result.events[0].message
    assert result.status["failures"] == 1
    assert result.status["lastRetrain"]["outcome"] == "failed"


@pytest.mark.parametrize(("image", "created"), [(None, 0), ("img:1", 1)])
def test_a_due_retrain_starts_one_job_if_there_is_an_image(image: str | None,
                                                            created: int) -> None:
    kube = FakeKube()
    result = _worker(kube, image).tick(_body(_due()))
    reasons = _decisions(result)
    assert len(kube.created) == created
    if image is None:
        assert reasons == ["RetrainStarted", "RetrainFailed"]
        assert "DRIFTKEEPER_IMAGE" in result.events[1].message
        assert result.status["failures"] == 1
        assert result.status["lastRetrain"]["job"] == "-"
    else:
        assert reasons == ["RetrainStarted", "RetrainJobCreated"]
        job = kube.created[0]
        name = job["metadata"]["name"]
        assert name.startswith("diamonds-retrain-g4-")
        assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
        pod = job["spec"]["template"]["spec"]
        assert "--since" in pod["containers"][0]["command"]
        # A ReadWriteOnce claim: the Job runs on the node of a model pod.
        (term,) = pod["affinity"]["podAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["labelSelector"] == {"matchLabels": {"app": "diamonds"}}
        assert result.status["lastRetrain"] == {**result.status["lastRetrain"],
                                                "job": name, "outcome": "running"}
        assert result.status["engine"]["retrain"]["handle"] == name


def test_a_409_with_another_retrains_job_is_not_adopted() -> None:
    """A Job that has the name but was made for another retrain (other annotations) is
    neither followed nor its outcome recorded: the attempt fails, saying why."""
    kube = FakeKube()
    worker = _worker(kube)
    first = worker.tick(_body(_due()))  # learn the name it will use
    name = kube.created[0]["metadata"]["name"]
    old = _job(name, [{"type": "Complete", "status": "True"}],
               request=RetrainRequest(7, NOW - 9999, "1", NOW - 9000))
    kube.messages[name] = [RetrainOutcome("promoted", "v9 promoted long ago").to_json()]
    kube.jobs, kube.created = {name: old}, []
    result = _worker(kube).tick(_body(_due()))
    assert _decisions(result) == ["RetrainStarted", "RetrainFailed"]
    assert "already exists for another retrain" in result.events[1].message
    assert result.status["lastRetrain"]["outcome"] == "failed"
    assert "v9" not in str(result.status["lastRetrain"])
    assert result.status["engine"]["retrain"] is None and kube.created == []
    assert first.status["lastRetrain"]["outcome"] == "running"


def test_a_409_with_its_own_job_follows_it() -> None:
    """The operator created the Job, then lost the status before writing it: the same
    request finds the same Job and follows it, without a second one."""
    kube = FakeKube()
    _worker(kube).tick(_body(_due()))
    kube.created = []
    result = _worker(kube).tick(_body(_due()))
    assert kube.created == []
    assert result.status["lastRetrain"]["outcome"] == "running"
    assert result.status["phase"] == "Retraining"


@pytest.mark.parametrize(("target", "field"), [
    ({"modelClaim": "postgres-data"}, "spec.target.modelClaim"),  # another app's volume
    ({"modelDir": "/etc"}, "spec.target.modelDir"),  # its claim, but not where it is
    ({"modelClaim": "diamonds-models", "modelDir": "/var"}, "spec.target.modelDir"),
])
def test_a_policy_on_a_volume_its_deployment_does_not_mount_is_invalid(
        target: dict, field: str) -> None:
    kube = FakeKube()
    spec = {**SPEC, "target": {**SPEC["target"], **target}}
    clock = Clock()
    worker = _worker(kube, clock=clock)
    result = worker.tick(_body(_due(), spec=spec))
    assert result.status["phase"] == "Invalid"
    ready = next(c for c in result.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert field in ready["message"]
    assert [e.reason for e in result.events] == ["InvalidPolicy"]
    assert kube.created == [] and kube.jobs == {}
    # It stays Invalid (no Job, no repeated event) until the spec or Deployment changes.
    again = worker.tick(_body({**_due(), **result.status}, spec=spec))
    assert again.status["phase"] == "Invalid" and again.events == [] and kube.created == []
    kube.deployment = deployment(claim=target.get("modelClaim", "diamonds-models"),
                                 path=target.get("modelDir", "/models"))
    clock.now += 61  # the Deployment is read again at most every minute
    healed = worker.tick(_body(_due(), spec=spec))
    assert healed.status["phase"] == "Retraining" and len(kube.created) == 1


def test_a_missing_deployment_fails_the_retrain_and_makes_no_job() -> None:
    kube = FakeKube()
    kube.deployment = None
    result = _worker(kube).tick(_body(_due()))
    assert "Deployment diamonds (spec.target.deployment) not found" in result.events[1].message
    assert result.status["failures"] == 1 and kube.created == []


def test_a_missing_target_for_five_minutes_makes_a_handful_of_events() -> None:
    """The target Service has no endpoints; the policy is ticked every 2 s for 5 minutes:
    the Ready condition says why on every tick, a Warning Event only now and then."""
    kube = FakeKube()
    clock = Clock()
    worker = _worker(kube, clock=clock)
    posted, body = [], _body()
    while clock.now < NOW + 300:
        result = worker.tick(body)
        posted += result.events
        body = _body(result.status)
        ready = next(c for c in result.status["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "NoReadyEndpoints")
        clock.now += result.delay
    assert len(kube.statuses) >= 140  # ticked all along
    warnings = [e for e in posted if e.type == "Warning"]
    assert 1 <= len(warnings) <= 4  # at 0 s, 60 s, 180 s: at most a handful
    assert {e.reason for e in warnings} == {"NoReadyEndpoints"}


def test_failing_ticks_back_off_and_post_one_warning_per_error() -> None:
    kube = FakeKube()
    kube.fail = RuntimeError("connection refused by 10.0.0.1")
    clock = Clock()
    worker = _worker(kube, clock=clock)
    delays, posted = [], []
    while clock.now < NOW + 300:
        result = worker.tick(_body())
        delays.append(result.delay)
        posted += result.events
        clock.now += result.delay
    assert delays[:5] == [5.0, 10.0, 20.0, 40.0, 80.0]  # backing off
    assert max(delays) <= 300.0
    assert [e.reason for e in posted] == ["EvaluationFailed"] * len(posted)
    assert 1 <= len(posted) <= 3
    failed = kube.statuses[-1]["conditions"][0]
    assert (failed["type"], failed["status"], failed["reason"]) == (
        "Ready", "False", "EvaluationFailed")
    assert "connection refused" in failed["message"]
    kube.fail = None  # healed: the next tick is on time again
    assert worker.tick(_body()).delay == 2.0


def test_a_deployment_changed_since_the_last_check_is_checked_again_before_a_job() -> None:
    """The volume is re-read right before a Job, whatever the last check said: a policy
    whose Deployment stopped mounting its claim gets no Job and becomes Invalid."""
    kube = FakeKube()
    clock = Clock()
    worker = _worker(kube, clock=clock)
    worker.volume_check = (4, NOW, None)  # checked a moment ago (generation 4): fine
    kube.deployment = deployment(claim="someone-elses-data")
    clock.now += 5  # well within the re-check interval
    spec = {**SPEC, "target": {"service": "diamonds", "modelClaim": "diamonds-models"}}
    result = worker.tick(_body(_due(), spec=spec))
    assert result.status["phase"] == "Invalid" and kube.created == []
    assert "spec.target" in next(c for c in result.status["conditions"]
                                 if c["type"] == "Ready")["message"]

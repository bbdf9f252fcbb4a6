"""The operator's Kubernetes calls against an API server (the emulator by default)."""

from __future__ import annotations

import copy

import pytest

from driftkeeper.policy import parse_policy
from driftkeeper.policy.reconcile import RetrainRequest
from driftkeeper_operator import builders
from driftkeeper_operator.jobsettings import JobSettings
from driftkeeper_operator.kube import Kube

pytestmark = pytest.mark.slow

SPEC = {"target": {"service": "diamonds"}}


def _policy():
    return parse_policy({"apiVersion": "driftkeeper.io/v1alpha1", "kind": "DriftPolicy",
                         "metadata": {"name": "diamonds"}, "spec": SPEC})


def test_kube_calls(cluster) -> None:
    ns = cluster.namespace("kube-calls")
    kube = Kube(cluster.api)

    # A ConfigMap is created once, then only patched when its data changes.
    manifest = builders.policy_config_map(_policy(), ns)
    assert kube.apply_config_map(manifest) is True
    assert kube.apply_config_map(manifest) is False
    changed = copy.deepcopy(manifest)
    changed["data"]["policy.yaml"] += "# edited\n"
    assert kube.apply_config_map(changed) is True
    assert cluster.config_map(ns, manifest["metadata"]["name"])["data"] == changed["data"]

    # A second create of the same Job (a retried handler) returns the first one, with the
    # annotations that say which retrain it is.
    request = RetrainRequest(1, 1795000000.0, "1", 1795000010.0)
    job = builders.retrain_job(_policy(), ns, request, JobSettings(image="img:1"))
    first = kube.create_job(job)
    again = kube.create_job(job)
    assert again["metadata"]["uid"] == first["metadata"]["uid"]
    assert builders.request_of(again) == request
    name = job["metadata"]["name"]
    assert [j["metadata"]["name"] for j in kube.policy_jobs(ns, "diamonds")] == [name]
    assert kube.policy_jobs(ns, "other") == []

    # The target Deployment and its claim, as the operator checks them; absent: None.
    assert kube.get_deployment(ns, "diamonds") is None
    assert kube.get_claim(ns, "diamonds-models") is None
    cluster.model_deployment(ns, "diamonds", {"diamonds-models": "/models"},
                             access_modes=["ReadWriteOnce"])
    deployment = kube.get_deployment(ns, "diamonds")
    assert deployment["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"] == {
        "claimName": "diamonds-models"}
    assert kube.get_claim(ns, "diamonds-models")["spec"]["accessModes"] == ["ReadWriteOnce"]

    # The retrain container's termination message, from the Job's pod.
    cluster.core.create_namespaced_pod(ns, {
        "metadata": {"name": f"{name}-abc", "labels": {"job-name": name}},
        "spec": {"containers": [{"name": "retrain", "image": "img:1"}]}})
    cluster.core.patch_namespaced_pod_status(f"{name}-abc", ns, {"status": {
        "containerStatuses": [{"name": "retrain", "ready": False, "restartCount": 0,
                               "image": "img:1", "imageID": "", "state": {"terminated": {
                                   "exitCode": 0, "message": '{"outcome":"promoted"}'}}}]}})
    assert kube.termination_messages(ns, name) == ['{"outcome":"promoted"}']

    # Ready endpoints on the named port only.
    cluster.endpoint_slice(ns, "diamonds", "diamonds-0", 8081)
    cluster.endpoint_slice(ns, "diamonds", "diamonds-1", 8082, ready=False)
    cluster.endpoint_slice(ns, "other", "other-0", 9000)
    endpoints = kube.ready_endpoints(ns, "diamonds", "http")
    host = "127.0.0.1" if cluster.backend == "kmock" else "diamonds-0.replicas.test"
    assert [(e.name, e.url) for e in endpoints] == [("diamonds-0", f"http://{host}:8081")]
    assert kube.ready_endpoints(ns, "diamonds", "metrics") == []

    # Deleting the policy's Jobs and ConfigMap; deleting again is fine.
    assert kube.delete_policy_jobs(ns, "diamonds") == [name]
    kube.delete_config_map(ns, manifest["metadata"]["name"])
    kube.delete_config_map(ns, manifest["metadata"]["name"])
    assert kube.policy_jobs(ns, "diamonds") == []
    assert cluster.config_map(ns, manifest["metadata"]["name"]) is None

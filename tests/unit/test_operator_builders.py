"""The operator's pure parts: names, the ConfigMap, the Job, the Job's progress and outcome,
conditions, and its configuration."""

from __future__ import annotations

import json

import kubernetes_validate
import numpy as np
import pytest
import yaml

from driftkeeper.drift.evaluate import evaluate_concept, evaluate_data
from driftkeeper.drift.report import DriftReport
from driftkeeper.drift.settings import ConceptSettings, DataSettings
from driftkeeper.drift.windows import data_window, residual_window
from driftkeeper.errors import DriftkeeperError, PolicyError
from driftkeeper.model.retrain import RetrainOutcome
from driftkeeper.model.store import ModelStore
from driftkeeper.policy import parse_policy
from driftkeeper.policy.engine import Condition
from driftkeeper.policy.reconcile import RetrainRequest
from driftkeeper_operator import builders
from driftkeeper_operator.config import OperatorConfig
from driftkeeper_operator.crd import status_schema
from driftkeeper_operator.executor import parse_for_cluster
from driftkeeper_operator.job_guard import ModelVolume
from driftkeeper_operator.jobsettings import JobSettings

SPEC = {"target": {"service": "diamonds"},
        "retraining": {"timeout": "15m",
                       "job": {"resources": {"limits": {"memory": "2Gi"}}}}}


def _policy(name: str = "diamonds", spec: dict | None = None):
    return parse_policy({"apiVersion": "driftkeeper.io/v1alpha1", "kind": "DriftPolicy",
                         "metadata": {"name": name}, "spec": spec or SPEC})


def _request(number: int = 2, since: float = 1795000000.5, generation: str = "3"
             ) -> RetrainRequest:
    return RetrainRequest(number, since, generation, since + 60)


def test_job_names_carry_the_generation_and_the_drift_start() -> None:
    """Deterministic from what the retrain is for, so a retried create finds its own Job
    and a Job of another episode or spec never has the name."""
    name = builders.job_name("diamonds", _request())
    assert name == "diamonds-retrain-g3-top2v4"  # 1795000000 in base 36
    assert builders.job_name("diamonds", _request(number=9)) == name  # same retrain
    assert builders.job_name("diamonds", _request(generation="4")) != name
    assert builders.job_name("diamonds", _request(since=1795000100.0)) != name
    long = "x" * 80
    trimmed = builders.job_name(long, _request())
    assert len(trimmed) <= 63 and trimmed.endswith("-retrain-g3-top2v4")
    assert trimmed != builders.job_name("y" * 80, _request())


def test_a_job_carries_its_request_in_annotations() -> None:
    job = builders.retrain_job(_policy(), "ml", _request(), JobSettings(image="img:1"))
    assert builders.request_of(job) == _request()
    assert builders.request_of({"metadata": {"annotations": {}}}) is None


def test_config_map_carries_the_normalised_policy() -> None:
    policy = _policy()
    cm = builders.policy_config_map(policy, "ml")
    kubernetes_validate.validate(cm, "1.30", strict=True)
    assert cm["metadata"]["name"] == "driftpolicy-diamonds"
    assert cm["metadata"]["labels"][builders.POLICY_LABEL] == "diamonds"
    pushed = parse_policy(yaml.safe_load(cm["data"]["policy.yaml"]))
    assert pushed.spec == policy.spec  # every default filled, and stable


def test_retrain_job_spec() -> None:
    settings = JobSettings(image="img:1", service_account="trainer")
    job = builders.retrain_job(_policy(), "ml", _request(), settings)
    kubernetes_validate.validate(job, "1.30", strict=True)
    assert job["metadata"]["name"] == "diamonds-retrain-g3-top2v4"
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"],
            spec["ttlSecondsAfterFinished"]) == (0, 900, 86400)
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "trainer"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == "img:1"
    assert container["command"] == [
        "driftkeeper", "retrain", "--model-dir", "/models", "--policy",
        "/etc/driftkeeper/policy.yaml", "--since", "1795000000.5", "--termination-log",
        "/dev/termination-log"]
    # The policy's resources are ignored: the operator's settings decide.
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"},
                                      "limits": {"memory": "1Gi"}}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False,
                                            "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == "diamonds-models"
    assert volumes["policy"]["configMap"]["name"] == "driftpolicy-diamonds"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"models": "/models", "policy": "/etc/driftkeeper", "tmp": "/tmp"}
    labels = spec["template"]["metadata"]["labels"]
    assert labels[builders.POLICY_LABEL] == "diamonds"
    assert labels["app.kubernetes.io/component"] == "retrain"


def test_what_the_job_runs_as_comes_from_the_settings() -> None:
    settings = JobSettings.parse(json.dumps({
        "image": "registry.example/dk:2", "imagePullPolicy": "Always",
        "imagePullSecrets": [{"name": "pull"}], "serviceAccountName": "retrainer",
        "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 2000},
        "securityContext": {"allowPrivilegeEscalation": False},
        "resources": {"limits": {"memory": "4Gi"}}, "nodeSelector": {"pool": "train"},
        "tolerations": [{"key": "train", "operator": "Exists"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}))
    volume = ModelVolume("store", "/data", {"app": "m"})
    job = builders.retrain_job(_policy(), "ml", _request(), settings, volume,
                               affinity=settings.affinity)
    kubernetes_validate.validate(job, "1.30", strict=True)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert (container["image"], container["imagePullPolicy"]) == (
        "registry.example/dk:2", "Always")
    assert pod["imagePullSecrets"] == [{"name": "pull"}]
    assert pod["serviceAccountName"] == "retrainer"
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 2000}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False}
    assert container["resources"] == {"limits": {"memory": "4Gi"}}
    assert (pod["nodeSelector"], pod["tolerations"]) == (
        {"pool": "train"}, [{"key": "train", "operator": "Exists"}])
    assert pod["affinity"] == settings.affinity
    # The volume is the one the Deployment mounts, at its path.
    assert container["command"][3] == "/data"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == "store"


def test_a_policy_image_only_from_the_allowed_list() -> None:
    spec = {**SPEC, "retraining": {"job": {"image": "custom:2"}}}
    allowed = JobSettings(image="img:1", allowed_images=("custom:2",))
    job = builders.retrain_job(_policy(spec=spec), "ml", _request(), allowed)
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "custom:2"
    assert "serviceAccountName" not in job["spec"]["template"]["spec"]
    # Not listed: the builder never uses it (parse_for_cluster refuses such a policy).
    job = builders.retrain_job(_policy(spec=spec), "ml", _request(), JobSettings(image="i:1"))
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "i:1"


@pytest.mark.parametrize(("conditions", "expected"), [
    ([], builders.RUNNING),
    ([{"type": "Complete", "status": "True"}], builders.SUCCEEDED),
    ([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}], builders.FAILED),
    ([{"type": "Failed", "status": "False"}], builders.RUNNING),
])
def test_job_state(conditions: list, expected: str) -> None:
    state, why = builders.job_state({"status": {"conditions": conditions}})
    assert state == expected
    if conditions and conditions[0].get("reason") == "DeadlineExceeded":
        assert "timeout" in why


def test_job_outcome_from_the_termination_message() -> None:
    done = RetrainOutcome("promoted", "v2 promoted", serving="v1", candidate="v2")
    outcome = builders.job_outcome(builders.SUCCEEDED, "ok", ["garbage", done.to_json()])
    assert outcome == RetrainOutcome.from_dict(json.loads(done.to_json()))
    failed = builders.job_outcome(builders.FAILED, "the Job failed (BackoffLimitExceeded)",
                                  ["Traceback...\nMemoryError"])
    assert failed.outcome == "failed" and "MemoryError" in failed.reason
    silent = builders.job_outcome(builders.SUCCEEDED, "the Job completed", [])
    assert silent.outcome == "failed" and "no outcome" in silent.reason


def test_last_retrain_records_what_the_gate_judged_by() -> None:
    """A classifier's gate judges log loss: status.lastRetrain says so next to the RMSEs,
    and every field it writes is in the status schema (the API server prunes the rest)."""
    done = RetrainOutcome("promoted", "v2 promoted", serving="v1", candidate="v2",
                          candidate_rmse=0.21, serving_rmse=0.3, rows={"train": 400, "judge": 100},
                          metric="log_loss", candidate_score=0.1423, serving_score=0.2817)
    outcome = builders.job_outcome(builders.SUCCEEDED, "ok", [done.to_json()])
    record = builders.retrain_record("p-retrain-1", 100.0, outcome, 160.0)
    assert (record["metric"], record["candidateScore"], record["servingScore"]) == \
        ("log_loss", 0.1423, 0.2817)
    assert (record["candidateRmse"], record["servingRmse"]) == (0.21, 0.3)
    declared = status_schema()["properties"]["lastRetrain"]["properties"]
    assert set(record) <= set(declared)
    assert declared["metric"]["nullable"] and declared["candidateScore"]["type"] == "number"
    running = builders.retrain_record("p-retrain-2", 200.0)
    assert "metric" not in running and set(running) <= set(declared)
    failed = builders.retrain_record("p-retrain-3", 200.0,
                                     RetrainOutcome("failed", "MemoryError"), 210.0)
    assert (failed["metric"], failed["candidateScore"], failed["servingScore"]) == \
        (None, None, None)


def test_conditions_keep_their_transition_time_until_the_status_changes() -> None:
    ready = Condition("Ready", "True", "Evaluating", "2 replicas")
    data = Condition("DataDrift", "False", "WithinThreshold", "ok")
    valid = Condition("PolicyValid", "True", "Valid", "engine-only, not shown")
    first = builders.conditions([data, valid], ready, [], 3, now=1000.0)
    assert [c["type"] for c in first] == ["Ready", "DataDrift"]
    assert all(c["observedGeneration"] == 3 for c in first)
    later = builders.conditions([Condition("DataDrift", "True", "DriftDetected", "carat")],
                                ready, first, 3, now=2000.0)
    times = {c["type"]: c["lastTransitionTime"] for c in later}
    assert times["Ready"] == builders.rfc3339(1000.0)
    assert times["DataDrift"] == builders.rfc3339(2000.0)


def test_report_status_shape(trained_model_dir) -> None:
    profile = ModelStore(trained_model_dir).load(with_estimator=False).profile
    report = DriftReport(evaluate_data(profile, data_window(profile, np.empty((0, 6))),
                                       DataSettings()),
                         evaluate_concept(profile, residual_window(profile, np.zeros(0)),
                                          ConceptSettings()), "v1", 5.0)
    status = builders.report_status(report)
    assert status["data"]["drift"] is None and status["data"]["samples"] == 0
    assert status["concept"]["drift"] is None and status["concept"]["rmse"] is None
    assert status["concept"]["rmseReference"] == pytest.approx(profile.residuals.rmse)


def test_report_status_of_a_classifier_has_its_measures(trained_model_dir) -> None:
    """Log loss, accuracy and calibration beside their held-out values, all declared in
    the status schema; a regression's concept status has none of them."""
    from exposition import as_classifier, classifier_residuals

    regression = ModelStore(trained_model_dir).load(with_estimator=False).profile
    profile = as_classifier(regression)
    residuals = classifier_residuals(600, 7)
    concept = evaluate_concept(profile, residual_window(profile, residuals), ConceptSettings())
    report = DriftReport(evaluate_data(profile, data_window(profile, np.empty((0, 6))),
                                       DataSettings()), concept, "v1", 5.0)
    status = builders.report_status(report)["concept"]
    assert status["logLoss"] == pytest.approx(concept.log_loss, abs=1e-6)
    assert status["accuracy"] == pytest.approx(float(np.mean(np.abs(residuals) < 0.5)),
                                               abs=1e-6)
    assert status["logLossReference"] == pytest.approx(profile.residuals.log_loss, abs=1e-6)
    assert status["calibration"] == pytest.approx(float(residuals.mean()), abs=1e-6)
    declared = status_schema()["properties"]["concept"]["properties"]
    assert set(status) <= set(declared)
    plain = builders.report_status(DriftReport(report.data, evaluate_concept(
        regression, residual_window(regression, np.zeros(300)), ConceptSettings()),
        "v1", 5.0))["concept"]
    assert "logLoss" not in plain and "accuracy" not in plain


def test_cluster_policies_need_a_target() -> None:
    with pytest.raises(PolicyError) as info:
        parse_for_cluster("p", {"window": {"size": 500}})
    assert info.value.field == "spec.target"
    policy, target = parse_for_cluster("p", SPEC)
    assert (target.service, target.port, target.model_claim, target.deployment) == (
        "diamonds", "http", "diamonds-models", "diamonds")
    assert target.prometheus_url is None and policy.name == "p"


def test_operator_config_from_the_environment() -> None:
    config = OperatorConfig.from_env({"DRIFTKEEPER_IMAGE": "img:1",
                                      "DRIFTKEEPER_SCRAPE_TIMEOUT": "2.5"})
    assert (config.image, config.scrape_timeout, config.watch_timeout) == ("img:1", 2.5, 300)
    with pytest.raises(DriftkeeperError, match="DRIFTKEEPER_WATCH_TIMEOUT must be a number"):
        OperatorConfig.from_env({"DRIFTKEEPER_WATCH_TIMEOUT": "soon"})
    with pytest.raises(DriftkeeperError, match="DRIFTKEEPER_SCRAPE_TIMEOUT must be > 0"):
        OperatorConfig.from_env({"DRIFTKEEPER_SCRAPE_TIMEOUT": "0"})


def test_report_status_of_a_multiclass_model_has_each_class_calibration(
        trained_model_dir) -> None:
    """The fleet's class sums become classCalibration (declared in the status schema);
    calibration, a binary model's, stays null."""
    from exposition import MULTICLASS, as_multiclass

    profile = as_multiclass(ModelStore(trained_model_dir).load(with_estimator=False).profile)
    rng = np.random.default_rng(8)
    labels, p = rng.integers(0, 3, 400), rng.dirichlet(np.ones(3), 400)
    window = residual_window(profile, rng.uniform(0, 0.9, 400), np.ones(400),
                             np.ones(400), labels, p)
    concept = evaluate_concept(profile, window, ConceptSettings())
    status = builders.report_status(DriftReport(
        evaluate_data(profile, data_window(profile, np.empty((0, 6))), DataSettings()),
        concept, "v1", 5.0))["concept"]
    assert status["calibration"] is None
    assert status["classCalibration"] == pytest.approx(
        {c: float(np.mean(labels == i) - p[:, i].mean()) for i, c in enumerate(MULTICLASS)},
        abs=1e-6)
    declared = status_schema()["properties"]["concept"]["properties"]
    assert set(status) <= set(declared)

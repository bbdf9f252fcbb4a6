"""What a DriftPolicy may choose for its retraining Job: nothing the operator's settings
do not give (image, ServiceAccount), and only the volume its own Deployment mounts."""

from __future__ import annotations

import json

import pytest

from driftkeeper.errors import DriftkeeperError, PolicyError
from driftkeeper_operator.config import OperatorConfig
from driftkeeper_operator.executor import parse_for_cluster
from driftkeeper_operator.job_guard import (
    ModelVolume,
    check_job_fields,
    colocation,
    ignored_fields,
    merge_affinity,
    model_volume,
)
from driftkeeper_operator.jobsettings import DEFAULT_RESOURCES, JobSettings

TARGET = {"service": "diamonds"}


def _deployment(volumes: list[dict], mounts: list[dict], init: list[dict] | None = None
                ) -> dict:
    return {"metadata": {"name": "diamonds"},
            "spec": {"selector": {"matchLabels": {"app": "diamonds"}},
                     "template": {"spec": {
                         "volumes": volumes,
                         "initContainers": [{"name": "init", "volumeMounts": m}
                                            for m in (init or [])],
                         "containers": [{"name": "model", "volumeMounts": mounts}]}}}}


MODELS = _deployment(
    [{"name": "models", "persistentVolumeClaim": {"claimName": "diamonds-models"}},
     {"name": "tmp", "emptyDir": {}}],
    [{"name": "models", "mountPath": "/models"}, {"name": "tmp", "mountPath": "/tmp"}])


# -- the settings ---------------------------------------------------------------------------


def test_settings_default_to_todays_secure_values() -> None:
    settings = JobSettings.parse(None, image="img:1", service_account="sa")
    assert (settings.image, settings.service_account) == ("img:1", "sa")
    assert settings.pod_security_context["runAsNonRoot"] is True
    assert settings.security_context["capabilities"] == {"drop": ["ALL"]}
    assert settings.resources == DEFAULT_RESOURCES
    assert settings.allowed_images == ()


def test_the_document_wins_over_the_older_variables() -> None:
    settings = JobSettings.parse(json.dumps({"image": "new:2", "serviceAccountName": "jobs",
                                             "allowedImages": ["gpu:1"]}),
                                 image="old:1", service_account="old")
    assert (settings.image, settings.service_account) == ("new:2", "jobs")
    assert settings.image_allowed("gpu:1") and settings.image_allowed("new:2")
    assert not settings.image_allowed("old:1")


@pytest.mark.parametrize(("raw", "message"), [
    ("{not json", "not JSON"),
    ("[]", "must be a JSON object"),
    ('{"imag": "x"}', "unknown key 'imag'"),
    ('{"resources": "lots"}', "resources must be a dict"),
    ('{"imagePullPolicy": "Sometimes"}', "imagePullPolicy must be one of"),
    ('{"imagePullSecrets": ["pull"]}', "imagePullSecrets must be a list of {name"),
    ('{"allowedImages": [""]}', "allowedImages must be a list of image names"),
])
def test_bad_settings_fail_at_start_naming_the_key(raw: str, message: str) -> None:
    with pytest.raises(DriftkeeperError, match="DRIFTKEEPER_JOB_SETTINGS") as info:
        OperatorConfig.from_env({"DRIFTKEEPER_JOB_SETTINGS": raw})
    assert message in str(info.value)


# -- what a policy may ask for --------------------------------------------------------------


def _spec(**job) -> dict:
    return {"target": TARGET, "retraining": {"job": job}}


@pytest.mark.parametrize(("job", "field"), [
    ({"image": "attacker/miner:latest"}, "spec.retraining.job.image"),
    ({"serviceAccountName": "cluster-admin-sa"}, "spec.retraining.job.serviceAccountName"),
])
def test_a_policy_cannot_pick_what_the_job_runs_as(job: dict, field: str) -> None:
    config = OperatorConfig.from_env({"DRIFTKEEPER_JOB_SETTINGS": json.dumps(
        {"image": "driftkeeper:1", "serviceAccountName": "retrain"})})
    with pytest.raises(PolicyError) as info:
        parse_for_cluster("p", _spec(**job), config)
    assert info.value.field == field
    assert "not allowed" in str(info.value)


def test_what_the_settings_allow_passes() -> None:
    settings = JobSettings(image="driftkeeper:1", service_account="retrain",
                           allowed_images=("driftkeeper-gpu:1",))
    check_job_fields(_spec(image="driftkeeper-gpu:1", serviceAccountName="retrain"), settings)
    check_job_fields(_spec(image="driftkeeper:1"), settings)
    check_job_fields(_spec(), settings)


def test_resources_in_a_policy_are_ignored_and_said_so() -> None:
    assert ignored_fields(_spec(resources={"limits": {"memory": "64Gi"}})) == [
        "spec.retraining.job.resources"]
    assert ignored_fields(_spec()) == []


# -- the volume -----------------------------------------------------------------------------


def test_the_deployments_own_claim_and_path() -> None:
    volume = model_volume(MODELS, "diamonds-models", "/models")
    assert volume == ModelVolume("diamonds-models", "/models", {"app": "diamonds"})
    assert model_volume(MODELS, None, None) == volume  # its one claim
    assert model_volume(MODELS, None, "/models") == volume


@pytest.mark.parametrize(("claim", "path", "field"), [
    ("database-data", None, "spec.target.modelClaim"),  # another app's volume
    ("diamonds-models", "/etc", "spec.target.modelDir"),  # the right claim, elsewhere
    (None, "/var/lib", "spec.target.modelDir"),
])
def test_any_other_volume_is_refused(claim: str | None, path: str | None, field: str) -> None:
    with pytest.raises(PolicyError) as info:
        model_volume(MODELS, claim, path)
    assert info.value.field == field
    assert "Deployment diamonds does not mount" in str(info.value)
    assert "diamonds-models at /models" in str(info.value)  # what it does mount


def test_a_deployment_with_several_claims_needs_one_named() -> None:
    two = _deployment(
        [{"name": "a", "persistentVolumeClaim": {"claimName": "models-a"}},
         {"name": "b", "persistentVolumeClaim": {"claimName": "cache-b"}}],
        [{"name": "a", "mountPath": "/models"}, {"name": "b", "mountPath": "/cache"}])
    with pytest.raises(PolicyError, match="several claims"):
        model_volume(two, None, None)
    assert model_volume(two, "models-a", None).path == "/models"


def test_a_claim_mounted_only_by_the_init_container_counts() -> None:
    init_only = _deployment(
        [{"name": "m", "persistentVolumeClaim": {"claimName": "store"}}], [],
        init=[[{"name": "m", "mountPath": "/models"}]])
    assert model_volume(init_only, "store", "/models").claim == "store"


def test_a_read_write_once_claim_puts_the_job_beside_a_model_pod() -> None:
    volume = ModelVolume("store", "/models", {"app": "diamonds"})
    term = {"labelSelector": {"matchLabels": {"app": "diamonds"}},
            "topologyKey": "kubernetes.io/hostname"}
    assert colocation(volume, ["ReadWriteOnce"]) == {
        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    assert colocation(volume, ["ReadWriteMany"]) == {}
    assert colocation(volume, None) == {}
    mine = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"gpu": "yes"}}, "topologyKey": "zone"}]},
        "nodeAffinity": {"x": 1}}
    merged = merge_affinity(mine, colocation(volume, ["ReadWriteOnce"]))
    assert merged["nodeAffinity"] == {"x": 1}
    assert merged["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][1] == term
    assert len(mine["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]) == 1

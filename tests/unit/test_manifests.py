"""Kubernetes manifests and deployment files: valid against the real API schemas, offline,
and consistent with the code (the policy they carry parses, the image builds what exists)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from driftkeeper.policy import parse_policy
from driftkeeper.schema import DIAMONDS_SCHEMA
from driftkeeper_operator.builders import config_map_name
from driftkeeper_operator.job_guard import model_volume

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = "1.30"
MANIFESTS = sorted((ROOT / "k8s").glob("*.yaml"))


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_validate_against_the_api_schema(path: Path) -> None:
    for doc in _documents(path):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_service_mounts_the_operators_policy_configmap() -> None:
    docs = {d["kind"]: d for d in _documents(ROOT / "k8s" / "service.yaml")}
    example = yaml.safe_load((ROOT / "k8s" / "examples" / "driftpolicy-diamonds.yaml")
                             .read_text())
    policy = parse_policy(example, DIAMONDS_SCHEMA)
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["policy"]["configMap"] == {"name": config_map_name(policy.name),
                                              "optional": True}
    target = policy.spec["target"]
    assert docs["Service"]["metadata"]["name"] == target["service"]
    assert docs["Service"]["spec"]["ports"][0]["name"] == target["port"]
    assert docs["PersistentVolumeClaim"]["metadata"]["name"] == target["modelClaim"]
    container = pod["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert "/etc/driftkeeper/policy.yaml" in container["args"]
    assert mounts["policy"] == "/etc/driftkeeper"
    # The operator lets the example's Job mount what this Deployment mounts, where it does.
    volume = model_volume(docs["Deployment"], target.get("modelClaim"), target.get("modelDir"))
    assert (volume.claim, volume.path) == (target["modelClaim"], mounts["models"])
    probes = (container["readinessProbe"]["httpGet"]["path"],
              container["livenessProbe"]["httpGet"]["path"])
    assert probes == ("/readyz", "/healthz")


def test_operator_runs_as_its_service_account_with_one_replica() -> None:
    rbac = {d["kind"]: d for d in _documents(ROOT / "k8s" / "operator-rbac.yaml")}
    deployment = _documents(ROOT / "k8s" / "operator.yaml")[0]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == rbac["ServiceAccount"]["metadata"]["name"]
    assert rbac["RoleBinding"]["subjects"][0]["name"] == pod["serviceAccountName"]
    assert rbac["RoleBinding"]["roleRef"]["name"] == rbac["Role"]["metadata"]["name"]
    assert pod["containers"][0]["args"][0] == "operator"
    for rule in rbac["Role"]["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]


def _stages() -> list[list[str]]:
    """The Dockerfile's stages as lists of instructions (continuations joined), the
    global ARGs' defaults substituted into FROM lines (as a build without --build-arg)."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    stages: list[list[str]] = []
    defaults: dict[str, str] = {}
    for line in lines:
        if not stages and line.startswith("ARG "):
            name, _, default = line[4:].partition("=")
            defaults[name] = default
            continue
        if line.startswith("FROM "):
            line = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], line)
            stages.append([])
        stages[-1].append(line)
    return stages


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    done = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_builds_in_one_stage_and_runs_slim_and_non_root() -> None:
    build, final = _stages()
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("# syntax=docker/dockerfile:1")
    for stage in (build, final):
        image = stage[0].split()[1]
        assert ":" in image and not image.endswith(":latest"), image
    assert final[0] == "FROM python:3.11-slim"
    final_text = "\n".join(final)
    # No compilers or package installs in the final stage; only stage 1's wheels.
    assert not re.search(r"apt-get|apk |gcc|build-essential", final_text)
    assert "--no-index" in final_text and "--no-cache-dir" in final_text
    user = next(line for line in final if line.startswith("USER "))
    uid, _, gid = user.split()[1].partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit(), user
    assert final.index(user) > max(i for i, line in enumerate(final)
                                   if line.startswith("RUN "))
    assert 'ENTRYPOINT ["driftkeeper"]' in final
    # A read-only root filesystem: HOME and the service's state live in /tmp (emptyDir).
    assert "HOME=/tmp" in final_text and "DRIFTKEEPER_STATE_DIR=/tmp/" in final_text
    assert "DRIFTKEEPER_MODEL_DIR=/models" in final_text
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, flags=re.M):
        for item in source.split():
            assert (ROOT / item).exists(), item


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines[0] == "*"  # everything out, then the build's inputs back in
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", (ROOT / "Dockerfile").read_text(),
                              flags=re.M):
        copied.update(sources.split())
    assert included == copied

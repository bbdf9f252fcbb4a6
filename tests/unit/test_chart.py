"""The Helm chart as rendered: lint, every object valid against the Kubernetes API schema or
its CRD, the wiring between objects, security settings, and the monitoring objects only
where the monitoring API exists."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from crd_schema import cel_errors, crd_schema, schema_errors
from driftkeeper_operator.config import OperatorConfig
from driftkeeper_operator.executor import parse_for_cluster
from driftkeeper_operator.job_guard import model_volume
from tools import cached_crd, tool

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "driftkeeper"
HELM = tool("helm")
VALUES = [None, *sorted((CHART / "ci").glob("*-values.yaml"))]
MONITORING_API = "monitoring.coreos.com/v1"
RELEASE, NAMESPACE = "dk", "ml"

pytestmark = pytest.mark.skipif(HELM is None,
                                reason="helm not installed (make test-tools installs it)")


def render(values: Path | None = None, monitoring: bool = True,
           extra: list[str] | None = None) -> list[dict[str, Any]]:
    args = [HELM, "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    if monitoring:
        args += ["--api-versions", MONITORING_API]
    if values is not None:
        args += ["-f", str(values)]
    done = subprocess.run(args + (extra or []), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        out.setdefault(doc["kind"], []).append(doc)
    return out


def _ids(values: Path | None) -> str:
    return "default" if values is None else values.name


@pytest.mark.parametrize("values", VALUES, ids=_ids)
def test_lint(values: Path | None) -> None:
    args = [HELM, "lint", "--strict", str(CHART)] + (["-f", str(values)] if values else [])
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("values", VALUES, ids=_ids)
def test_every_rendered_object_is_valid(values: Path | None) -> None:
    docs = render(values)
    for doc in docs:
        kind = doc["kind"]
        if kind == "DriftPolicy":
            schema = crd_schema(CHART / "crds" / "driftpolicies.driftkeeper.io.yaml")
            assert not schema_errors(schema, doc) and not cel_errors(schema, doc)
            parse_for_cluster(doc["metadata"]["name"], doc["spec"])
        elif kind in ("ServiceMonitor", "PrometheusRule"):
            crd = cached_crd(kind.lower() + "s")
            if crd is None:
                pytest.skip("prometheus-operator CRDs not cached (make test-tools)")
            assert not schema_errors(crd_schema(crd, "v1"), doc), doc["metadata"]["name"]
        else:
            kubernetes_validate.validate(doc, "1.30", strict=True)


def test_crds_are_a_copy_of_k8s_crds() -> None:
    assert ((CHART / "crds" / "driftpolicies.driftkeeper.io.yaml").read_text()
            == (ROOT / "k8s" / "crds" / "driftpolicies.driftkeeper.io.yaml").read_text()), (
        "run make crd")


def test_monitoring_objects_only_where_the_api_exists() -> None:
    without = by_kind(render(monitoring=False))
    assert "ServiceMonitor" not in without and "PrometheusRule" not in without
    assert "ConfigMap" in without  # the dashboard needs no API
    kinds = by_kind(render())
    monitors = {m["metadata"]["name"]: m for m in kinds["ServiceMonitor"]}
    assert set(monitors) == {"dk-driftkeeper", "dk-driftkeeper-operator"}
    for monitor in monitors.values():
        # No selector label by default: the user names their Prometheus' release.
        assert "release" not in monitor["metadata"]["labels"]
        # job is the Service's name (per release); the rules select a constant label.
        assert "jobLabel" not in monitor["spec"]
        component = monitor["metadata"]["labels"]["app.kubernetes.io/component"]
        assert monitor["spec"]["endpoints"][0]["relabelings"] == [
            {"action": "replace", "targetLabel": "driftkeeper", "replacement": component}]
    rule = kinds["PrometheusRule"][0]
    assert "release" not in rule["metadata"]["labels"]
    generated = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text().replace(
        "__RUNBOOK_BASE_URL__", "https://github.com/driftkeeper/driftkeeper/blob/main/docs/"
        "runbooks.md"))
    assert rule["spec"] == generated
    runbooks = {r["alert"]: r["annotations"]["runbook_url"]
                for g in rule["spec"]["groups"] for r in g["rules"]}
    assert runbooks["DriftkeeperConceptDrift"].endswith("docs/runbooks.md#driftkeeperconceptdrift")
    # Each ServiceMonitor selects exactly one Service.
    services = kinds["Service"]
    for monitor in monitors.values():
        wanted = monitor["spec"]["selector"]["matchLabels"]
        (service,) = [s for s in services
                      if wanted.items() <= s["metadata"]["labels"].items()]
        port = monitor["spec"]["endpoints"][0]["port"]
        assert port in {p["name"] for p in service["spec"]["ports"]}
    # With the user's release label, and their runbook pages.
    labelled = by_kind(render(extra=[
        "--set", "monitoring.serviceMonitor.labels.release=kps",
        "--set", "monitoring.prometheusRule.labels.release=kps",
        "--set", "monitoring.prometheusRule.runbookBaseUrl=https://wiki.example/dk"]))
    assert {m["metadata"]["labels"]["release"] for m in labelled["ServiceMonitor"]} == {"kps"}
    (rule,) = labelled["PrometheusRule"]
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert all(r["annotations"]["runbook_url"].startswith("https://wiki.example/dk#")
               for g in rule["spec"]["groups"] for r in g["rules"])


def test_the_objects_are_wired_together() -> None:
    kinds = by_kind(render())
    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d
                   for d in kinds["Deployment"]}
    model, operator = deployments["model"], deployments["operator"]
    (policy,) = kinds["DriftPolicy"]
    target = policy["spec"]["target"]
    service = next(s for s in kinds["Service"] if s["metadata"]["name"] == target["service"])
    assert service["spec"]["selector"] == model["spec"]["selector"]["matchLabels"]
    pod = model["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == target["modelClaim"]
    assert kinds["PersistentVolumeClaim"][0]["metadata"]["name"] == target["modelClaim"]
    assert volumes["policy"]["configMap"] == {
        "name": f"driftpolicy-{policy['metadata']['name']}", "optional": True}
    assert pod["initContainers"][0]["args"] == ["train", "--output", "/models", "--if-empty"]
    container, monitor = pod["containers"]
    assert "--policy=/etc/driftkeeper/policy.yaml" in container["args"]
    # The monitor: a container of its own beside the workers, on their state directory.
    assert (container["name"], monitor["name"]) == ("model", "monitor")
    assert monitor["args"][0] == "monitor" and monitor["image"] == container["image"]
    assert "--policy=/etc/driftkeeper/policy.yaml" in monitor["args"]
    serving_env = {e["name"]: e["value"] for e in container["env"]}
    monitor_env = {e["name"]: e["value"] for e in monitor["env"]}
    assert serving_env["DRIFTKEEPER_MONITOR"] == "external"
    assert serving_env["DRIFTKEEPER_STATE_DIR"] == monitor_env["DRIFTKEEPER_STATE_DIR"]
    mounts = {m["name"]: m for m in monitor["volumeMounts"]}
    assert mounts["tmp"]["mountPath"] == "/tmp" and volumes["tmp"] == {"name": "tmp",
                                                                         "emptyDir": {}}
    assert monitor_env["DRIFTKEEPER_STATE_DIR"].startswith("/tmp/")
    assert mounts["models"]["readOnly"] is True  # it never writes the model store
    assert monitor["livenessProbe"]["httpGet"] == {"path": "/healthz",
                                                   "port": "monitor-health"}
    assert f"--health-port={monitor['ports'][0]['containerPort']}" in monitor["args"]
    assert monitor["resources"]["limits"]["memory"] and monitor["resources"] != container[
        "resources"]
    assert "readinessProbe" not in monitor  # the Service never sends it traffic
    # The operator: one replica, replaced not rolled, its own namespace, the Jobs' image.
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    opod = operator["spec"]["template"]["spec"]
    args = opod["containers"][0]["args"]
    assert f"--namespace={NAMESPACE}" in args
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in opod["containers"][0]["env"]}
    assert env["DRIFTKEEPER_IMAGE"] == container["image"] == "driftkeeper:0.1.0"
    # Kopf's identity without a passwd entry (the image's uid has none).
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    (binding,) = kinds["RoleBinding"]
    assert binding["subjects"][0]["name"] == opod["serviceAccountName"]
    # The operator lets the default policy's Job mount what the Deployment mounts.
    volume = model_volume(model, target["modelClaim"], target["modelDir"])
    assert (volume.claim, volume.path) == (target["modelClaim"], "/models")


def _job_settings(docs: list[dict[str, Any]]) -> OperatorConfig:
    """The operator's configuration as the chart sets it (its own parser)."""
    operator = next(d for d in by_kind(docs)["Deployment"]
                    if d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator")
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]
           ["env"]}
    return OperatorConfig.from_env(env)


def test_the_retraining_jobs_settings_are_the_charts_own() -> None:
    """What a Job runs as comes from retrainJob values, parsed by the operator itself: the
    chart's image, a token-less ServiceAccount with no RBAC, today's secure contexts."""
    docs = render()
    job = _job_settings(docs).job
    assert job.image == "driftkeeper:0.1.0" and job.image_pull_policy == "IfNotPresent"
    assert job.service_account == "dk-driftkeeper-retrain"
    accounts = {a["metadata"]["name"]: a for a in by_kind(docs)["ServiceAccount"]}
    assert accounts["dk-driftkeeper-retrain"]["automountServiceAccountToken"] is False
    bound = {s["name"] for b in by_kind(docs)["RoleBinding"] for s in b["subjects"]}
    assert "dk-driftkeeper-retrain" not in bound  # no RBAC at all
    assert job.pod_security_context["runAsNonRoot"] is True
    assert job.security_context["readOnlyRootFilesystem"] is True
    assert job.resources == {"requests": {"cpu": "500m", "memory": "512Mi"},
                             "limits": {"memory": "1Gi"}}
    assert job.allowed_images == ()
    custom = _job_settings(render(CHART / "ci" / "single-node-volume-values.yaml")).job
    assert custom.resources["limits"] == {"memory": "2Gi"}
    assert custom.node_selector == {"pool": "training"}
    assert custom.allowed_images == ("registry.example/driftkeeper-gpu:0.1.0",)
    wide = _job_settings(render(CHART / "ci" / "cluster-wide-values.yaml")).job
    assert wide.service_account is None  # Jobs run in other namespaces: their default SA
    secured = _job_settings(render(extra=[
        "--set", "imagePullSecrets[0].name=pull", "--set", "securityContext.runAsUser=2000",
        "--set", "retrainJob.image.repository=registry.example/dk"])).job
    assert secured.image_pull_secrets == ("pull",)
    assert secured.security_context["runAsUser"] == 2000
    assert secured.image == "registry.example/dk:0.1.0"


def test_a_read_write_once_volume_keeps_everything_on_its_node() -> None:
    """Replicas sharing a ReadWriteOnce claim must share its node; a rollout replaces
    rather than rolls (a new pod elsewhere would wait on Multi-Attach forever)."""
    single = by_kind(render(extra=["--set", "model.replicas=1"]))
    model = next(d for d in single["Deployment"] if d["metadata"]["name"] == "dk-driftkeeper")
    assert model["spec"]["strategy"] == {"type": "Recreate"}
    assert "affinity" not in model["spec"]["template"]["spec"]  # one replica: nothing to pin
    assert "PodDisruptionBudget" not in single  # one replica: a budget could only block
    two = by_kind(render())  # the default: two replicas
    model = next(d for d in two["Deployment"] if d["metadata"]["name"] == "dk-driftkeeper")
    (term,) = model["spec"]["template"]["spec"]["affinity"]["podAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == model["spec"]["selector"]["matchLabels"]
    (budget,) = two["PodDisruptionBudget"]
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == model["spec"]["selector"]
    spread = by_kind(render(CHART / "ci" / "prometheus-source-values.yaml"))
    model = next(d for d in spread["Deployment"] if d["metadata"]["name"] == "dk-driftkeeper")
    assert "strategy" not in model["spec"]  # ReadWriteMany: the default rolling update
    assert "affinity" not in model["spec"]["template"]["spec"]
    assert spread["PodDisruptionBudget"][0]["spec"]["maxUnavailable"] == 1


def test_without_a_volume_the_default_policy_monitors_but_does_not_retrain() -> None:
    (policy,) = by_kind(render(extra=["--set", "model.persistence.enabled=false"]))[
        "DriftPolicy"]
    assert policy["spec"]["retraining"]["enabled"] is False
    assert "modelClaim" not in policy["spec"]["target"]


def test_network_policies() -> None:
    """The model API open on its port only (to anyone by default, or to the given peers
    plus this release's operator, simulator and test pod); no egress from the model pods
    or the Jobs; the simulator and the test pod reach only the model API and DNS."""
    policies = {p["metadata"]["name"]: p for p in by_kind(render())["NetworkPolicy"]}
    assert set(policies) == {"dk-driftkeeper-model", "dk-driftkeeper-retrain",
                             "dk-driftkeeper-operator", "dk-driftkeeper-simulator",
                             "dk-driftkeeper-test"}
    model = policies["dk-driftkeeper-model"]["spec"]
    assert model["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    assert model["egress"] == [] and model["policyTypes"] == ["Ingress", "Egress"]
    retrain = policies["dk-driftkeeper-retrain"]["spec"]
    assert retrain["ingress"] == [] and retrain["egress"] == []
    # The Job pods carry the labels the operator gives them (builders.COMMON_LABELS).
    from driftkeeper_operator.builders import COMMON_LABELS
    assert retrain["podSelector"]["matchLabels"].items() <= {
        **COMMON_LABELS, "app.kubernetes.io/component": "retrain"}.items()
    simulator = policies["dk-driftkeeper-simulator"]["spec"]
    assert simulator["egress"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]
    restricted = {p["metadata"]["name"]: p for p in by_kind(render(
        CHART / "ci" / "single-node-volume-values.yaml"))["NetworkPolicy"]}
    peers = restricted["dk-driftkeeper-model"]["spec"]["ingress"][0]["from"]
    namespaces = [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                  for p in peers if "namespaceSelector" in p]
    components = [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                  for p in peers if "podSelector" in p]
    assert namespaces == ["shop", "monitoring"]
    assert components == ["operator", "simulator", "test"]
    assert "NetworkPolicy" not in by_kind(render(extra=["--set", "networkPolicy.enabled=false"]))


def test_security_contexts_are_overridable_and_secure_by_default() -> None:
    docs = render(extra=["--set", "podSecurityContext.runAsUser=4242",
                         "--set", "securityContext.privileged=false"])
    for deployment in by_kind(docs)["Deployment"]:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == 4242
        for container in pod["containers"]:
            assert container["securityContext"]["privileged"] is False
            assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_operator_rules_are_the_raw_manifests_and_go_cluster_wide() -> None:
    raw = next(d for d in yaml.safe_load_all((ROOT / "k8s" / "operator-rbac.yaml").read_text())
               if d and d["kind"] == "Role")
    (role,) = by_kind(render())["Role"]
    assert role["rules"] == raw["rules"]
    wide = by_kind(render(CHART / "ci" / "cluster-wide-values.yaml"))
    assert "Role" not in wide and wide["ClusterRole"][0]["rules"] == raw["rules"]
    operator = next(d for d in wide["Deployment"]
                    if d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator")
    assert "--all-namespaces" in operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert wide["ClusterRoleBinding"][0]["subjects"][0]["namespace"] == NAMESPACE


@pytest.mark.parametrize("values", VALUES, ids=_ids)
def test_every_pod_runs_non_root_with_a_read_only_root(values: Path | None) -> None:
    for doc in render(values):
        spec = doc.get("spec", {})
        pod = spec.get("template", {}).get("spec") if doc["kind"] == "Deployment" else (
            spec if doc["kind"] == "Pod" else None)
        if pod is None:
            continue
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod.get("initContainers", []) + pod["containers"]:
            ctx = container["securityContext"]
            assert ctx == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                           "capabilities": {"drop": ["ALL"]}}, container["name"]
            assert "resources" in container and container["resources"]["limits"]["memory"]
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert doc["kind"] == "Pod" or "/tmp" in mounts  # the only writable path


def test_dashboard_configmap_for_the_grafana_sidecar() -> None:
    (cm,) = [c for c in by_kind(render())["ConfigMap"]
             if c["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Driftkeeper"}
    board = json.loads(cm["data"]["driftkeeper.json"])
    assert board == json.loads((CHART / "files" / "dashboard.json").read_text())
    assert board["uid"] == "driftkeeper" and board["panels"]
    assert cm["metadata"]["namespace"] == NAMESPACE  # kube-prometheus-stack searches ALL
    moved = by_kind(render(CHART / "ci" / "cluster-wide-values.yaml"))["ConfigMap"]
    assert moved[0]["metadata"]["namespace"] == "monitoring"


def test_simulator_and_the_prometheus_source() -> None:
    kinds = by_kind(render(CHART / "ci" / "kind-values.yaml"))
    simulator = next(d for d in kinds["Deployment"]
                     if d["metadata"]["labels"]["app.kubernetes.io/component"] == "simulator")
    args = simulator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "simulate" and "--scenario=concept" in args
    assert "--url=http://dk-driftkeeper:8080" in args
    service = next(s for s in kinds["Service"] if s["metadata"]["name"] == "dk-driftkeeper")
    assert service["spec"]["ports"][0]["nodePort"] == 30080
    policy = by_kind(render(CHART / "ci" / "prometheus-source-values.yaml"))["DriftPolicy"][0]
    assert policy["spec"]["target"]["prometheus"]["url"].startswith("http://kube-prometheus")


def test_bad_values_fail_at_install_with_the_field_named() -> None:
    args = [HELM, "template", RELEASE, str(CHART)]
    for bad, field in (("model.workers=0", "/model/workers"),
                       ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
                       ("simulator.scenario=weather", "/simulator/scenario"),
                       ("modle.replicas=2", "modle")):
        done = subprocess.run([*args, "--set", bad], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode != 0 and field in done.stderr, (bad, done.stderr)


FREE_FORM = {"resources", "spec", "labels", "annotations", "podAnnotations", "nodeSelector",
             "affinity", "podSecurityContext", "securityContext", "strategy"}


def _leaves(node: Any, prefix: str = "") -> list[str]:
    """Value paths down to the free-form maps (resources, the policy's spec, labels ...)."""
    if isinstance(node, dict) and node and prefix.rsplit(".", 1)[-1] not in FREE_FORM:
        return [leaf for key, value in node.items()
                for leaf in _leaves(value, f"{prefix}.{key}" if prefix else key)]
    return [prefix]


def test_every_value_is_documented_in_the_readme() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### Helm values"):]
    missing = [leaf for leaf in _leaves(values) if f"`{leaf}`" not in table]
    assert not missing, missing


def _first_model(*sets: str) -> tuple[list[str], list[dict[str, Any]], dict[str, Any]]:
    """The init container's args and mounts, and the pod's volumes, for these values."""
    (model,) = [d for d in render(extra=[a for s in sets for a in ("--set", s)])
                if d["kind"] == "Deployment"
                and d["metadata"]["labels"]["app.kubernetes.io/component"] == "model"]
    pod = model["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    return init["args"], init["volumeMounts"], {v["name"]: v for v in pod["volumes"]}


F = "model.firstModel."


@pytest.mark.parametrize(("sets", "args", "source"), [
    # A table in a ConfigMap, with every flag that describes it.
    ([F + "from.configMap=rents", F + "data=rents.csv", F + "target=rent",
      F + "task=regression", F + "categorical={zone,floor}", F + "drop={id}",
      F + "model=rf"],
     ["train", "--output", "/models", "--if-empty", "--data", "/import/rents.csv",
      "--keep-data", "--target", "rent", "--task", "regression", "--categorical", "zone",
      "floor", "--drop", "id", "--model", "rf"],
     {"configMap": {"name": "rents"}}),
    # A fitted model file and its table on another claim; the user's estimator factory.
    ([F + "from.claim=mine", F + "data=t/rents.csv", F + "target=rent",
      F + "modelFile=t/model.joblib"],
     ["train", "--output", "/models", "--if-empty", "--data", "/import/t/rents.csv",
      "--keep-data", "--target", "rent", "--model-file", "/import/t/model.joblib"],
     {"persistentVolumeClaim": {"claimName": "mine", "readOnly": True}}),
    ([F + "data=rents.csv", F + "target=rent", F + "estimator=shop.models:pricing"],
     ["train", "--output", "/models", "--if-empty", "--data", "/models/rents.csv",
      "--keep-data", "--target", "rent", "--estimator", "shop.models:pricing"], None),
    # A model directory trained elsewhere, with and without its table.
    ([F + "from.claim=mine", F + "modelDir=model", F + "data=rents.csv"],
     ["import", "--from", "/import/model", "--output", "/models", "--if-empty", "--data",
      "/import/rents.csv"],
     {"persistentVolumeClaim": {"claimName": "mine", "readOnly": True}}),
    ([F + "modelDir=upload/model"],
     ["import", "--from", "/models/upload/model", "--output", "/models", "--if-empty"], None),
], ids=["configmap-table", "claim-model-file", "volume-estimator", "claim-model-dir",
        "volume-model-dir"])
def test_the_first_model_comes_from_the_users_table_or_model(
        sets: list[str], args: list[str], source: dict[str, Any] | None) -> None:
    from driftkeeper.cli import build_parser

    rendered, mounts, volumes = _first_model(*sets)
    assert rendered == args
    parsed = build_parser().parse_args(rendered)  # the CLI takes what the chart renders
    assert parsed.command == args[0]
    imported = {m["name"]: m for m in mounts}.get("first-model-source")
    if source is None:
        assert imported is None and "first-model-source" not in volumes
    else:
        assert imported == {"name": "first-model-source", "mountPath": "/import",
                            "readOnly": True}
        assert {k: v for k, v in volumes["first-model-source"].items() if k != "name"} == source


@pytest.mark.parametrize(("sets", "message"), [
    ([F + "from.configMap=a", F + "from.claim=b"],
     "model.firstModel.from: configMap and claim exclude each other"),
    ([F + "target=rent"], "model.firstModel.target needs model.firstModel.data"),
    ([F + "modelFile=m.joblib"], "model.firstModel.modelFile needs model.firstModel.data"),
    ([F + "data=t.csv", F + "model=rf", F + "estimator=a:b"],
     "model.firstModel: model and estimator exclude each other"),
    ([F + "modelDir=m", F + "target=rent", F + "data=t.csv"],
     "model.firstModel.target cannot be combined with modelDir"),
    ([F + "data=a/../../etc/passwd"], "model.firstModel.data: \"a/../../etc/passwd\" goes "
     "through '..'"),
    ([F + "data=/etc/passwd"], "/model/firstModel/data"),
    ([F + "task=ranking", F + "data=t.csv"], "/model/firstModel/task"),
    ([F + "estimator=not a factory", F + "data=t.csv"], "/model/firstModel/estimator"),
    ([F + "target=--model-file=/x", F + "data=t.csv"], "/model/firstModel/target"),
    ([F + "drop={--no-base}", F + "data=t.csv"], "/model/firstModel/drop/0"),
])
def test_bad_first_model_values_fail_with_the_field_named(sets: list[str],
                                                          message: str) -> None:
    done = subprocess.run([HELM, "template", RELEASE, str(CHART),
                           *[a for s in sets for a in ("--set", s)]],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and message in done.stderr, done.stderr

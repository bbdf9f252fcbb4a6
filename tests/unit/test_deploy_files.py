"""The files users deploy with besides the chart: docker-compose, skaffold, kind and the
end-to-end script, parsed and checked for the fields that matter (no engine runs here)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from tools import TOOLS, tool

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROMETHEUS = yaml.safe_load((ROOT / "deploy" / "compose" / "prometheus" / "prometheus.yml")
                            .read_text())
CHART_VALUES = yaml.safe_load((ROOT / "charts" / "driftkeeper" / "values.yaml").read_text())


def test_compose_file_follows_the_compose_specification() -> None:
    schema_path = TOOLS / "schemas" / "compose_spec.json"
    if not schema_path.is_file():
        pytest.skip("the Compose schema is not cached (make test-tools)")
    schema = json.loads(schema_path.read_text())
    jsonschema.Draft201909Validator(schema).validate(COMPOSE)


def test_compose_runs_the_loop_and_its_observability() -> None:
    services = COMPOSE["services"]
    assert {"first-model", "model", "driver", "simulator", "prometheus", "grafana"} <= set(
        services)
    model, driver = services["model"], services["driver"]
    assert model["depends_on"]["first-model"]["condition"] == "service_completed_successfully"
    assert services["first-model"]["command"][-1] == "--if-empty"
    for name in ("first-model", "model", "driver", "simulator"):
        assert services[name]["read_only"] is True and services[name]["tmpfs"] == ["/tmp"]
    # The driver writes the policy file the service reads, and serves the policy metrics.
    served = model["command"][model["command"].index("--policy") + 1]
    pushed = driver["command"][driver["command"].index("--service-policy") + 1]
    assert served == pushed
    mounted = {v.split(":")[0]: v.split(":")[1] for v in driver["volumes"]}
    assert (ROOT / "k8s" / "examples" / "driftpolicy-diamonds.yaml").is_file()
    assert mounted["./k8s/examples/driftpolicy-diamonds.yaml"] == "/etc/driftkeeper/policy.yaml"
    port = driver["command"][driver["command"].index("--metrics-port") + 1]
    # Prometheus scrapes them as the chart's ServiceMonitors would name them.
    jobs = {j["job_name"]: j["static_configs"][0] for j in PROMETHEUS["scrape_configs"]}
    assert jobs["driftkeeper"]["targets"] == ["model:8080"]
    assert jobs["driftkeeper"]["labels"]["service"]
    assert jobs["driftkeeper-operator"]["targets"] == [f"driver:{port}"]
    assert PROMETHEUS["rule_files"] == ["alerts.yml"]
    # Grafana: provisioned from files, the chart's dashboard, no default admin password.
    grafana = services["grafana"]
    env = grafana["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    for volume in grafana["volumes"] + services["prometheus"]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).exists(), source
    board = ROOT / "deploy" / "compose" / "grafana" / "dashboards" / "driftkeeper.json"
    assert board.read_text() == (ROOT / "charts" / "driftkeeper" / "files" / "dashboard.json"
                                 ).read_text()
    source = yaml.safe_load((ROOT / "deploy" / "compose" / "grafana" / "provisioning" /
                             "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert source["url"] == "http://prometheus:9090" and source["isDefault"] is True


@pytest.mark.skipif(tool("promtool") is None, reason="promtool not installed")
def test_compose_prometheus_config_is_valid() -> None:
    done = subprocess.run([tool("promtool"), "check", "config",
                           str(ROOT / "deploy" / "compose" / "prometheus" / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_kind_and_skaffold_deploy_the_chart() -> None:
    kind = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    ports = {m["containerPort"] for m in kind["nodes"][0]["extraPortMappings"]}
    kind_values = yaml.safe_load((ROOT / "charts" / "driftkeeper" / "ci" / "kind-values.yaml")
                                 .read_text())
    assert kind_values["model"]["service"]["nodePort"] in ports
    e2e = (ROOT / "scripts" / "e2e-kind.sh").read_text()
    assert "grafana.service.nodePort=30300" in e2e and 30300 in ports
    skaffold = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    artifact = skaffold["build"]["artifacts"][0]
    assert artifact["image"] == CHART_VALUES["image"]["repository"]
    assert (ROOT / artifact["docker"]["dockerfile"]).is_file()
    (release,) = skaffold["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"] / "Chart.yaml").is_file()
    assert release["setValues"]["model.service.nodePort"] in ports
    assert set(release["setValueTemplates"]) == {"image.repository", "image.tag"}
    (dev,) = skaffold["profiles"]
    for values_file in dev["patches"][0]["value"]:
        assert (ROOT / values_file).is_file()


def test_e2e_script_is_sound_and_asserts_the_loop() -> None:
    script = ROOT / "scripts" / "e2e-kind.sh"
    assert subprocess.run(["bash", "-n", str(script)], timeout=30).returncode == 0
    shellcheck = tool("shellcheck") or str(Path(sys.executable).with_name("shellcheck"))
    scripts = [script, ROOT / "scripts" / "install-test-tools", ROOT / "scripts" /
               "generate-crd"]
    done = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout
    text = script.read_text()
    for step in (r"kind create cluster --config kind-config\.yaml",
                 r"kube-prometheus-stack prometheus-community/kube-prometheus-stack",
                 r"docker build", r"kind load docker-image", r"helm upgrade --install",
                 r"helm test", r"--scenario concept", r"wait --for=condition=complete",
                 r"lastRetrain\.outcome", r"== promoted", r"== Monitoring"):
        assert re.search(step, text), step

"""The product on a real Kubernetes node, here: the image built from the Dockerfile, `helm
install` with the default values, real pods, kubelet, the Job controller, a volume,
ConfigMap volume updates, and a Prometheus Operator that turns our ServiceMonitors and
PrometheusRule into scrapes and alerts.

One cluster (scripts/local-cluster) serves every scenario of this module, in order; the
machine is compared before it starts and after it stops. Needs root and `make test-tools`
(Go builds Kubernetes, apt-get brings containerd, runc and buildah); otherwise it skips."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from harness.cluster import wait_until
from harness.node import machine, monitoring
from harness.node.addons import image_ref
from harness.node.cluster import build_images, down, reclaim_stale, up
from harness.node.layout import Layout, missing
from tools import tool

# The first test also brings the cluster up (about 2 minutes, and the image's build when
# its inputs changed); the concept loop waits 5 minutes for its alert to fire.
pytestmark = [pytest.mark.slow, pytest.mark.node, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
RELEASE, NAMESPACE = "dk", "driftkeeper"
POLICY = f"{RELEASE}-driftkeeper"
PROMETHEUS_VERSION = "v3.16.0"


@dataclass
class Node:
    layout: Layout
    images: dict[str, Path]

    def run(self, *command: str, timeout: float = 120, check: bool = True,
            stdin: str | None = None) -> str:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              input=stdin,
                              env={"KUBECONFIG": str(self.layout.admin_kubeconfig),
                                   "PATH": "/usr/bin:/bin", "HOME": str(self.layout.root)})
        if check and done.returncode:
            raise AssertionError(f"{' '.join(command[:4])}...: {done.stderr[-3000:]}")
        return done.stdout

    def kubectl(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        return self.run(tool("kubectl"), "-n", NAMESPACE, *args, timeout=timeout, check=check)

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def helm(self, *args: str, timeout: float = 600) -> str:
        return self.run(tool("helm"), "-n", NAMESPACE, *args, timeout=timeout)

    def prometheus(self, path: str, **params: str) -> dict:
        answer = requests.get(monitoring.PROMETHEUS_URL + path, params=params, timeout=10)
        answer.raise_for_status()
        return answer.json()["data"]

    def model_pods(self) -> list[dict]:
        pods = self.get("pods", "-l", "app.kubernetes.io/component=model")["items"]
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    def in_pod(self, pod: str, path: str) -> dict:
        """GET the model service's ``path`` from inside its pod (the image's Python)."""
        script = ("import json, urllib.request; print(urllib.request.urlopen("
                  f"'http://127.0.0.1:8080{path}', timeout=10).read().decode())")
        return json.loads(self.kubectl("exec", pod, "-c", "model", "--", "python", "-c",
                                       script))

    def concept_rows(self, pod: str) -> float:
        """The pod's own count of labelled rows (``driftkeeper_window_rows_total{kind=
        "concept"}``), read from its /metrics."""
        script = ("import urllib.request; print(urllib.request.urlopen("
                  "'http://127.0.0.1:8080/metrics', timeout=10).read().decode())")
        text = self.kubectl("exec", pod, "-c", "model", "--", "python", "-c", script)
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("driftkeeper_window_rows_total{")
                   and 'kind="concept"' in line)

    def policy(self) -> dict:
        return self.get("driftpolicy", POLICY)

    def events(self) -> list[dict]:
        items = self.get("events", "--field-selector",
                         f"involvedObject.kind=DriftPolicy,involvedObject.name={POLICY}")
        return sorted(items["items"], key=lambda e: e.get("lastTimestamp") or
                      e.get("eventTime") or "")

    def reasons(self) -> list[str]:
        return [e["reason"] for e in self.events()]


def _install_values(node: Node) -> list[str]:
    """The default values but for the image, its pull policy and the storage class, and
    the label this cluster's Prometheus selects by (the chart sets none by default: which
    label a Prometheus selects is the user's choice)."""
    repository, _, tag = image_ref(node.images["driftkeeper"]).partition(":")
    release = monitoring.RELEASE_LABEL["release"]
    return ["--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
            "--set", "image.pullPolicy=Never",
            "--set", "model.persistence.storageClass=local",
            "--set", f"monitoring.serviceMonitor.labels.release={release}",
            "--set", f"monitoring.prometheusRule.labels.release={release}"]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    reason = missing() or (None if tool("helm") and tool("kubectl") else
                           "helm and kubectl missing (make test-tools)")
    if reason:
        pytest.skip(reason)
    layout = Layout(tmp_path_factory.mktemp("local-cluster"))
    images = build_images()
    reclaim_stale()  # a killed earlier run's cgroups are not this run's change
    before = machine.snapshot(layout.root)
    try:
        up(layout, images, tied_to_caller=True)
        monitoring.install(layout, images, PROMETHEUS_VERSION)
        started = time.monotonic()
        node = Node(layout, images)
        node.helm("install", RELEASE, str(ROOT / "charts" / "driftkeeper"),
                  "--create-namespace", "--wait", "--timeout", "6m", *_install_values(node))
        print(f"helm install until every pod was Ready: {time.monotonic() - started:.0f}s")
        yield node
    finally:
        down(layout)
        after = machine.snapshot(layout.root)
        assert machine.differences(before, after) == {}


def test_the_chart_runs_and_helm_test_passes(node: Node) -> None:
    pods = node.model_pods()
    assert len(pods) == 2
    for pod in pods:
        statuses = pod["status"]["containerStatuses"]
        assert sorted(c["name"] for c in statuses) == ["model", "monitor"], statuses
        assert all(c["ready"] for c in statuses)
        args = pod["spec"]["containers"][0]["args"]
        assert "--workers=2" in args, args
        # The monitor container counts and evaluates; the workers show its heartbeat.
        beat = node.in_pod(pod["metadata"]["name"], "/healthz")["monitor"]
        assert beat["ok"] and beat["serving"] == "v1", beat
    operator = node.get("pods", "-l", "app.kubernetes.io/component=operator")["items"]
    assert [all(c["ready"] for c in p["status"]["containerStatuses"]) for p in operator] == [
        True]
    # Both replicas serve the one first model: their init containers trained it once.
    versions = {node.in_pod(p["metadata"]["name"], "/reference")["model_version"]
                for p in pods}
    assert versions == {"v1"}
    assert "Phase:          Succeeded" in node.helm("test", RELEASE, "--timeout", "3m")
    # What only a pod shows: uid 10001 with no passwd entry, a read-only root filesystem,
    # and a HOME that can be written (the /tmp emptyDir).
    script = ("import os, pathlib, pwd, json\n"
              "try:\n    pwd.getpwuid(os.getuid()); named = True\n"
              "except KeyError:\n    named = False\n"
              "try:\n    pathlib.Path('/usr/local/probe').write_text('x'); root = 'written'\n"
              "except OSError as e:\n    root = e.strerror\n"
              "home = pathlib.Path(os.environ['HOME']) / '.probe'\n"
              "home.write_text('x'); home.unlink()\n"
              "print(json.dumps({'uid': os.getuid(), 'named': named, 'root': root}))")
    model = pods[0]["metadata"]["name"]
    for name, container in [(model, "model"), (model, "monitor"),
                            (operator[0]["metadata"]["name"], "operator")]:
        seen = json.loads(node.kubectl("exec", name, "-c", container, "--", "python", "-c",
                                       script))
        assert seen == {"uid": 10001, "named": False, "root": "Read-only file system"}, seen


def test_prometheus_scrapes_the_pods_and_loads_the_alerts(node: Node) -> None:
    def targets() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for target in node.prometheus("/api/v1/targets", state="active")["activeTargets"]:
            if target["health"] == "up":
                found.setdefault(target["scrapePool"], []).append(target["labels"]["pod"])
        return found

    pools = wait_until(lambda: (lambda t: t if len(t.get(
        f"serviceMonitor/{NAMESPACE}/{POLICY}/0", [])) == 2 and t.get(
        f"serviceMonitor/{NAMESPACE}/{POLICY}-operator/0") else None)(targets()),
        240, "both model pods and the operator up in Prometheus", interval=5)
    assert sorted(pools[f"serviceMonitor/{NAMESPACE}/{POLICY}/0"]) == sorted(
        p["metadata"]["name"] for p in node.model_pods())
    rules = {rule["name"] for group in node.prometheus("/api/v1/rules")["groups"]
             for rule in group["rules"]}
    assert {"DriftkeeperConceptDrift", "DriftkeeperDataDrift"} <= rules, rules
    series = node.prometheus("/api/v1/query",
                             query='driftkeeper_policy_phase{driftkeeper="operator"}')
    assert series["result"], "the operator's policy metrics are scraped"


def test_a_threshold_patch_reaches_the_pods_mounted_file(node: Node) -> None:
    """kubectl patch → the operator's ConfigMap → kubelet's ..data swap in the mounted
    file → the pods' next evaluation. The delays are printed for the README."""
    pod = node.model_pods()[0]["metadata"]["name"]
    started = time.monotonic()
    node.kubectl("patch", "driftpolicy", POLICY, "--type=merge", "-p",
                 json.dumps({"spec": {"data": {"threshold": 0.31}}}))
    configmap = f"driftpolicy-{POLICY}"
    wait_until(lambda: "0.31" in node.get("configmap", configmap)["data"]["policy.yaml"],
               60, "the ConfigMap")
    at_configmap = time.monotonic() - started
    wait_until(lambda: "0.31" in node.kubectl("exec", pod, "-c", "model", "--", "cat",
                                               "/etc/driftkeeper/policy.yaml"),
               180, "the mounted file", interval=1)
    at_file = time.monotonic() - started
    wait_until(lambda: node.in_pod(pod, "/drift")["data"]["mean_threshold"] == 0.31, 120,
               "the pod's evaluation", interval=1)
    at_evaluation = time.monotonic() - started
    print(f"threshold patch: ConfigMap {at_configmap:.1f}s, mounted file {at_file:.1f}s, "
          f"evaluation {at_evaluation:.1f}s")


def test_a_concept_shift_is_retrained_promoted_and_cleared(node: Node) -> None:
    """The chart's simulator shifts the concept. Retraining is held back first, so that
    DriftkeeperConceptDrift (for: 5m) fires (retraining suspended, as for maintenance);
    then released: exactly one Job, run by the
    real Job controller on the volume, survives the operator's own deletion, promotes v2
    everywhere, and the drift and the alert clear."""
    node.kubectl("patch", "driftpolicy", POLICY, "--type=merge", "-p",
                 json.dumps({"spec": {"retraining": {"suspend": True}}}))
    node.helm("upgrade", RELEASE, str(ROOT / "charts" / "driftkeeper"), "--reuse-values",
              "--set", "simulator.enabled=true", "--set", "simulator.scenario=concept",
              "--set", "simulator.rate=40", "--set", "simulator.duration=100000",
              "--set", "simulator.shiftAfter=20",
              "--wait", "--timeout", "3m")
    wait_until(lambda: node.policy().get("status", {}).get("concept", {}).get("drift"),
               420, "a fleet verdict of concept drift", interval=5)
    status = node.policy()["status"]
    assert status["endpoints"] == 2, status  # the verdict is the fleet's, both replicas
    alert = wait_until(lambda: [a for a in node.prometheus("/api/v1/alerts")["alerts"]
                                if a["labels"]["alertname"] == "DriftkeeperConceptDrift"
                                and a["state"] == "firing"], 480,
                       "DriftkeeperConceptDrift firing", interval=10)
    assert alert[0]["labels"]["policy"] == POLICY

    node.kubectl("patch", "driftpolicy", POLICY, "--type=merge", "-p",
                 json.dumps({"spec": {"retraining": {"suspend": False}}}))
    job = wait_until(lambda: node.get("jobs")["items"], 300, "a retraining Job",
                     interval=2)[0]
    # The operator dies while its Job runs: its successor adopts the Job, makes no other.
    node.kubectl("delete", "pod", "-l", "app.kubernetes.io/component=operator",
                 "--wait=false")
    wait_until(lambda: "ModelPromoted" in node.reasons(), 600, "ModelPromoted", interval=5)
    assert [j["metadata"]["name"] for j in node.get("jobs")["items"]] == [
        job["metadata"]["name"]]
    finished = node.get("job", job["metadata"]["name"])
    assert finished["status"].get("succeeded") == 1
    claim = finished["spec"]["template"]["spec"]["volumes"]
    assert any(v.get("persistentVolumeClaim") for v in claim)
    wait_until(lambda: {node.in_pod(p["metadata"]["name"], "/reference")["model_version"]
                        for p in node.model_pods()} == {"v2"}, 180,
               "every pod serving v2", interval=3)
    # The reload happened in place: no probe failed, no container restarted (serving or
    # monitoring, in either replica).
    restarts = {(p["metadata"]["name"], c["name"]): c["restartCount"]
                for p in node.model_pods() for c in p["status"]["containerStatuses"]}
    assert len(restarts) == 4 and set(restarts.values()) == {0}, restarts
    wait_until(lambda: "DriftCleared" in node.reasons()[node.reasons().index(
        "ModelPromoted"):], 600, "DriftCleared after the promotion", interval=5)
    reasons = node.reasons()
    for reason in ("DriftDetected", "RetrainStarted", "RetrainJobCreated", "ModelPromoted",
                   "DriftCleared"):
        assert reason in reasons, reasons
    assert reasons.count("RetrainJobCreated") == 1, reasons
    printed = node.kubectl("get", "dp")
    assert POLICY in printed and "v2" in printed, printed
    print(printed)
    wait_until(lambda: not [a for a in node.prometheus("/api/v1/alerts")["alerts"]
                            if a["labels"]["alertname"] == "DriftkeeperConceptDrift"],
               300, "DriftkeeperConceptDrift resolved", interval=10)


def test_a_policy_reads_its_fleet_window_from_prometheus(node: Node) -> None:
    """spec.target.prometheus: the counters of both replicas, as the cluster's Prometheus
    scraped them through our ServiceMonitor (retraining off: one model, one retrainer)."""
    target = dict(node.policy()["spec"]["target"])
    target["prometheus"] = {"url": f"http://prometheus-operated.{monitoring.NAMESPACE}:9090"}
    document = {"apiVersion": "driftkeeper.io/v1alpha1", "kind": "DriftPolicy",
                "metadata": {"name": "from-prometheus", "namespace": NAMESPACE},
                "spec": {"target": target, "retraining": {"enabled": False}}}
    node.run(tool("kubectl"), "apply", "-f", "/dev/stdin", timeout=60,
             stdin=yaml.safe_dump(document))
    status = wait_until(lambda: (lambda s: s if (s.get("data") or {}).get("samples", 0) >= 200
                                 else None)(node.get("driftpolicy", "from-prometheus")
                                            .get("status", {})),
                        180, "a fleet window from Prometheus", interval=5)
    assert status["endpoints"] == 2, status
    assert status["modelVersion"] == "v2", status
    node.kubectl("delete", "driftpolicy", "from-prometheus")


def test_a_deleted_model_pod_is_replaced_and_counted_once(node: Node) -> None:
    """A replica's counters restart from zero in its successor: the fleet window takes
    the reset, and the labelled rows counted never go backwards or jump."""
    before = node.policy()["status"]
    victim = node.model_pods()[0]["metadata"]["name"]
    started = time.monotonic()
    node.kubectl("delete", "pod", victim, "--wait=true", timeout=120)
    stopped = time.monotonic() - started
    # gunicorn takes SIGTERM and stops well within the 30 s grace period (no SIGKILL).
    assert stopped < 20, f"the pod took {stopped:.0f}s to stop"
    wait_until(lambda: len([p for p in node.model_pods() if all(
        c["ready"] for c in p["status"].get("containerStatuses", []))]) == 2
        and victim not in [p["metadata"]["name"] for p in node.model_pods()],
        240, "a Ready replacement", interval=2)
    successor = next(p["metadata"]["name"] for p in node.model_pods()
                     if p["metadata"]["name"] not in before["engine"]["labels"]["seen"])

    def read_over_both_replicas() -> dict | None:
        """The status once one tick has read both current replicas. (An evaluation that
        merely differs from ``before`` may be one taken while the victim still answered.)"""
        status = node.policy()["status"]
        seen = status.get("engine", {}).get("labels", {}).get("seen", {})
        current = {p["metadata"]["name"] for p in node.model_pods()}
        latest = max((s[2] for s in seen.values()), default=None)
        if (status.get("endpoints") == 2 and current <= set(seen)
                and all(seen[r][2] == latest for r in current)):
            return status
        return None

    after = wait_until(read_over_both_replicas, 120, "a tick over both replicas again",
                       interval=3)
    assert after.get("lastEvaluation") != before.get("lastEvaluation"), (before, after)
    # The operator's label tally (status.engine.labels): one entry per replica. The victim
    # keeps its last count (neither lost nor counted again if it came back); its successor
    # is a new series, read from its own zero: never more than it counted itself.
    seen = after["engine"]["labels"]["seen"]
    assert victim in seen, seen
    assert seen[victim][1] >= before["engine"]["labels"]["seen"][victim][1], (before, seen)
    assert seen[successor][0] not in {seen[r][0] for r in seen if r != successor}, seen
    assert 0 <= seen[successor][1] <= node.concept_rows(successor), seen
    # Outside a drift episode nothing is fresh: the replacement's rows are not new labels.
    if not after.get("concept", {}).get("drift"):
        assert after["engine"]["labels"]["fresh"] == 0, after["engine"]
    log = node.kubectl("logs", "-l", "app.kubernetes.io/component=operator", "--tail=400")
    assert "Traceback" not in log, log[-3000:]


def test_helm_upgrade_rolls_the_pods_and_uninstall_keeps_the_volume(node: Node) -> None:
    names = {p["metadata"]["name"] for p in node.model_pods()}
    node.helm("upgrade", RELEASE, str(ROOT / "charts" / "driftkeeper"), "--reuse-values",
              "--set", "model.threads=3", "--wait", "--timeout", "5m")
    pods = node.model_pods()
    assert names.isdisjoint({p["metadata"]["name"] for p in pods})
    assert all("--threads=3" in p["spec"]["containers"][0]["args"] for p in pods)
    node.helm("uninstall", RELEASE, "--wait", "--timeout", "3m")

    def left() -> list[str]:
        objects = yaml.safe_load(node.kubectl("get", "all,driftpolicy,configmap,job",
                                              "-o", "yaml"))["items"]
        return [f"{o['kind']}/{o['metadata']['name']}" for o in objects
                if o["metadata"]["name"] != "kube-root-ca.crt"]

    # Pods end within their grace period; the Job goes with its DriftPolicy (its owner).
    wait_until(lambda: not left(), 120, "every object of the release gone", interval=3)
    # The model volume's claim is kept (helm.sh/resource-policy: keep): models survive.
    claims = node.get("pvc")["items"]
    assert [c["metadata"]["name"] for c in claims] == [f"{POLICY}-models"]


def test_a_users_table_from_a_configmap_is_served_and_kept_for_retrains(
        node: Node, tmp_path: Path) -> None:
    """Issue 19: `helm install` with the user's table in a ConfigMap (scikit-learn's
    diabetes). The init container infers the schema and trains on it, the service answers
    for the table's columns, and the table is kept on the model volume, where a retraining
    Job (which mounts only that volume) finds it. Runs after the release above is gone, in
    a namespace of its own."""
    from sklearn.datasets import load_diabetes

    namespace, release = "tables", "tables"
    frame = load_diabetes(as_frame=True, scaled=False).frame
    csv = tmp_path / "diabetes.csv"
    frame.to_csv(csv, index=False)
    kubectl = tool("kubectl")
    node.run(kubectl, "create", "namespace", namespace)
    try:
        node.run(kubectl, "-n", namespace, "create", "configmap", "diabetes",
                 f"--from-file=diabetes.csv={csv}")
        node.run(tool("helm"), "-n", namespace, "install", release,
                 str(ROOT / "charts" / "driftkeeper"), "--wait", "--timeout", "6m",
                 *_install_values(node), "--set", "model.replicas=1",
                 "--set", "operator.enabled=false", "--set", "policy.create=false",
                 "--set", "model.firstModel.from.configMap=diabetes",
                 "--set", "model.firstModel.data=diabetes.csv",
                 "--set", "model.firstModel.target=target",
                 "--set", "model.firstModel.categorical={sex}", timeout=600)
        pods = json.loads(node.run(kubectl, "-n", namespace, "get", "pods", "-l",
                                   "app.kubernetes.io/component=model", "-o", "json"))
        (pod,) = [p["metadata"]["name"] for p in pods["items"]]
        row = frame.drop(columns="target").iloc[0].to_dict()
        script = (
            "import json, os, urllib.request\n"
            "get = lambda p: json.load(urllib.request.urlopen('http://127.0.0.1:8080' + p))\n"
            "req = urllib.request.Request('http://127.0.0.1:8080/predict', method='POST',"
            f" data={json.dumps(row).encode()!r}, headers={{'Content-Type': "
            "'application/json'})\n"
            "meta = json.load(open('/models/current/metadata.json'))\n"
            "print(json.dumps({'schema': get('/schema')['schema'],"
            " 'predict': json.load(urllib.request.urlopen(req)),"
            " 'data': meta['training']['data'],"
            " 'kept': os.path.isfile(meta['training']['data'])}))")
        found = json.loads(node.run(kubectl, "-n", namespace, "exec", pod, "-c", "model",
                                    "--", "python", "-c", script))
        assert found["schema"]["target"]["name"] == "target"
        features = {f["name"]: f["kind"] for f in found["schema"]["features"]}
        assert list(features) == [c for c in frame.columns if c != "target"]
        assert features["sex"] == "categorical"
        assert isinstance(found["predict"]["prediction"], float)
        assert found["data"].startswith("/models/data/diabetes-") and found["kept"]
    finally:
        node.run(tool("helm"), "-n", namespace, "uninstall", release, "--wait",
                 "--timeout", "3m", check=False)
        node.run(kubectl, "delete", "namespace", namespace, "--wait", "--timeout", "3m",
                 check=False, timeout=240)

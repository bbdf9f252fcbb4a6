"""What only a real Kubernetes API server proves: the CRD's structural schema and CEL rule
enforced by the server itself, printer columns, the status subresource, RBAC (a missing
verb is caught), and the Helm chart installed, upgraded and uninstalled.

The server is a real kube-apiserver and etcd built from the Go modules
(scripts/install-control-plane), started once per session (conftest.control_plane)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness.cluster import GROUP, PLURAL, VERSION, Cluster, wait_until
from policy_cases import BAD, GOOD
from service_process import stop_process
from tools import tool

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXAMPLES = sorted((ROOT / "k8s" / "examples").glob("driftpolicy-*.yaml"))


@pytest.fixture
def admin(control_plane) -> Cluster:
    return Cluster(control_plane.kubeconfig, "apiserver", control_plane)


def _namespace(admin: Cluster) -> str:
    return admin.namespace(f"t-{uuid.uuid4().hex[:8]}")


def _policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DriftPolicy",
            "metadata": {"name": name}, "spec": spec}


def _dry_run(admin: Cluster, namespace: str, document: dict[str, Any]) -> str | None:
    """None if the server accepts the policy, else its message."""
    try:
        admin.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                     document, dry_run="All")
    except ApiException as exc:
        refused = exc
    else:
        return None
    assert refused.status == 422, refused.body  # invalid, not any other failure
    return refused.body


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_server_accepts_the_examples(admin: Cluster, path: Path) -> None:
    assert _dry_run(admin, _namespace(admin), yaml.safe_load(path.read_text())) is None


def test_the_server_accepts_good_and_rejects_bad_policies(admin: Cluster) -> None:
    namespace = _namespace(admin)
    for spec in GOOD:
        assert _dry_run(admin, namespace, _policy("good", spec)) is None, spec
    messages = {}
    for spec in BAD:
        message = _dry_run(admin, namespace, _policy("bad", spec))
        assert message is not None, f"the server accepted {spec}"
        messages[str(spec)] = message
    # The server names the field, including for the CEL rule and a threshold that is
    # neither a number >= 0 nor "auto".
    assert "minSamples must not exceed size" in messages[str(
        {"window": {"size": 100, "minSamples": 500}})]
    assert "spec.concept.threshold" in messages[str({"concept": {"threshold": "aut0"}})]
    print("\n".join(f"{k}: {v[:300]}" for k, v in messages.items()))


def test_status_is_a_subresource_and_generation_moves_with_the_spec(admin: Cluster) -> None:
    namespace = _namespace(admin)
    created = admin.custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _policy("p", {"target": {"service": "m"}}))
    assert created["metadata"]["generation"] == 1
    # Defaults are filled by the server, from the same schema as the parser's.
    assert created["spec"]["evaluation"]["interval"] == "5s"
    admin.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "p",
                                                {"status": {"phase": "Ignored"}})
    admin.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "p", {"status": {
            "phase": "Monitoring", "modelVersion": "v3", "data": {"score": 0.04},
            "concept": {"score": 0.12}, "unknownField": 1}})
    policy = admin.policy(namespace, "p")
    assert policy["status"]["phase"] == "Monitoring"  # not "Ignored": the main resource
    assert "unknownField" not in policy["status"]  # pruned by the status schema
    assert policy["metadata"]["generation"] == 1  # status writes are not spec changes
    admin.patch_policy(namespace, "p", {"window": {"size": 500}})
    assert admin.policy(namespace, "p")["metadata"]["generation"] == 2


@pytest.mark.skipif(tool("kubectl") is None, reason="kubectl not installed (make test-tools)")
def test_kubectl_get_dp_shows_the_printer_columns(admin: Cluster) -> None:
    namespace = _namespace(admin)
    admin.create_policy(namespace, "diamonds", {"target": {"service": "diamonds"}})
    admin.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "diamonds", {"status": {
            "phase": "Cooldown", "modelVersion": "v2", "data": {"score": 0.021834},
            "concept": {"score": 0.012791},
            "lastRetrain": {"finishedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                        time.gmtime())}}})
    done = subprocess.run([tool("kubectl"), "--kubeconfig", str(admin.kubeconfig), "-n",
                           namespace, "get", "dp"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.split() == ["NAME", "PHASE", "DATA", "CONCEPT", "MODEL", "LAST", "RETRAIN",
                              "AGE"]
    assert row.split()[:5] == ["diamonds", "Cooldown", "0.021834", "0.012791", "v2"]
    print(done.stdout)


def _run_operator(admin: Cluster, namespace: str, kubeconfig: Path, log: Path
                  ) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(BIN / "driftkeeper"), "operator", "--namespace", namespace],
            env={"PATH": "/usr/bin:/bin", "KUBECONFIG": str(kubeconfig),
                 "DRIFTKEEPER_IMAGE": "driftkeeper:test", "HOME": str(log.parent)},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def test_the_charts_rbac_is_needed_verb_by_verb(admin: Cluster, tmp_path: Path) -> None:
    """With the chart's Role the operator writes the status; without one verb of it
    (patch on driftpolicies/status) the server refuses and nothing is written."""
    results = {}
    for drop in (None, ("driftpolicies/status", "patch")):
        namespace = _namespace(admin)
        kubeconfig = admin.operator_kubeconfig(namespace, tmp_path, drop=drop)
        admin.create_policy(namespace, "diamonds", {"target": {"service": "none"}})
        log = tmp_path / f"operator-{namespace}.log"
        operator = _run_operator(admin, namespace, kubeconfig, log)
        try:
            if drop is None:
                wait_until(lambda ns=namespace: (admin.policy(ns, "diamonds").get("status")
                                                 or {}).get("phase"), 60, "a status")
            else:
                wait_until(lambda lg=log: "Forbidden" in lg.read_text() or
                           "forbidden" in lg.read_text(), 60, "the server to refuse")
        finally:
            stop_process(operator)
        results[drop] = admin.policy(namespace, "diamonds").get("status")
    assert results[None]["phase"] == "InsufficientData"  # no replicas yet: no verdict
    assert results[("driftpolicies/status", "patch")] is None


@pytest.mark.skipif(tool("helm") is None, reason="helm not installed (make test-tools)")
def test_helm_installs_upgrades_and_uninstalls_the_chart(admin: Cluster, tmp_path: Path
                                                         ) -> None:
    """Install, upgrade and uninstall with the operator running (as the chart's
    ServiceAccount, with the chart's Role): the policy never carries a finalizer, so
    `helm uninstall`, which removes the operator's RBAC and Deployment in the same pass,
    leaves no DriftPolicy stuck; a finalizer left by an older operator is removed."""
    namespace = _namespace(admin)
    helm = [tool("helm"), "--kubeconfig", str(admin.kubeconfig), "--namespace", namespace]

    def run(*args: str) -> str:
        done = subprocess.run([*helm, *args], capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("install", "dk", str(ROOT / "charts" / "driftkeeper"))
    # Every object the chart renders is in the server, the monitoring ones included (the
    # prometheus-operator CRDs are installed), and the default DriftPolicy exists.
    manifest = [d for d in yaml.safe_load_all(run("get", "manifest", "dk")) if d]
    kinds = sorted(d["kind"] for d in manifest)
    assert {"Deployment", "Service", "PersistentVolumeClaim", "ServiceAccount", "Role",
            "RoleBinding", "ConfigMap", "DriftPolicy", "ServiceMonitor",
            "PrometheusRule", "NetworkPolicy"} <= set(kinds)
    policy = admin.policy(namespace, "dk-driftkeeper")
    assert policy["spec"]["target"]["service"] == "dk-driftkeeper"
    monitors = admin.custom.list_namespaced_custom_object("monitoring.coreos.com", "v1",
                                                          namespace, "servicemonitors")
    assert len(monitors["items"]) == 2

    # The operator runs as the chart made it: its ServiceAccount, its Role.
    token = admin.core.create_namespaced_service_account_token(
        "dk-driftkeeper-operator", namespace, {"spec": {"expirationSeconds": 3600}}).status.token
    kubeconfig = admin.control_plane.token_kubeconfig(tmp_path / "operator.kubeconfig", token,
                                                      namespace)
    log = tmp_path / "operator.log"
    operator = _run_operator(admin, namespace, kubeconfig, log)
    try:
        wait_until(lambda: (admin.policy(namespace, "dk-driftkeeper").get("status")
                            or {}).get("phase"), 60, "the operator's status")
        assert not admin.policy(namespace, "dk-driftkeeper")["metadata"].get("finalizers")
        # An older operator's finalizer (its daemon needed one) is removed.
        admin.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "dk-driftkeeper",
            {"metadata": {"finalizers": ["driftkeeper.io/finalizer"]}})
        wait_until(lambda: not admin.policy(namespace, "dk-driftkeeper")["metadata"].get(
            "finalizers"), 60, "the old finalizer to go")

        # An upgrade changes what it should.
        run("upgrade", "dk", str(ROOT / "charts" / "driftkeeper"), "--set", "model.replicas=2")
        deployments = client.AppsV1Api(admin.api)
        model = deployments.read_namespaced_deployment("dk-driftkeeper", namespace)
        assert model.spec.replicas == 2
        budgets = client.PolicyV1Api(admin.api).list_namespaced_pod_disruption_budget(namespace)
        assert [b.metadata.name for b in budgets.items] == ["dk-driftkeeper"]

        # Uninstalled while the operator runs: nothing is left waiting for it.
        run("uninstall", "dk")
        wait_until(lambda: admin.policy(namespace, "dk-driftkeeper") is None, 30,
                   "the DriftPolicy to go")
        assert not deployments.list_namespaced_deployment(namespace).items
        assert operator.poll() is None  # it stayed up: it merely lost its permissions
    finally:
        stop_process(operator)
    # The model volume's claim is kept on purpose: it holds the models and the labels.
    claims = admin.core.list_namespaced_persistent_volume_claim(namespace).items
    assert [c.metadata.name for c in claims] == ["dk-driftkeeper-models"]


@pytest.mark.skipif(tool("kubectl") is None, reason="kubectl not installed (make test-tools)")
def test_a_user_who_may_only_edit_driftpolicies_gains_nothing(
        admin: Cluster, model_dir: Path, tmp_path: Path) -> None:
    """The security model, end to end on a real API server with the chart's RBAC: a user
    allowed only DriftPolicies can do nothing else themselves (kubectl auth can-i), and
    cannot make the operator do it for them: a policy of theirs asking for another image,
    ServiceAccount or claim is Invalid, with an event, and no Job is made."""
    from harness.rig import CLAIM, SERVICE, operator_rig, policy_spec

    with operator_rig(admin, model_dir, tmp_path) as rig:
        ns = rig.namespace
        rbac = client.RbacAuthorizationV1Api(admin.api)
        rbac.create_namespaced_role(ns, {
            "metadata": {"name": "policy-editor"},
            "rules": [{"apiGroups": [GROUP], "resources": [PLURAL],
                       "verbs": ["get", "list", "watch", "create", "update", "patch",
                                 "delete"]}]})
        rbac.create_namespaced_role_binding(ns, {
            "metadata": {"name": "policy-editor"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": "policy-editor"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                          "name": "alice"}]})

        def can(verb: str, resource: str, *more: str) -> str:
            done = subprocess.run([tool("kubectl"), "--kubeconfig", str(admin.kubeconfig),
                                   "-n", ns, "auth", "can-i", verb, resource, *more,
                                   "--as=alice"], capture_output=True, text=True, timeout=60)
            return done.stdout.strip()

        assert can("create", "driftpolicies.driftkeeper.io") == "yes"
        for verb, resource in [("create", "pods"), ("create", "jobs.batch"),
                               ("create", "cronjobs.batch"), ("patch", "deployments.apps"),
                               ("get", "secrets"), ("create", "serviceaccounts/token"),
                               ("impersonate", "serviceaccounts"), ("create", "rolebindings"),
                               ("patch", "configmaps"), ("create", "pods/exec")]:
            assert can(verb, resource) == "no", (verb, resource)
        # Nor write the status the operator reports (phase, verdicts, the engine's memory).
        assert can("patch", "driftpolicies.driftkeeper.io", "--subresource=status") == "no"

        # As alice (impersonated), through the operator: refused, no Job.
        as_alice = client.ApiClient(admin.api.configuration)
        as_alice.set_default_header("Impersonate-User", "alice")
        alice = client.CustomObjectsApi(as_alice)
        asks = {"image": ({"job": {"image": "attacker/miner:latest"}}, {}),
                "account": ({"job": {"serviceAccountName": "default"}}, {}),
                "claim": ({}, {"modelClaim": "another-apps-data"})}
        for name, (retraining, target) in asks.items():
            spec = policy_spec(target={"service": SERVICE, "modelClaim": CLAIM, **target})
            spec["retraining"] = {**spec["retraining"], **retraining}
            alice.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "DriftPolicy",
                "metadata": {"name": name}, "spec": spec})
        for name in asks:
            wait_until(lambda n=name: (admin.policy(ns, n).get("status") or {}).get("phase")
                       == "Invalid", 60, f"policy {name} Invalid")
            assert "InvalidPolicy" in admin.reasons(ns, name)
        time.sleep(5.0)  # several operator ticks
        assert admin.jobs(ns) == []
        assert "Traceback" not in rig.operator_log(), rig.operator_log()[-4000:]

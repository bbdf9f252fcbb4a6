"""A Kubernetes API for tests, and what the tests do with it.

``kmock_cluster`` starts KMock's emulator (``emulator.py``) as a process on 127.0.0.1 and
writes a kubeconfig for it; the ``cluster`` fixture (conftest) gives each test the emulator
and a real kube-apiserver (``apiserver.py``) in turn. Everything else talks to the API
through a kubeconfig only, with the ``kubernetes`` client, as the operator does. On a real
API server the operator authenticates as the chart's ServiceAccount, with the chart's RBAC.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client, config, utils
from kubernetes.client.exceptions import ApiException

from service_process import free_port, stop_process
from tools import tool

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "k8s" / "crds" / "driftpolicies.driftkeeper.io.yaml"
CHART = ROOT / "charts" / "driftkeeper"
RELEASE = "dk"


def chart_rbac(namespace: str) -> list[dict[str, Any]]:
    """The chart's operator ServiceAccount, Role and RoleBinding, rendered for a namespace."""
    helm = tool("helm")
    if helm is None:
        raise RuntimeError("helm is needed to render the chart's RBAC (make test-tools)")
    done = subprocess.run([helm, "template", RELEASE, str(CHART), "--namespace", namespace,
                           "--show-only", "templates/operator-rbac.yaml"],
                          capture_output=True, text=True, check=True, timeout=60)
    return [d for d in yaml.safe_load_all(done.stdout) if d]
GROUP, VERSION, PLURAL = "driftkeeper.io", "v1alpha1", "driftpolicies"

T = TypeVar("T")


@dataclass
class Cluster:
    """An API server reachable through ``kubeconfig``, with clients for the tests."""

    kubeconfig: Path
    backend: str  # "kmock", "apiserver" or "external"
    control_plane: Any = None  # the ControlPlane, on the "apiserver" backend

    def __post_init__(self) -> None:
        self.api = config.new_client_from_config(str(self.kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.discovery = client.DiscoveryV1Api(self.api)

    # -- the operator's identity --------------------------------------------------------------

    def operator_kubeconfig(self, namespace: str, directory: Path,
                            drop: tuple[str, str] | None = None) -> Path:
        """What the operator authenticates with. On a real API server: a token of the
        chart's operator ServiceAccount, bound to the chart's own Role (rendered by helm) in
        ``namespace``; ``drop`` (resource, verb) removes one permission, to show it is
        needed. The emulator checks nothing: the test's own kubeconfig."""
        if self.control_plane is None:
            return self.kubeconfig
        objects = chart_rbac(namespace)
        for obj in objects:
            if drop and obj["kind"] == "Role":
                for rule in obj["rules"]:
                    if drop[0] in rule["resources"]:
                        rule["verbs"] = [v for v in rule["verbs"] if v != drop[1]]
                obj["rules"] = [r for r in obj["rules"] if r["verbs"]]
            utils.create_from_dict(self.api, obj, namespace=namespace)
        account = next(o for o in objects if o["kind"] == "ServiceAccount")
        token = self.core.create_namespaced_service_account_token(
            account["metadata"]["name"], namespace,
            {"spec": {"expirationSeconds": 3600}}).status.token
        return self.control_plane.token_kubeconfig(
            directory / f"operator-{namespace}.kubeconfig", token, namespace)

    # -- namespaces and policies -----------------------------------------------------------

    def namespace(self, name: str) -> str:
        with contextlib.suppress(ApiException):  # exists already (or the emulator: no need)
            self.core.create_namespace({"metadata": {"name": name}})
        return name

    def create_policy(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL,
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DriftPolicy",
             "metadata": {"name": name}, "spec": spec})

    def patch_policy(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                   {"spec": spec})

    def policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                            name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def delete_policy(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    # -- what the operator made --------------------------------------------------------------

    def config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.api.sanitize_for_serialization(
                self.core.read_namespaced_config_map(name, namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def jobs(self, namespace: str) -> list[dict[str, Any]]:
        items = self.api.sanitize_for_serialization(
            self.batch.list_namespaced_job(namespace)).get("items", [])
        return sorted(items, key=lambda j: j["metadata"]["creationTimestamp"])

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        items = self.api.sanitize_for_serialization(
            self.core.list_namespaced_event(namespace)).get("items", [])
        return [e for e in items if (e.get("involvedObject") or {}).get("name") == name]

    def reasons(self, namespace: str, name: str) -> list[str]:
        return [e["reason"] for e in self.events(namespace, name)]

    # -- the model Deployment ------------------------------------------------------------------

    def model_deployment(self, namespace: str, name: str, claims: dict[str, str],
                         access_modes: list[str] | None = None) -> None:
        """The model Deployment as the operator reads it: which claims its pods mount and
        where (nothing runs it here: the replicas are local processes). With
        ``access_modes`` the claims are created too (their access modes decide whether a
        Job must run beside a model pod)."""
        labels = {"app.kubernetes.io/name": name}
        volumes = [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": claim}}
                   for i, claim in enumerate(claims)]
        mounts = [{"name": f"v{i}", "mountPath": path}
                  for i, path in enumerate(claims.values())]
        client.AppsV1Api(self.api).create_namespaced_deployment(namespace, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "volumes": volumes,
                         "containers": [{"name": "model", "image": "driftkeeper:test",
                                         "volumeMounts": mounts}]}}}})
        for claim in claims if access_modes else []:
            self.core.create_namespaced_persistent_volume_claim(namespace, {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim},
                "spec": {"accessModes": access_modes,
                         "resources": {"requests": {"storage": "1Gi"}}}})

    # -- the model Service's replicas -----------------------------------------------------------

    def endpoint_slice(self, namespace: str, service: str, replica: str, port: int,
                       ready: bool = True) -> None:
        """One replica of ``service`` on this host at ``port`` (a slice per replica: the
        replicas here listen on different ports of one host). A real API server refuses
        loopback IPs in EndpointSlices: there the replica is a name that the operator's
        proxy (``loopback_proxy.py``) sends to 127.0.0.1."""
        loopback_ok = self.backend == "kmock"
        self.discovery.create_namespaced_endpoint_slice(namespace, {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service}-{replica}",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4" if loopback_ok else "FQDN",
            "endpoints": [{"addresses": ["127.0.0.1" if loopback_ok
                                         else f"{replica}.replicas.test"],
                           "conditions": {"ready": ready},
                           "targetRef": {"kind": "Pod", "name": replica,
                                         "namespace": namespace}}],
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}]})


def wait_until(probe: Callable[[], T], timeout: float, what: str,
               interval: float = 0.5) -> T:
    """Poll ``probe`` until it returns something truthy; fail saying ``what`` we waited for."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}"[
        :4000])


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": server}}],
        "users": [{"name": "test", "user": {"token": "test"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test",
                                                  "namespace": "default"}}]}))
    return path


@contextlib.contextmanager
def kmock_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """KMock's emulator in its own process, with the DriftPolicy CRD declared."""
    port = free_port()
    log = tmp_path / "apiserver.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("emulator.py")), "--port", str(port),
             "--crd", str(CRD)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: process.poll() is not None or "http://" in log.read_text(), 30,
                   "the emulator to listen")
        assert process.poll() is None, log.read_text()
        yield Cluster(_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}"),
                      "kmock")
    finally:
        stop_process(process)


class _PlainLoader(yaml.SafeLoader):
    """YAML 1.1 reads a lone ``=`` as its "value" tag, which no constructor handles (the
    prometheus-operator CRDs have ``enum: [=, ...]``): read it as the string it is."""


_PlainLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:value"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def install_crds(cluster: Cluster, *paths: Path) -> None:
    """Create CRDs (skipping those that exist) and wait until they are established."""
    api = client.ApiextensionsV1Api(cluster.api)
    names = []
    for path in paths:
        for doc in yaml.load_all(path.read_text(), Loader=_PlainLoader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            names.append(doc["metadata"]["name"])
            try:
                api.create_custom_resource_definition(doc)
            except ApiException as exc:
                if exc.status != 409:
                    raise

    def established() -> bool:
        for name in names:
            crd = api.read_custom_resource_definition(name)
            conditions = {c.type: c.status for c in crd.status.conditions or []}
            if conditions.get("Established") != "True":
                return False
        return True

    wait_until(established, 60, "the CRDs to be established")


def external_cluster() -> Cluster | None:
    """``DRIFTKEEPER_TEST_KUBECONFIG``: another API server (the CRD applied, namespaces and
    the operator's identity the kubeconfig's own)."""
    path = os.environ.get("DRIFTKEEPER_TEST_KUBECONFIG")
    return Cluster(Path(path), "external") if path else None

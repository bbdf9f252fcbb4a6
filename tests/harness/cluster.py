"""A Kubernetes API for tests, and what the tests do with it.

``kmock_cluster`` starts KMock's emulator (``emulator.py``) as a process on 127.0.0.1 and
writes a kubeconfig for it; ``DRIFTKEEPER_TEST_KUBECONFIG`` points the same tests at another
API server instead (a real kube-apiserver). Everything else talks to the API through the
kubeconfig only, with the ``kubernetes`` client, as the operator does.
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
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from service_process import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "k8s" / "crds" / "driftpolicies.driftkeeper.io.yaml"
GROUP, VERSION, PLURAL = "driftkeeper.io", "v1alpha1", "driftpolicies"

T = TypeVar("T")


@dataclass
class Cluster:
    """An API server reachable through ``kubeconfig``, with clients for the tests."""

    kubeconfig: Path
    backend: str  # "kmock" or "external"

    def __post_init__(self) -> None:
        self.api = config.new_client_from_config(str(self.kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.discovery = client.DiscoveryV1Api(self.api)

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

    # -- the model Service's replicas -----------------------------------------------------------

    def endpoint_slice(self, namespace: str, service: str, replica: str, port: int,
                       ready: bool = True) -> None:
        """One replica of ``service`` at 127.0.0.1:port (a slice per replica: the replicas
        here listen on different ports of one host)."""
        self.discovery.create_namespaced_endpoint_slice(namespace, {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service}-{replica}",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": ready},
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


@contextlib.contextmanager
def api_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """The API server the Kubernetes tests use: ``DRIFTKEEPER_TEST_KUBECONFIG`` if set
    (with the CRD already applied), else KMock's emulator."""
    external = os.environ.get("DRIFTKEEPER_TEST_KUBECONFIG")
    if external:
        yield Cluster(Path(external), "external")
        return
    with kmock_cluster(tmp_path) as cluster:
        yield cluster

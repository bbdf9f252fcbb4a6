"""The operator's Kubernetes calls, thin over the ``kubernetes`` client, returning plain
dicts (the API's own JSON) so that the rest of the operator never sees client models.

Every verb used here is granted, and only these, in ``k8s/operator-rbac.yaml``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .builders import POLICY_LABEL, RETRAIN_CONTAINER
from .crd import GROUP, PLURAL, VERSION

log = logging.getLogger("driftkeeper.operator")


@dataclass(frozen=True)
class Endpoint:
    """One ready replica of the model Service."""

    name: str  # the pod's name, or its address when the slice names no pod
    url: str  # http://address:port


def _json(response: Any) -> dict[str, Any]:
    return json.loads(response.data)


def _host() -> str:
    """Which operator posted an event: the pod's name (HOSTNAME), else the host's."""
    return os.environ.get("HOSTNAME") or socket.gethostname()


class Kube:
    """Namespaced reads and writes of the objects the operator manages."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)

    # -- the model Service's replicas ------------------------------------------------------

    def ready_endpoints(self, namespace: str, service: str, port: str) -> list[Endpoint]:
        """Ready endpoints of a Service on its named port, from its EndpointSlices."""
        slices = _json(self.discovery.list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={service}",
            _preload_content=False))
        found: dict[str, Endpoint] = {}
        for s in slices.get("items", []):
            number = next((p.get("port") for p in s.get("ports") or []
                           if p.get("name", "") == port), None)
            if number is None:
                continue
            for e in s.get("endpoints") or []:
                if (e.get("conditions") or {}).get("ready") is False or not e.get("addresses"):
                    continue
                address = e["addresses"][0]
                host = f"[{address}]" if ":" in address else address
                name = (e.get("targetRef") or {}).get("name") or f"{address}:{number}"
                found[name] = Endpoint(name, f"http://{host}:{number}")
        return sorted(found.values(), key=lambda e: e.name)

    # -- the model Deployment and its claim --------------------------------------------------

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The target Deployment, to check the claim a policy retrains on (None: absent)."""
        return self._get(self.apps.read_namespaced_deployment, name, namespace)

    def get_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A PersistentVolumeClaim, for its access modes (None: absent)."""
        return self._get(self.core.read_namespaced_persistent_volume_claim, name, namespace)

    def _get(self, call: Any, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            return _json(call(name, namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # -- the policy ConfigMap ---------------------------------------------------------------

    def apply_config_map(self, manifest: dict[str, Any]) -> bool:
        """Create the ConfigMap, or update its data; True when something changed."""
        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        try:
            current = _json(self.core.read_namespaced_config_map(name, namespace,
                                                                 _preload_content=False))
        except ApiException as exc:
            if exc.status != 404:
                raise
            try:
                self.core.create_namespaced_config_map(namespace, manifest)
            except ApiException as conflict:
                if conflict.status != 409:  # created meanwhile: patch it below
                    raise
            else:
                return True
            current = {}
        if current.get("data") == manifest["data"]:
            return False
        self.core.patch_namespaced_config_map(name, namespace, {
            "metadata": {"labels": manifest["metadata"]["labels"]}, "data": manifest["data"]})
        return True

    def delete_config_map(self, namespace: str, name: str) -> None:
        self._delete(self.core.delete_namespaced_config_map, name, namespace)

    # -- retraining Jobs ------------------------------------------------------------------------

    def create_job(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create the Job, or return the one that already has its (deterministic) name;
        the caller decides from its annotations whether that one is the same retrain."""
        namespace = manifest["metadata"]["namespace"]
        try:
            return _json(self.batch.create_namespaced_job(namespace, manifest,
                                                          _preload_content=False))
        except ApiException as exc:
            if exc.status != 409:
                raise
        existing = self.get_job(namespace, manifest["metadata"]["name"])
        if existing is None:  # deleted between the two calls: let the caller retry
            raise RuntimeError(f"job {manifest['metadata']['name']} conflicts but is gone")
        return existing

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(self.batch.read_namespaced_job, name, namespace)

    def delete_job(self, namespace: str, name: str) -> None:
        self._delete(self.batch.delete_namespaced_job, name, namespace,
                     propagation_policy="Background")

    def policy_jobs(self, namespace: str, policy: str) -> list[dict[str, Any]]:
        """The policy's retraining Jobs, oldest first."""
        jobs = _json(self.batch.list_namespaced_job(
            namespace, label_selector=f"{POLICY_LABEL}={policy}", _preload_content=False))
        items = [j for j in jobs.get("items", [])
                 if (j["metadata"].get("labels") or {}).get(POLICY_LABEL) == policy]
        return sorted(items, key=lambda j: j["metadata"].get("creationTimestamp") or "")

    def delete_policy_jobs(self, namespace: str, policy: str) -> list[str]:
        names = [j["metadata"]["name"] for j in self.policy_jobs(namespace, policy)]
        for name in names:
            # Background: the Job goes now, its pods after it (the garbage collector).
            self._delete(self.batch.delete_namespaced_job, name, namespace,
                         propagation_policy="Background")
        return names

    def termination_messages(self, namespace: str, job: str) -> list[str]:
        """The retrain container's termination messages of a Job's pods, newest first."""
        pods = _json(self.core.list_namespaced_pod(namespace, label_selector=f"job-name={job}",
                                                   _preload_content=False))
        found = []
        items = [p for p in pods.get("items", [])
                 if (p["metadata"].get("labels") or {}).get("job-name") == job]
        items.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True)
        for pod in items:
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                if status.get("name") != RETRAIN_CONTAINER:
                    continue
                message = ((status.get("state") or {}).get("terminated") or {}).get("message")
                if message:
                    found.append(message)
        return found

    # -- the DriftPolicy itself -----------------------------------------------------------------

    def post_event(self, body: dict[str, Any], type_: str, reason: str, message: str,
                   now: float) -> None:
        """A core/v1 Event about the policy (what ``kubectl describe dp`` lists). Posted
        here rather than through Kopf, whose event queue exists only inside handlers."""
        meta = body.get("metadata") or {}
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        self.core.create_namespaced_event(meta["namespace"], {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
                               "name": meta["name"], "namespace": meta["namespace"],
                               "uid": meta.get("uid")},
            "type": type_, "reason": reason[:128], "message": message[:1024],
            "source": {"component": "driftkeeper-operator"},
            "reportingComponent": "driftkeeper-operator", "reportingInstance": _host(),
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1})

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """A merge patch of ``status`` through the status subresource (a policy deleted
        meanwhile is not an error: there is nothing left to report on)."""
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, {"status": status})
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _delete(self, call: Any, name: str, namespace: str, **kwargs: Any) -> None:
        try:
            call(name, namespace, **kwargs)
        except ApiException as exc:
            if exc.status != 404:
                raise

"""Monitoring as kube-prometheus-stack sets it up, on the local cluster: the
prometheus-operator (built from the module version whose CRDs the tests already use) with
its config reloader, and a ``Prometheus`` that selects ServiceMonitors and PrometheusRules
labelled ``release: kube-prometheus-stack`` in every namespace. Prometheus is Debian's,
in a local image; the host reaches it at ``http://NODE_IP:PROMETHEUS_NODE_PORT``."""

from __future__ import annotations

from pathlib import Path

import yaml

from .addons import image_ref, kubectl
from .layout import KUBE, NODE_IP, Layout

NAMESPACE = "monitoring"
RELEASE_LABEL = {"release": "kube-prometheus-stack"}
PROMETHEUS_NODE_PORT = 30090
PROMETHEUS_URL = f"http://{NODE_IP}:{PROMETHEUS_NODE_PORT}"


def _objects(images: dict[str, Path], prometheus_version: str
             ) -> tuple[list[dict], list[dict]]:
    """What comes before the operator is up, and what needs its CRDs served."""
    meta = {"namespace": NAMESPACE}
    operator_labels = {"app.kubernetes.io/name": "prometheus-operator"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "prometheus-operator", **meta}},
        # Test infrastructure, not the product: the operator gets cluster-admin here
        # rather than a copy of its upstream ClusterRole.
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "prometheus-operator"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "cluster-admin"},
         "subjects": [{"kind": "ServiceAccount", "name": "prometheus-operator",
                       "namespace": NAMESPACE}]},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "prometheus-operator", **meta},
         "spec": {"replicas": 1, "selector": {"matchLabels": operator_labels},
                  "template": {"metadata": {"labels": operator_labels}, "spec": {
                      "serviceAccountName": "prometheus-operator",
                      "containers": [{
                          "name": "operator",
                          "image": image_ref(images["prometheus-operator"]),
                          "imagePullPolicy": "Never",
                          "args": [
                              "--prometheus-config-reloader="
                              + image_ref(images["prometheus-config-reloader"]),
                              "--kubelet-service=", "--web.listen-address=:8080"],
                          "securityContext": {"runAsNonRoot": True, "runAsUser": 65534,
                                              "readOnlyRootFilesystem": True,
                                              "allowPrivilegeEscalation": False}}]}}}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "prometheus", **meta}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "prometheus-local"},
         "rules": [{"apiGroups": [""], "resources": ["nodes", "services", "endpoints", "pods"],
                    "verbs": ["get", "list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                    "verbs": ["get", "list", "watch"]},
                   {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "prometheus-local"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "prometheus-local"},
         "subjects": [{"kind": "ServiceAccount", "name": "prometheus",
                       "namespace": NAMESPACE}]},
    ], [
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus",
         "metadata": {"name": "kube-prometheus-stack", **meta},
         "spec": {
             "image": image_ref(images["prometheus"]), "version": prometheus_version,
             "replicas": 1, "serviceAccountName": "prometheus",
             "scrapeInterval": "5s", "evaluationInterval": "5s",
             # As kube-prometheus-stack selects by default: its release label, any namespace.
             "serviceMonitorSelector": {"matchLabels": RELEASE_LABEL},
             "serviceMonitorNamespaceSelector": {},
             "ruleSelector": {"matchLabels": RELEASE_LABEL},
             "ruleNamespaceSelector": {},
             "podMonitorSelector": {"matchLabels": RELEASE_LABEL},
             "securityContext": {"runAsNonRoot": True, "runAsUser": 65534,
                                 "fsGroup": 65534}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "prometheus-nodeport", **meta},
         "spec": {"type": "NodePort",
                  "selector": {"app.kubernetes.io/name": "prometheus",
                               "prometheus": "kube-prometheus-stack"},
                  "ports": [{"name": "web", "port": 9090, "targetPort": 9090,
                             "nodePort": PROMETHEUS_NODE_PORT}]}},
    ]


def install(layout: Layout, images: dict[str, Path], prometheus_version: str,
            timeout: int = 240) -> None:
    """CRDs, the operator, then the Prometheus once the operator serves its API."""
    kubectl(layout, "apply", "--server-side", "-f",
            str(KUBE / "prometheus-operator-crds.yaml"), timeout=120)
    first, then = _objects(images, prometheus_version)
    kubectl(layout, "apply", "-f", "-", stdin=yaml.safe_dump_all(first))
    kubectl(layout, "-n", NAMESPACE, "rollout", "status", "deployment/prometheus-operator",
            f"--timeout={timeout}s", timeout=timeout + 30)
    kubectl(layout, "apply", "-f", "-", stdin=yaml.safe_dump_all(then))
    kubectl(layout, "-n", NAMESPACE, "wait", "--for=condition=Available",
            "prometheus/kube-prometheus-stack", f"--timeout={timeout}s",
            timeout=timeout + 30)

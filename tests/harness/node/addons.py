"""What a cluster has before users arrive: CoreDNS (Service names resolve in pods) and a
StorageClass with static local volumes (the chart's PVC binds), as kind ships them."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import yaml

from .layout import DNS_SERVICE_IP, NODE_NAME, TOOLS, Layout

STORAGE_CLASS = "local"
VOLUMES = 6          # enough for a few releases' model volumes
VOLUME_SIZE = "10Gi"

COREFILE = """.:1053 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
    reload
}
"""  # no `forward`: nothing outside the cluster is resolved (or reachable)


def _coredns(image: str) -> list[dict]:
    labels = {"k8s-app": "kube-dns"}
    meta = {"name": "coredns", "namespace": "kube-system"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "system:coredns"},
         "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods",
                                                     "namespaces"],
                    "verbs": ["list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                    "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "system:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "system:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns",
                       "namespace": "kube-system"}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
         "data": {"Corefile": COREFILE}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "serviceAccountName": "coredns", "dnsPolicy": "Default",
                      "containers": [{
                          "name": "coredns", "image": image, "imagePullPolicy": "Never",
                          "args": ["-conf", "/etc/coredns/Corefile"],
                          "ports": [{"name": "dns", "containerPort": 1053,
                                     "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 1053,
                                     "protocol": "TCP"}],
                          "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}},
                          "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                          "securityContext": {"runAsNonRoot": True, "runAsUser": 65534,
                                              "readOnlyRootFilesystem": True,
                                              "allowPrivilegeEscalation": False},
                          "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}]}],
                      "volumes": [{"name": "config", "configMap": {"name": "coredns"}}]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
         "spec": {"clusterIP": DNS_SERVICE_IP, "selector": labels,
                  "ports": [{"name": "dns", "port": 53, "targetPort": 1053,
                             "protocol": "UDP"},
                            {"name": "dns-tcp", "port": 53, "targetPort": 1053,
                             "protocol": "TCP"}]}},
    ]


def _storage(layout: Layout) -> list[dict]:
    objects: list[dict] = [{
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS,
                     "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer", "reclaimPolicy": "Delete"}]
    for index in range(VOLUMES):
        path = layout.volumes / f"pv{index}"
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o1777)  # any pod's user may write (a local volume has no fsGroup)
        objects.append({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": f"local-pv{index}"},
            "spec": {"capacity": {"storage": VOLUME_SIZE},
                     "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain",
                     "storageClassName": STORAGE_CLASS,
                     "local": {"path": str(path)},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{
                         "matchExpressions": [{"key": "kubernetes.io/hostname",
                                               "operator": "In",
                                               "values": [NODE_NAME]}]}]}}}})
    return objects


def kubectl(layout: Layout, *args: str, stdin: str | None = None, timeout: float = 120
            ) -> str:
    done = subprocess.run([str(TOOLS / "bin" / "kubectl"), "--kubeconfig",
                           str(layout.admin_kubeconfig), *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def apply(layout: Layout, images: dict[str, Path], deadline: float) -> None:
    """Wait for the node, apply the add-ons, wait until CoreDNS answers."""
    while True:
        try:
            kubectl(layout, "wait", "--for=condition=Ready", f"node/{NODE_NAME}",
                    "--timeout=5s", timeout=30)
            break
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    coredns = image_ref(images["coredns"])
    kubectl(layout, "apply", "-f", "-", stdin=yaml.safe_dump_all(
        _coredns(coredns) + _storage(layout)))
    remaining = max(10, int(deadline - time.monotonic()))
    kubectl(layout, "-n", "kube-system", "rollout", "status", "deployment/coredns",
            f"--timeout={remaining}s", timeout=remaining + 30)


def image_ref(archive: Path) -> str:
    """The reference scripts/build-images gave an archive ``NAME-KEY.tar``."""
    name, _, key = archive.stem.rpartition("-")
    return f"localhost/{name}:{key}"

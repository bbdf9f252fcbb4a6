"""The local node's configuration files, each with the setting a real trial needed and why
(``../shared/real-node-facts.md`` has the errors behind them)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .layout import (
    API_PORT,
    BRIDGE,
    CGROUP_ROOT,
    DNS_SERVICE_IP,
    KUBERNETES_SERVICE_IP,
    NODE,
    NODE_IP,
    NODE_NAME,
    POD_CIDR,
    Layout,
)
from .pki import Authority


def kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "driftkeeper-local",
        "clusters": [{"name": "driftkeeper-local", "cluster": {
            "server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "driftkeeper-local", "user": {
            "client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "driftkeeper-local", "context": {
            "cluster": "driftkeeper-local", "user": "driftkeeper-local",
            "namespace": "default"}}]}))
    path.chmod(0o600)
    return path


def write_all(layout: Layout, sandbox_image: str) -> None:
    """Certificates, kubeconfigs and every component's configuration."""
    layout.make()
    ca = Authority(layout.pki)
    server = f"https://{NODE_IP}:{API_PORT}"
    ca.server("apiserver", "kube-apiserver",
              ["kubernetes", "kubernetes.default", "kubernetes.default.svc",
               "kubernetes.default.svc.cluster.local", "localhost"],
              [KUBERNETES_SERVICE_IP, NODE_IP, "127.0.0.1"])
    ca.server("kubelet-serving", NODE_NAME, [NODE_NAME, "localhost"], [NODE_IP, "127.0.0.1"])
    ca.client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters")
    ca.service_account_keys()
    identities = {
        "admin": ("kubernetes-admin", "system:masters"),
        "controller-manager": ("system:kube-controller-manager", None),
        "scheduler": ("system:kube-scheduler", None),
        "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),
        "kube-proxy": ("system:kube-proxy", None),
    }
    for name, (common, organization) in identities.items():
        cert, key = ca.client(name, common, organization)
        target = layout.admin_kubeconfig if name == "admin" else \
            layout.config / f"{name}.kubeconfig"
        kubeconfig(target, server, ca.cert, cert, key)
    _containerd(layout, sandbox_image)
    _cni(layout)
    _kubelet(layout)
    _kube_proxy(layout)
    _sysctls(layout)


def _containerd(layout: Layout, sandbox_image: str) -> None:
    state = layout.state / "containerd"
    runc = NODE / "root/usr/sbin/runc"
    cri = {
        # The pause process built here: no registry to pull registry.k8s.io/pause from.
        "sandbox_image": sandbox_image,
        # Root here lacks CAP_SYS_RESOURCE: without this every sandbox fails with
        # "failed to update /proc/self/oom_score_adj: Permission denied".
        "restrict_oom_score_adj": True,
        "disable_apparmor": True,
        # Pod network namespaces under the state directory, not /var/run/netns.
        "netns_mounts_under_state_dir": True,
        "containerd": {
            "snapshotter": "overlayfs", "default_runtime_name": "runc",
            "runtimes": {"runc": {"runtime_type": "io.containerd.runc.v2",
                                  "options": {"BinaryName": str(runc),
                                              "SystemdCgroup": False}}}},
        "cni": {"bin_dir": str(NODE / "cni"), "conf_dir": str(layout.config / "cni")},
    }
    config = {
        "version": 2,
        "root": str(state / "root"), "state": str(state / "state"),
        "grpc": {"address": str(layout.containerd_socket)},
        "ttrpc": {"address": str(layout.containerd_socket) + ".ttrpc"},
        "plugins": {"io.containerd.grpc.v1.cri": cri,
                    "io.containerd.internal.v1.opt": {"path": str(state / "opt")}},
    }
    (layout.config / "containerd.toml").write_text(_toml(config))


def _toml(table: dict, prefix: str = "") -> str:
    """Just enough TOML for containerd's configuration (no library writes it here)."""
    scalars, tables = [], []
    for key, value in table.items():
        name = f'"{key}"' if "." in key else key
        if isinstance(value, dict):
            tables.append((f"{prefix}.{name}" if prefix else name, value))
        else:
            scalars.append(f"{name} = {json.dumps(value)}")
    text = (f"[{prefix}]\n" if prefix and scalars else "") + "".join(f"{s}\n" for s in scalars)
    for name, value in tables:
        text += "\n" + _toml(value, name)
    return text


def _cni(layout: Layout) -> None:
    directory = layout.config / "cni"
    directory.mkdir(exist_ok=True)
    (directory / "10-driftkeeper.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": "driftkeeper",
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True,
             # No masquerading: pod traffic has nowhere to go but the node's own bridge.
             "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR}]],
                      "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": str(layout.state / "cni" / "networks")}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ]}, indent=2))


def _kubelet(layout: Layout) -> None:
    pki = layout.pki
    (layout.config / "kubelet.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "failCgroupV1": False,          # 1.35 refuses cgroup v1 otherwise
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "resolvConf": "",               # pods get no upstream DNS: nothing leaves the node
        "imageGCHighThresholdPercent": 100,  # local-only images must never be collected
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%"},
        "failSwapOn": False,
        "protectKernelDefaults": False,
        "address": NODE_IP, "port": 10250, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(pki / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [DNS_SERVICE_IP], "clusterDomain": "cluster.local",
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "podLogsDirectory": str(layout.state / "pod-logs"),
        "serializeImagePulls": False,
        "registerNode": True,
    }))


def _kube_proxy(layout: Layout) -> None:
    (layout.config / "kube-proxy.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "hostnameOverride": NODE_NAME,
        "clientConnection": {"kubeconfig": str(layout.config / "kube-proxy.kubeconfig")},
        "clusterCIDR": POD_CIDR,
        "bindAddress": NODE_IP,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # The conntrack sysctls are the machine's, not the node's: leave them alone.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
        # route_localnet stays off; NodePorts only on the node's address. Without
        # br_netfilter (no module loading here) a reply between two pods of the bridge
        # skips iptables and misses the Service's un-DNAT: masquerading Service traffic
        # sends every reply back through the node's stack.
        "iptables": {"localhostNodePorts": False, "masqueradeAll": True},
        "nodePortAddresses": ["primary"],
    }))


# What kubelet insists on writing to the machine's /proc/sys; inside the node's mount
# namespace these files are bind-mounted over them, so kubelet finds its values and the
# machine keeps its own.
SYSCTLS = {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}


def _sysctls(layout: Layout) -> None:
    directory = layout.config / "sysctl"
    directory.mkdir(exist_ok=True)
    for name, value in SYSCTLS.items():
        (directory / name.replace("/", ".")).write_text(value + "\n")

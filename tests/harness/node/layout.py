"""Where the local cluster keeps everything (one directory) and the fixed facts of its
network: the node lives in network, mount and PID namespaces of its own, joined to this
machine by one veth pair on a /30 of its own, so nothing it does reaches another
interface, and the host routes nothing for it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

NODE_NAME = "driftkeeper-node"
HOST_IP = "172.31.254.1"     # this machine's end of the veth
NODE_IP = "172.31.254.2"     # the node: API server, kubelet, NodePorts
LINK_PREFIX = 30
HOST_LINK = "dk-host0"       # the veth's names, on each side
NODE_LINK = "dk-node0"
POD_CIDR = "10.88.0.0/16"    # only inside the node's network namespace
BRIDGE = "dk-cni0"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
API_PORT = 6443
CGROUP_ROOT = "driftkeeper-node"  # every pod's cgroup under /sys/fs/cgroup/*/<this>

TOOLS = Path(os.environ.get("DRIFTKEEPER_TOOLS", Path.home() / ".cache/driftkeeper/tools"))
KUBE = TOOLS / "controlplane" / "current"   # scripts/install-control-plane
NODE = TOOLS / "node" / "current"           # scripts/install-node


@dataclass(frozen=True)
class Layout:
    """Every path the cluster writes, under ``root``."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def state(self) -> Path:
        """etcd, containerd, kubelet, CNI: the node's own /var/lib and /var/log."""
        return self.root / "state"

    @property
    def volumes(self) -> Path:
        """The PersistentVolumes' directories (static local volumes)."""
        return self.root / "volumes"

    @property
    def containerd_socket(self) -> Path:
        return self.state / "containerd" / "containerd.sock"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def pid_file(self) -> Path:
        """The node's init (PID 1 of its PID namespace), as this machine sees it."""
        return self.root / "node.pid"

    @property
    def ready_file(self) -> Path:
        return self.root / "node.ready"

    @property
    def images_file(self) -> Path:
        """The image archives to import before kubelet starts, one per line."""
        return self.config / "images.txt"

    def make(self) -> None:
        for path in (self.pki, self.config, self.logs, self.state, self.volumes):
            path.mkdir(parents=True, exist_ok=True)


def node_env() -> dict[str, str]:
    """PATH and libraries for the node's programs: Debian's containerd, runc and iptables
    unpacked by scripts/install-node, the CNI plugins and Kubernetes' binaries."""
    root = NODE / "root"
    return {
        "PATH": os.pathsep.join(str(p) for p in (
            NODE / "bin", root / "usr/bin", root / "usr/sbin", KUBE,
            "/usr/sbin", "/usr/bin", "/sbin", "/bin")),
        "LD_LIBRARY_PATH": str(root / "usr/lib/x86_64-linux-gnu"),
        "XTABLES_LIBDIR": str(root / "usr/lib/x86_64-linux-gnu/xtables"),
        "HOME": "/root", "LANG": "C.UTF-8",
    }


def missing() -> str | None:
    """Why a local cluster cannot run here, or None."""
    if os.geteuid() != 0:
        return "the local cluster needs root (namespaces, veth, cgroups)"
    for path, how in ((KUBE / "kubelet", "scripts/install-control-plane"),
                      (NODE / ".complete", "scripts/install-node")):
        if not path.exists():
            return f"{path} missing: {how} makes it (make test-tools runs it; needs Go)"
    return None

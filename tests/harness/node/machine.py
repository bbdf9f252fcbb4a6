"""What a local cluster could leave behind on this machine, read before and after.

Everything a node touches that its namespaces do not hold by themselves: processes,
interfaces, routes, iptables chains (in either backend), mounts, cgroups, the sysctls
kubelet and kube-proxy like to set, and the paths containerd, kubelet and CNI write by
default. ``snapshot()`` before ``up`` and after ``down`` must be equal."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .layout import CGROUP_ROOT, NODE, TOOLS, node_env

SYSCTLS = ("net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet",
           "net/ipv4/conf/all/forwarding", "vm/overcommit_memory", "kernel/panic",
           "kernel/panic_on_oops", "net/netfilter/nf_conntrack_max",
           "net/bridge/bridge-nf-call-iptables", "kernel/keys/root_maxkeys",
           "kernel/keys/root_maxbytes")
PATHS = ("/run/containerd", "/var/lib/containerd", "/var/lib/cni", "/var/lib/kubelet",
         "/var/log/containers", "/var/log/pods", "/etc/cni", "/opt/cni", "/run/netns",
         "/var/run/netns", "/etc/kubernetes", "/run/xtables.lock")


def _chains() -> list[str]:
    """Every table's chains, from both iptables backends (the node's own are in its
    network namespace, so none may show here)."""
    chains = []
    env = node_env()
    for backend in ("xtables-nft-multi", "xtables-legacy-multi"):
        binary = NODE / "root" / "usr" / "sbin" / backend
        if not binary.exists():
            continue
        for family in ("iptables", "ip6tables"):
            done = subprocess.run([str(binary), f"{family}-save"], env=env,
                                  capture_output=True, text=True, timeout=30)
            chains += [f"{backend} {family} {line.split()[0]}"
                       for line in done.stdout.splitlines()
                       if line.startswith(":") or line.startswith("-A")]
    return sorted(set(chains))


def _ours(pid: Path, root: Path) -> bool:
    """A process of a local cluster: run from the node's tools (containerd, a shim, runc,
    a CNI plugin) or naming the cluster's directory (kubelet, etcd, the node's init)."""
    try:
        exe = str(pid.joinpath("exe").resolve())
        command = pid.joinpath("cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return exe.startswith(str(TOOLS / "node")) or str(root) in command


def snapshot(root: Path) -> dict[str, object]:
    ip = lambda *a: subprocess.run(["ip", *a], capture_output=True, text=True,  # noqa: E731
                                   timeout=30).stdout
    sysctls = {}
    for name in SYSCTLS:
        path = Path("/proc/sys") / name
        sysctls[name] = path.read_text().strip() if path.exists() else None
    cgroups = sorted(str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_ROOT}"))
    cgroups += sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods*"))
    cgroups += sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/k8s.io"))
    return {
        "processes": sorted(p.name for p in Path("/proc").iterdir()
                            if p.name.isdigit() and _ours(p, root)),
        "links": sorted(line.split(":")[1].strip().split("@")[0]
                        for line in ip("-o", "link").splitlines()),
        "addresses": sorted(" ".join(line.split()[1:4])  # device, family, address
                            for line in ip("-o", "addr").splitlines()),
        "routes": sorted(ip("route", "show", "table", "all").splitlines()),
        "chains": _chains(),
        "mounts": sorted(line.split()[4]
                         for line in Path("/proc/self/mountinfo").read_text().splitlines()),
        "cgroups": cgroups,
        "sysctls": sysctls,
        "paths": sorted(p for p in PATHS if Path(p).exists()),
    }


def differences(before: dict[str, object], after: dict[str, object]) -> dict[str, object]:
    """What changed, per kind; empty when the machine is as it was."""
    return {key: {"before": before[key], "after": after[key]}
            for key in before if before[key] != after[key]}

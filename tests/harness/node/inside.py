"""The node's init: PID 1 of the node's PID namespace, in its own mount and network
namespaces (``cluster.py`` starts it under ``unshare``).

It makes the node's private view of the machine (tmpfs /run, the node's own /var/lib and
/var/log, kubelet's sysctls answered by files), brings up the veth this machine gave it,
starts etcd, the control plane, containerd, kubelet and kube-proxy, imports the local
images, and then waits. On SIGTERM it stops them in reverse order; when it exits, the
kernel ends every process left in the namespace, and the namespaces with their mounts,
bridge, iptables rules and pod network namespaces go with it."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .configs import SYSCTLS
from .layout import (
    API_PORT,
    CGROUP_ROOT,
    KUBE,
    LINK_PREFIX,
    NODE_IP,
    NODE_LINK,
    NODE_NAME,
    POD_CIDR,
    SERVICE_CIDR,
    Layout,
    node_env,
)

ENV = node_env()
PR_SET_PDEATHSIG = 1


def run(*command: str) -> None:
    subprocess.run(command, check=True, env=ENV, capture_output=True, timeout=60)


def private_view(layout: Layout) -> None:
    """Mounts that exist only in this namespace (propagation is private)."""
    run("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run")
    # A sysfs of this network namespace (/sys/class/net shows the node's own devices),
    # with the machine's cgroup hierarchies moved onto it.
    Path("/run/cgroup").mkdir()
    run("mount", "--rbind", "/sys/fs/cgroup", "/run/cgroup")
    run("mount", "-t", "sysfs", "sysfs", "/sys")
    run("mount", "--move", "/run/cgroup", "/sys/fs/cgroup")
    for target, source in (("/var/lib", layout.state / "var-lib"),
                           ("/var/log", layout.state / "var-log")):
        source.mkdir(parents=True, exist_ok=True)
        run("mount", "--bind", str(source), target)
    for name in SYSCTLS:
        run("mount", "--bind", str(layout.config / "sysctl" / name.replace("/", ".")),
            f"/proc/sys/{name}")


def network() -> None:
    deadline = time.monotonic() + 30
    while not Path(f"/sys/class/net/{NODE_LINK}").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{NODE_LINK} never arrived")
        time.sleep(0.1)
    run("ip", "link", "set", "lo", "up")
    run("ip", "addr", "add", f"{NODE_IP}/{LINK_PREFIX}", "dev", NODE_LINK)
    run("ip", "link", "set", NODE_LINK, "up")


def cgroups() -> None:
    """The pods' cgroup root under every v1 controller (and v2's, if unified), made
    here so that kubelet accepts it; cluster.py removes it after the node is gone."""
    for controller in Path("/sys/fs/cgroup").iterdir():
        if not controller.is_dir() or controller.is_symlink():
            continue
        root = controller / CGROUP_ROOT
        root.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):  # v1 cpuset: empty until copied
            if (root / name).exists() and not (root / name).read_text().strip():
                (root / name).write_text((controller / name).read_text())


class Daemons:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, *command: str) -> subprocess.Popen:
        with open(self.layout.logs / f"{name}.log", "ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                       env=ENV, stdin=subprocess.DEVNULL)
        self.started.append((name, process))
        return process

    def check(self) -> None:
        for name, process in self.started:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}: see "
                                   f"{self.layout.logs / (name + '.log')}")

    def stop(self) -> None:
        for _, process in reversed(self.started):
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)
            with contextlib.suppress(ProcessLookupError):
                process.kill()


def wait_for(what: str, probe, daemons: Daemons, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        daemons.check()
        with contextlib.suppress(Exception):
            if probe():
                return
        time.sleep(0.25)
    raise RuntimeError(f"{what} not ready after {timeout:.0f}s")


def _https_ok(url: str, layout: Layout) -> bool:
    context = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    context.load_cert_chain(layout.pki / "admin.crt", layout.pki / "admin.key")
    with urllib.request.urlopen(url, context=context, timeout=3) as answer:
        return answer.status == 200


def start(layout: Layout, daemons: Daemons) -> None:
    pki, config, state = layout.pki, layout.config, layout.state
    daemons.start("etcd", str(KUBE / "etcd"), "--name", "node",
                  "--data-dir", str(state / "etcd"),
                  "--listen-client-urls", "http://127.0.0.1:2379",
                  "--advertise-client-urls", "http://127.0.0.1:2379",
                  "--listen-peer-urls", "http://127.0.0.1:2380",
                  "--listen-metrics-urls", "http://127.0.0.1:2381",
                  "--unsafe-no-fsync")  # a test cluster: speed over durability
    wait_for("etcd", lambda: urllib.request.urlopen(
        "http://127.0.0.1:2379/health", timeout=2).status == 200, daemons)
    daemons.start(
        "kube-apiserver", str(KUBE / "kube-apiserver"),
        "--etcd-servers=http://127.0.0.1:2379",
        "--bind-address=0.0.0.0", f"--secure-port={API_PORT}",
        # Not loopback: the `kubernetes` Service's endpoint (pods reach it there).
        f"--advertise-address={NODE_IP}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        "--kubelet-preferred-address-types=InternalIP",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        f"--cert-dir={state / 'apiserver-certs'}")
    wait_for("kube-apiserver", lambda: _https_ok(
        f"https://127.0.0.1:{API_PORT}/readyz", layout), daemons)
    common = ["--leader-elect=false", "--bind-address=127.0.0.1"]
    for name in ("controller-manager", "scheduler"):
        kubeconfig = str(config / f"{name}.kubeconfig")
        extra = [] if name == "scheduler" else [
            "--use-service-account-credentials",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--cluster-cidr={POD_CIDR}", f"--service-cluster-ip-range={SERVICE_CIDR}"]
        daemons.start(f"kube-{name}", str(KUBE / f"kube-{name}"), *common,
                      f"--kubeconfig={kubeconfig}",
                      f"--authentication-kubeconfig={kubeconfig}",
                      f"--authorization-kubeconfig={kubeconfig}", *extra)
    daemons.start("containerd", "containerd", "--config", str(config / "containerd.toml"))
    wait_for("containerd", layout.containerd_socket.exists, daemons, 60)
    images = layout.images_file.read_text().split() if layout.images_file.exists() else []
    for archive in images:
        subprocess.run(["ctr", "--address", str(layout.containerd_socket), "-n", "k8s.io",
                        "images", "import", archive], check=True, env=ENV,
                       stdout=subprocess.DEVNULL, timeout=600)
    daemons.start("kubelet", str(KUBE / "kubelet"),
                  f"--config={config / 'kubelet.yaml'}",
                  f"--kubeconfig={config / 'kubelet.kubeconfig'}",
                  f"--root-dir={state / 'kubelet'}",
                  f"--node-ip={NODE_IP}", f"--hostname-override={NODE_NAME}")
    daemons.start("kube-proxy", str(KUBE / "kube-proxy"),
                  f"--config={config / 'kube-proxy.yaml'}")


def main(root: str) -> int:
    layout = Layout(Path(root))
    daemons = Daemons(layout)
    stopping = False

    def terminate(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    # If unshare (this init's parent, outside the namespaces) dies, stop the node too.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    try:
        private_view(layout)
        network()
        cgroups()
        start(layout, daemons)
        layout.ready_file.write_text("ready\n")
        while not stopping:
            daemons.check()
            time.sleep(0.5)
    except Exception as exc:  # the cause goes to the log cluster.py shows
        print(f"node: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        daemons.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""The local node's configuration (tests/harness/node), read back as each component reads
it: containerd's TOML, kubelet's and kube-proxy's YAML, and the certificates' identities.
The real node itself runs in tests/integration/test_real_node.py."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from harness.node.configs import SYSCTLS, write_all
from harness.node.layout import KUBERNETES_SERVICE_IP, NODE_IP, NODE_NAME, Layout


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    layout = Layout(tmp_path_factory.mktemp("node"))
    write_all(layout, "localhost/pause:abc")
    return layout


def _subject(path: Path) -> tuple[str, str | None]:
    name = x509.load_pem_x509_certificate(path.read_bytes()).subject
    organization = name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
            organization[0].value if organization else None)


def test_containerd_reads_the_settings_the_node_needs(layout: Layout) -> None:
    config = tomllib.loads((layout.config / "containerd.toml").read_text())
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "localhost/pause:abc"
    assert cri["restrict_oom_score_adj"] is True and cri["disable_apparmor"] is True
    assert cri["netns_mounts_under_state_dir"] is True
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["options"]["SystemdCgroup"] is False
    for path in (config["root"], config["state"], config["grpc"]["address"]):
        assert path.startswith(str(layout.root))  # nothing outside the cluster's directory


def test_kubelet_and_kube_proxy_leave_the_machine_alone(layout: Layout) -> None:
    kubelet = yaml.safe_load((layout.config / "kubelet.yaml").read_text())
    assert kubelet["failCgroupV1"] is False and kubelet["resolvConf"] == ""
    assert kubelet["imageGCHighThresholdPercent"] == 100
    assert kubelet["address"] == NODE_IP and kubelet["readOnlyPort"] == 0
    assert kubelet["podLogsDirectory"].startswith(str(layout.root))
    proxy = yaml.safe_load((layout.config / "kube-proxy.yaml").read_text())
    assert set(proxy["conntrack"].values()) <= {0, "0s"}
    assert proxy["iptables"]["localhostNodePorts"] is False
    for name in SYSCTLS:  # what kubelet finds instead of the machine's /proc/sys
        assert (layout.config / "sysctl" / name.replace("/", ".")).read_text().strip()


def test_each_component_has_the_identity_rbac_expects(layout: Layout) -> None:
    assert _subject(layout.pki / "kubelet.crt") == (f"system:node:{NODE_NAME}", "system:nodes")
    assert _subject(layout.pki / "controller-manager.crt")[0] == "system:kube-controller-manager"
    assert _subject(layout.pki / "kube-proxy.crt")[0] == "system:kube-proxy"
    assert _subject(layout.pki / "admin.crt")[1] == "system:masters"
    serving = x509.load_pem_x509_certificate((layout.pki / "apiserver.crt").read_bytes())
    addresses = serving.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress)
    assert {ipaddress.ip_address(KUBERNETES_SERVICE_IP), ipaddress.ip_address(NODE_IP)} <= set(
        addresses)
    kubeconfig = yaml.safe_load((layout.config / "kubelet.kubeconfig").read_text())
    assert kubeconfig["clusters"][0]["cluster"]["server"] == f"https://{NODE_IP}:6443"


def test_only_the_nodes_own_empty_cgroups_are_removed(tmp_path: Path) -> None:
    """What a killed run leaves (empty cgroups under driftkeeper-node) goes; the machine's
    other cgroups, symlinked controllers and a cgroup still in use stay."""
    from harness.node.cluster import remove_cgroups
    from harness.node.layout import CGROUP_ROOT

    stale = tmp_path / "cpu" / CGROUP_ROOT / "kubepods" / "besteffort" / "pod1"
    stale.mkdir(parents=True)
    busy = tmp_path / "memory" / CGROUP_ROOT / "kubepods" / "pod2"
    busy.mkdir(parents=True)
    (busy / "cgroup.procs").write_text("1234\n")  # rmdir of a cgroup in use fails
    other = tmp_path / "cpu" / "system.slice"
    other.mkdir()
    (tmp_path / "cpu,cpuacct").symlink_to(tmp_path / "cpu")

    remove_cgroups(tmp_path, attempts=1)

    assert not (tmp_path / "cpu" / CGROUP_ROOT).exists()
    assert busy.is_dir() and other.is_dir()

"""A real Kubernetes API server for tests, as controller-runtime's envtest runs one.

etcd and kube-apiserver (built by scripts/install-control-plane) on 127.0.0.1, data in a
temporary directory: RBAC authorization, a service-account signing key and issuer (so the
TokenRequest API issues tokens that RBAC checks), a self-signed CA with a serving
certificate and an admin client certificate (group system:masters). No controller-manager,
no scheduler, no kubelet: nothing reconciles, so the tests play the Job controller and the
kubelet themselves (``kubelet.py``). Both processes are stopped by pid.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from service_process import free_port, stop_process
from tools import TOOLS

BIN = TOOLS / "controlplane" / "current"


def binaries_missing() -> str | None:
    """Why the control plane cannot run here, or None."""
    for name in ("etcd", "kube-apiserver"):
        if not (BIN / name).is_file():
            return (f"{BIN / name} missing: scripts/install-control-plane builds it "
                    f"(make test-tools runs it; it needs Go)")
    return None


@dataclass(frozen=True)
class ControlPlane:
    url: str
    kubeconfig: Path  # the admin's
    ca: Path
    version: str

    def token_kubeconfig(self, path: Path, token: str, namespace: str) -> Path:
        """A kubeconfig authenticating with a bearer token (a ServiceAccount's)."""
        return _kubeconfig(path, self.url, self.ca, {"token": token}, namespace)


def _kubeconfig(path: Path, server: str, ca: Path, user: dict, namespace: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": server,
                                                  "certificate-authority": str(ca)}}],
        "users": [{"name": "test", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test",
                                                  "namespace": namespace}}]}))
    return path


def _key(path: Path) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    return key


def _certificate(path: Path, subject: x509.Name, key: rsa.RSAPrivateKey,
                 issuer: tuple[x509.Name, rsa.RSAPrivateKey] | None = None,
                 ca: bool = False, server: bool = False) -> None:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    path.write_bytes(builder.sign(issuer_key, hashes.SHA256()).public_bytes(
        serialization.Encoding.PEM))


def _pki(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True)
    files = {name: directory / name for name in (
        "ca.crt", "ca.key", "serving.crt", "serving.key", "admin.crt", "admin.key",
        "sa.key", "sa.pub")}
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "driftkeeper-test-ca")])
    ca_key = _key(files["ca.key"])
    _certificate(files["ca.crt"], ca_name, ca_key, ca=True)
    _certificate(files["serving.crt"],
                 x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
                 _key(files["serving.key"]), (ca_name, ca_key), server=True)
    _certificate(files["admin.crt"], x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
        x509.NameAttribute(NameOID.COMMON_NAME, "admin")]),
        _key(files["admin.key"]), (ca_name, ca_key))
    sa_key = _key(files["sa.key"])
    files["sa.pub"].write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return files


def _wait(probe: callable, timeout: float, what: str, process: subprocess.Popen,
          log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited:\n{log.read_text(errors='replace')[-4000:]}")
        with contextlib.suppress(requests.RequestException):
            if probe():
                return
        time.sleep(0.5)
    raise RuntimeError(f"{what} not ready after {timeout:.0f}s:\n"
                       f"{log.read_text(errors='replace')[-4000:]}")


@contextlib.contextmanager
def running_control_plane(directory: Path) -> Iterator[ControlPlane]:
    pki = _pki(directory / "pki")
    client_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{client_port}"
    etcd_log, api_log = directory / "etcd.log", directory / "kube-apiserver.log"
    with contextlib.ExitStack() as stack:
        with open(etcd_log, "wb") as out:
            etcd = subprocess.Popen([
                str(BIN / "etcd"), "--name", "test", "--data-dir", str(directory / "etcd"),
                "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-cluster", f"test=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync"],  # test data: speed over durability
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        stack.callback(stop_process, etcd)
        _wait(lambda: requests.get(etcd_url + "/health", timeout=2).ok, 60, "etcd", etcd,
              etcd_log)
        with open(api_log, "wb") as out:
            apiserver = subprocess.Popen([
                str(BIN / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={directory / 'certs'}",
                f"--tls-cert-file={pki['serving.crt']}",
                f"--tls-private-key-file={pki['serving.key']}",
                f"--client-ca-file={pki['ca.crt']}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={pki['sa.pub']}",
                f"--service-account-signing-key-file={pki['sa.key']}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                # No controller-manager creates the `default` ServiceAccounts pods would need.
                "--disable-admission-plugins=ServiceAccount",
            ], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        stack.callback(stop_process, apiserver)
        url = f"https://127.0.0.1:{api_port}"
        admin = {"cert": (str(pki["admin.crt"]), str(pki["admin.key"])),
                 # per request: REQUESTS_CA_BUNDLE would override a session's verify
                 "verify": str(pki["ca.crt"]), "timeout": 5}
        _wait(lambda: requests.get(url + "/readyz", **admin).status_code == 200, 120,
              "kube-apiserver", apiserver, api_log)
        version = requests.get(url + "/version", **admin).json()["gitVersion"]
        kubeconfig = _kubeconfig(directory / "admin.kubeconfig", url, pki["ca.crt"],
                                 {"client-certificate": str(pki["admin.crt"]),
                                  "client-key": str(pki["admin.key"])}, "default")
        yield ControlPlane(url, kubeconfig, pki["ca.crt"], version)

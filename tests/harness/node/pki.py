"""The local cluster's certificates: one CA for everything, as kubeadm would make them.

Client certificates carry the identities Kubernetes' built-in RBAC and Node authorizer
expect (``system:kube-controller-manager``, ``system:node:<name>`` in ``system:nodes``,
...), so the cluster needs no bootstrap tokens and no role of our own."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 30  # a cluster for tests and trials, not for keeps


def _key(path: Path) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return key


def _name(common: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


class Authority:
    """The cluster's CA, signing every other certificate."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.name = _name("driftkeeper-local-cluster-ca")
        self.key = _key(directory / "ca.key")
        self._write(directory / "ca.crt", self.name, self.key, ca=True)

    @property
    def cert(self) -> Path:
        return self.directory / "ca.crt"

    def _write(self, path: Path, subject: x509.Name, key: rsa.RSAPrivateKey, *,
               ca: bool = False, sans: list[x509.GeneralName] | None = None,
               server: bool = False) -> None:
        now = datetime.datetime.now(datetime.UTC)
        usage = [ExtendedKeyUsageOID.SERVER_AUTH] if server else \
            [ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                                  critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        else:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        path.write_bytes(builder.sign(self.key, hashes.SHA256()).public_bytes(
            serialization.Encoding.PEM))

    def client(self, name: str, common: str, organization: str | None = None
               ) -> tuple[Path, Path]:
        """``name.crt`` and ``name.key`` for a client identity."""
        crt, key = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        self._write(crt, _name(common, organization), _key(key))
        return crt, key

    def server(self, name: str, common: str, dns: list[str], ips: list[str]
               ) -> tuple[Path, Path]:
        crt, key = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        self._write(crt, _name(common), _key(key), sans=sans, server=True)
        return crt, key

    def service_account_keys(self) -> tuple[Path, Path]:
        private, public = self.directory / "sa.key", self.directory / "sa.pub"
        key = _key(private)
        public.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        return private, public

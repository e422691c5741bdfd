"""Certificates and kubeconfigs for the test cluster: one CA, a cert per component.

Why: the apiserver runs with real TLS, RBAC and the Node authorizer, so every component
needs an identity the way kubeadm would issue it. EC P-256 keys keep generation instant.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=3650)


@dataclass(frozen=True)
class Identity:
    """Who a client certificate says it is: CN is the user, O the groups."""

    file: str
    common_name: str
    organization: str | None = None


CLIENTS = (
    Identity("admin", "kubernetes-admin", "system:masters"),
    Identity("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"),
    Identity("controller-manager", "system:kube-controller-manager"),
    Identity("scheduler", "system:kube-scheduler"),
    Identity("kube-proxy", "system:kube-proxy"),
)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
    )


class CertificateAuthority:
    def __init__(self, pki: Path) -> None:
        self.pki = pki
        self.cert_path = pki / "ca.crt"
        key_path = pki / "ca.key"
        if self.cert_path.exists():
            self.key = serialization.load_pem_private_key(key_path.read_bytes(), None)
            self.cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            return
        pki.mkdir(parents=True, exist_ok=True)
        self.key = _key()
        name = _name("levrt-test-ca")
        self.cert = (
            _builder(name, name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ), critical=True)
            .sign(self.key, hashes.SHA256())  # type: ignore[arg-type]
        )
        _write_key(key_path, self.key)  # type: ignore[arg-type]
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, file: str, cn: str, org: str | None = None, *, server_names: list[str] | None = None) -> None:
        """Write ``<file>.crt``/``<file>.key``; with ``server_names`` it is a serving cert."""
        key = _key()
        usage = [ExtendedKeyUsageOID.SERVER_AUTH] if server_names is not None else [ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = _builder(_name(cn, org), self.cert.subject, key.public_key()).add_extension(
            x509.ExtendedKeyUsage(usage), critical=False
        )
        if server_names is not None:
            alt: list[x509.GeneralName] = []
            for n in server_names:
                try:
                    alt.append(x509.IPAddress(ipaddress.ip_address(n)))
                except ValueError:
                    alt.append(x509.DNSName(n))
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())  # type: ignore[arg-type]
        _write_key(self.pki / f"{file}.key", key)
        (self.pki / f"{file}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def service_account_keys(pki: Path) -> None:
    key = _key()
    _write_key(pki / "sa.key", key)
    (pki / "sa.pub").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def kubeconfig(path: Path, *, server: str, ca: Path, cert: Path, key: Path, user: str) -> None:
    b64 = lambda p: base64.b64encode(p.read_bytes()).decode()  # noqa: E731
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: levrt-test\n  cluster:\n    server: {server}\n"
        f"    certificate-authority-data: {b64(ca)}\n"
        f"users:\n- name: {user}\n  user:\n    client-certificate-data: {b64(cert)}\n"
        f"    client-key-data: {b64(key)}\n"
        f"contexts:\n- name: levrt-test\n  context:\n    cluster: levrt-test\n    user: {user}\n"
        "current-context: levrt-test\n"
    )
    path.chmod(0o600)

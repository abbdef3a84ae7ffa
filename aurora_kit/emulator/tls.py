"""The emulator's certificate authority: a CA the harness generates, and a server certificate for the RDS hostnames
the emulator hands out, so ``sslmode=verify-full`` with ``aws.ca_bundle`` verifies the chain *and* the hostname, as
it does against Aurora (whose CA is the RDS global bundle).

Aurora's server certificate names the instance, cluster and reader endpoints of its account and Region; the
emulator's names them by wildcard (``*.<id>.<region>.rds.amazonaws.com``, ``*.cluster-<id>...``,
``*.cluster-ro-<id>...``, and the proxies' ``*.proxy-<id>...``, ``*.endpoint.proxy-<id>...``), which libpq matches
exactly like a listed name (one label, left-most). (RDS Proxy presents an ACM certificate that clients check against
their system trust store; the emulator's comes from its own CA, which ``aws.ca_bundle`` names.)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    """Where the CA bundle (give it to clients: ``aws.ca_bundle``) and the server's key pair are."""

    ca_bundle: Path
    server_cert: Path
    server_key: Path


def _name(common: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aurora_kit emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def rds_hostnames(region: str, host_id: str) -> list[str]:
    """The wildcard names every endpoint of this account and Region matches (instance, cluster, reader, a proxy's
    default endpoint and its other endpoints)."""
    suffix = f"{host_id}.{region}.rds.amazonaws.com"
    return [f"*.{suffix}", f"*.cluster-{suffix}", f"*.cluster-ro-{suffix}", f"*.proxy-{suffix}",
            f"*.endpoint.proxy-{suffix}"]  # fmt: skip


def generate(directory: Path, *, region: str, host_id: str, days: int = 30) -> TlsFiles:
    """A fresh CA and a server certificate for :func:`rds_hostnames` (and 127.0.0.1), written under ``directory``:
    ``rds-ca.pem`` (public), ``server.pem`` and ``server.key`` (0600)."""
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"aurora_kit emulator RDS CA {region}")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = rds_hostnames(region, host_id)
    server = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(
            x509.SubjectAlternativeName(
                [*(x509.DNSName(n) for n in names), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "rds-ca.pem", directory / "server.pem", directory / "server.key")
    _write(files.ca_bundle, ca.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(files.server_cert, server.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(
        files.server_key,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        0o600,
    )
    return files

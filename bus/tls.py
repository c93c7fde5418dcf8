"""A private CA and certificates for NATS TLS, generated on first start and reused after.

The CA lives next to the server certificate so a restart keeps the same trust root: clients
that pinned ``ca.pem`` keep working, and only the server certificate is reissued when the
requested hostnames change. Keys are never world-readable, not even between create and chmod.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bus.files import write_atomic

CA_NAME = "symphainy NATS CA"
CA_DAYS = 3650
# 825 days is the longest lifetime Apple's TLS clients still accept for a server certificate.
SERVER_DAYS = 825


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for one TLS identity: the CA that signs, this identity's certificate and key."""

    ca: Path
    cert: Path
    key: Path


def ensure_tls(directory: Path, hostnames: Sequence[str]) -> TlsFiles:
    """A CA (ca.pem, ca-key.pem) and a server certificate (server.pem, server-key.pem) for
    ``hostnames`` in ``directory``; reused if already there. Returns the server's TlsFiles."""
    if not hostnames:
        raise ValueError("a server certificate needs at least one hostname")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)  # mkdir's mode is ignored for an existing directory and umasked
    ca_pem, ca_key_pem = directory / "ca.pem", directory / "ca-key.pem"
    files = TlsFiles(ca=ca_pem, cert=directory / "server.pem", key=directory / "server-key.pem")
    if ca_pem.exists() and ca_key_pem.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_pem.read_bytes())
        ca_key = _load_key(ca_key_pem)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _new_ca(ca_key)
        write_atomic(ca_key_pem, _pem(ca_key), 0o600)
        write_atomic(ca_pem, _pem(ca_cert), 0o644)
    if not _still_good(files, ca_cert, hostnames):
        key = ec.generate_private_key(ec.SECP256R1())
        write_atomic(files.key, _pem(key), 0o600)
        write_atomic(files.cert, _pem(_new_server(key, ca_cert, ca_key, hostnames)), 0o644)
    return files


def client_ssl_context(
    ca: Path, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """A client context that trusts only ``ca``, presents cert/key if given, checks hostnames."""
    if key is not None and cert is None:
        raise ValueError("a client key needs its certificate")
    # With a cafile, create_default_context loads no system roots: only our CA is trusted.
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        context.load_cert_chain(str(cert), None if key is None else str(key))
    return context


def _still_good(files: TlsFiles, ca_cert: x509.Certificate, hostnames: Sequence[str]) -> bool:
    """Whether the server certificate on disk is signed by this CA and names every host."""
    if not (files.cert.exists() and files.key.exists()):
        return False
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    try:
        # Fails when the CA was regenerated (its key had gone): this cert is then orphaned.
        cert.verify_directly_issued_by(ca_cert)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return all(_general_name(host) in san for host in hostnames)


def _general_name(host: str) -> x509.DNSName | x509.IPAddress:
    """An IPAddress entry for anything that parses as an IP, else a DNSName."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _new_ca(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    return (
        _builder(name, name, key.public_key(), CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _new_server(
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    hostnames: Sequence[str],
) -> x509.Certificate:
    """A leaf for ``hostnames``, good for server and client auth (NATS cluster routes are both)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        _builder(subject, ca_cert.subject, key.public_key(), SERVER_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([_general_name(h) for h in hostnames]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    """Subject, issuer, key, a random serial and a validity window starting a minute ago."""
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)  # clock skew
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    """A CA signs certificates and CRLs; a leaf signs handshakes (ECDSA) only."""
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The EC private key in ``path``; anything else was not written by us."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} does not hold an EC private key")
    return key


def _pem(item: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    """PEM bytes; keys unencrypted, since nats-server cannot be given a passphrase."""
    if isinstance(item, x509.Certificate):
        return item.public_bytes(serialization.Encoding.PEM)
    no_password = serialization.NoEncryption()
    return item.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, no_password
    )

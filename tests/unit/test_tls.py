"""The private CA: file modes, reuse across restarts, and real TLS handshakes on loopback."""

from __future__ import annotations

import asyncio
import ssl
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography import x509

from bus.tls import TlsFiles, client_ssl_context, ensure_tls

HOSTS = ["localhost", "127.0.0.1"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def server_context(files: TlsFiles, client_ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    if client_ca is not None:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        writer.write(await reader.read(100))
        await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


@asynccontextmanager
async def tls_server(context: ssl.SSLContext) -> AsyncIterator[int]:
    """An echo server on a free loopback port, closed with every connection on exit."""
    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def roundtrip(port: int, context: ssl.SSLContext, hostname: str = "localhost") -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=hostname
    )
    try:
        writer.write(b"ping")
        await writer.drain()
        return await reader.read(100)
    finally:
        writer.close()
        await writer.wait_closed()


def test_files_exist_with_private_modes(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    files = ensure_tls(directory, HOSTS)

    assert files == TlsFiles(
        directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    )
    assert mode(directory) == 0o700
    for key in (directory / "ca-key.pem", files.key):
        assert mode(key) == 0o600
    for cert in (files.ca, files.cert):
        assert mode(cert) == 0o644
    assert not list(directory.glob(".*.tmp"))


def test_an_existing_directory_is_made_private(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    ensure_tls(directory, HOSTS)
    assert mode(directory) == 0o700


def test_a_second_call_reuses_everything(tmp_path: Path) -> None:
    first = ensure_tls(tmp_path, HOSTS)
    names = ["ca.pem", "ca-key.pem", "server.pem", "server-key.pem"]
    before = {name: (tmp_path / name).read_bytes() for name in names}

    assert ensure_tls(tmp_path, HOSTS) == first
    assert {name: (tmp_path / name).read_bytes() for name in names} == before


def test_a_new_hostname_reissues_the_server_cert_from_the_same_ca(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path, HOSTS)
    ca, ca_key, cert = files.ca.read_bytes(), (tmp_path / "ca-key.pem").read_bytes(), files.cert
    old = cert.read_bytes()

    ensure_tls(tmp_path, [*HOSTS, "nats.internal"])

    assert files.ca.read_bytes() == ca
    assert (tmp_path / "ca-key.pem").read_bytes() == ca_key
    assert cert.read_bytes() != old
    issued = x509.load_pem_x509_certificate(cert.read_bytes())
    issued.verify_directly_issued_by(x509.load_pem_x509_certificate(ca))
    san = issued.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "nats.internal"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_a_lost_ca_key_regenerates_ca_and_server_cert(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path, HOSTS)
    (tmp_path / "ca-key.pem").unlink()

    ensure_tls(tmp_path, HOSTS)

    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    x509.load_pem_x509_certificate(files.cert.read_bytes()).verify_directly_issued_by(ca)


def test_no_hostnames_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hostname"):
        ensure_tls(tmp_path, [])


async def test_handshake_with_our_ca_succeeds(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path, HOSTS)
    async with tls_server(server_context(files)) as port:
        assert await roundtrip(port, client_ssl_context(files.ca)) == b"ping"
        assert await roundtrip(port, client_ssl_context(files.ca), "127.0.0.1") == b"ping"


async def test_handshake_with_another_ca_fails(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path / "ours", HOSTS)
    stranger = ensure_tls(tmp_path / "theirs", HOSTS)
    async with tls_server(server_context(files)) as port:
        with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
            await roundtrip(port, client_ssl_context(stranger.ca))


async def test_handshake_with_a_name_not_in_the_cert_fails(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path, HOSTS)
    async with tls_server(server_context(files)) as port:
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            await roundtrip(port, client_ssl_context(files.ca), "nats.example")


async def test_client_certificate_is_presented_for_mutual_tls(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path, HOSTS)
    async with tls_server(server_context(files, client_ca=files.ca)) as port:
        client = client_ssl_context(files.ca, files.cert, files.key)
        assert await roundtrip(port, client) == b"ping"


def test_a_key_without_its_certificate_is_refused(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path, HOSTS)
    with pytest.raises(ValueError, match="certificate"):
        client_ssl_context(files.ca, key=files.key)

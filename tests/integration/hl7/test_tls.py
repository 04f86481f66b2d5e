"""The HL7 v2 listener with TLS: a second listener process of the test instance on its own
port, with a certificate made here (the `cryptography` package), and the library's MLLP client
over TLS. A client speaking plain TCP to it gets no ACK."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import hl7
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hl7.mllp import open_hl7_connection

from shared.settings import Settings
from tests.integration.conftest import NewSource
from tests.integration.hl7.listeners import own_listener
from tests.integration.hl7.messages import adt


def make_certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "mllp.crt", directory / "mllp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
async def tls_listener(
    infra: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Settings, Path]]:
    directory = tmp_path_factory.mktemp("mllp-tls")
    cert, key = make_certificate(directory)
    async with own_listener(
        infra,
        "tls",
        directory,
        integration_mllp_tls_cert_path=cert,
        integration_mllp_tls_key_path=key,
    ) as s:
        yield s, cert


class TestTls:
    async def test_a_message_over_tls_is_acknowledged(
        self, tls_listener: tuple[Settings, Path], new_source: NewSource
    ) -> None:
        s, cert = tls_listener
        source = await new_source()
        context = ssl.create_default_context(cafile=str(cert))
        reader, writer = await open_hl7_connection(
            "127.0.0.1",
            s.integration_mllp_listen_port,
            ssl=context,
            server_hostname="localhost",
            encoding="utf-8",
        )
        try:
            m = adt("A04", facility=source.sending_facility or "", control_id="TLS1", visit="VT")
            writer.writemessage(hl7.parse(m))
            await writer.drain()
            ack = await asyncio.wait_for(reader.readmessage(), 30)
        finally:
            writer.close()
        assert (str(ack["MSA.F1"]), str(ack["MSA.F2"])) == ("AA", "TLS1")

    async def test_plain_tcp_to_the_tls_port_gets_no_ack(
        self, tls_listener: tuple[Settings, Path], new_source: NewSource
    ) -> None:
        s, _ = tls_listener
        source = await new_source()
        reader, writer = await open_hl7_connection(
            "127.0.0.1", s.integration_mllp_listen_port, encoding="utf-8"
        )
        try:
            m = adt("A04", facility=source.sending_facility or "", control_id="PLAIN", visit="VP")
            writer.writemessage(hl7.parse(m))
            await writer.drain()
            with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
                await asyncio.wait_for(reader.readmessage(), 30)
        finally:
            writer.close()

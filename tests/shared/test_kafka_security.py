"""shared/kafka_security.client_options: the one place a Kafka client's credentials come from."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.auth import write_private_file
from shared.kafka_security import KafkaCredentialsMissing, client_options
from shared.settings import Settings


def _ca_pem(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cluster-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


class TestClientOptions:
    def test_plaintext_carries_no_credentials(self, tmp_path):
        s = Settings(home=tmp_path, kafka_security_protocol="PLAINTEXT", kafka_port=7001)
        assert client_options(s) == {
            "bootstrap_servers": "127.0.0.1:7001",
            "security_protocol": "PLAINTEXT",
        }

    def test_locally_a_process_reads_its_own_principals_password_under_home(self, tmp_path):
        write_private_file(tmp_path / "kafka" / "users" / "referrals.password", b"s3cret\n")
        s = Settings(home=tmp_path, kafka_sasl_username="referrals")
        opts = client_options(s)
        assert opts["security_protocol"] == "SASL_PLAINTEXT"
        assert opts["sasl_mechanism"] == "SCRAM-SHA-512"
        assert (opts["sasl_plain_username"], opts["sasl_plain_password"]) == ("referrals", "s3cret")
        assert "ssl_context" not in opts

    def test_the_default_principal_is_the_admin(self, tmp_path):
        write_private_file(tmp_path / "kafka" / "users" / "waymark-admin.password", b"a\n")
        assert client_options(Settings(home=tmp_path))["sasl_plain_username"] == "waymark-admin"

    def test_a_mounted_secret_and_the_cluster_ca_make_sasl_ssl(self, tmp_path):
        secret = tmp_path / "secret" / "password"
        write_private_file(secret, b"from-strimzi")
        s = Settings(
            home=tmp_path,
            kafka_bootstrap="waymark-kafka-bootstrap:9093",
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_username="journeys",
            kafka_sasl_password_path=secret,
            kafka_ssl_ca_path=_ca_pem(tmp_path / "ca.crt"),
        )
        opts = client_options(s)
        assert opts["bootstrap_servers"] == "waymark-kafka-bootstrap:9093"
        assert opts["sasl_plain_password"] == "from-strimzi"
        context = opts["ssl_context"]
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
        assert any(
            c["subject"] == ((("commonName", "cluster-ca"),),) for c in context.get_ca_certs()
        )

    def test_a_missing_password_file_is_a_clear_error_naming_it(self, tmp_path):
        s = Settings(home=tmp_path, kafka_sasl_username="care-plans")
        with pytest.raises(KafkaCredentialsMissing, match="care-plans.password"):
            client_options(s)

    def test_an_empty_password_file_is_refused(self, tmp_path):
        write_private_file(tmp_path / "kafka" / "users" / "waymark-admin.password", b"\n")
        with pytest.raises(KafkaCredentialsMissing, match="empty"):
            client_options(Settings(home=tmp_path))

    @pytest.mark.parametrize("bad", ["", "a b", "x" * 65, "user;drop"])
    def test_a_username_that_is_not_a_plain_name_is_refused(self, tmp_path, bad):
        with pytest.raises(ValueError):
            Settings(home=tmp_path, kafka_sasl_username=bad)

    def test_an_unknown_protocol_is_refused(self, tmp_path):
        with pytest.raises(ValueError):
            Settings(home=tmp_path, kafka_security_protocol="SSL")  # type: ignore[arg-type]

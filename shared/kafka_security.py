"""How every Kafka client in Waymark connects: the one place that turns Settings into aiokafka's
connection and security options. Every AIOKafkaProducer, AIOKafkaConsumer and
AIOKafkaAdminClient is built with `**client_options(settings)`, so a process connects as its
own principal (WAYMARK_KAFKA_SASL_USERNAME, shared/kafka_principals.py) and nothing can
connect without credentials by accident.
"""

from __future__ import annotations

import ssl
from typing import Any

from shared.settings import Settings


class KafkaCredentialsMissing(RuntimeError):
    """The process's Kafka password file cannot be read."""


def sasl_password(settings: Settings) -> str:
    path = settings.kafka_password_file()
    try:
        password = path.read_text().strip()
    except OSError as exc:
        raise KafkaCredentialsMissing(
            f"no Kafka password for principal {settings.kafka_sasl_username}: cannot read "
            f"{path} ({exc.strerror}); `waymark up` makes local ones, elsewhere mount the "
            "principal's secret there (WAYMARK_KAFKA_SASL_PASSWORD_PATH)"
        ) from None
    if not password:
        raise KafkaCredentialsMissing(f"the Kafka password file {path} is empty")
    return password


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """Verify the broker's certificate and host name against the configured CA (or the
    system's), TLS 1.2 at least."""
    cafile = str(settings.kafka_ssl_ca_path) if settings.kafka_ssl_ca_path else None
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def client_options(settings: Settings) -> dict[str, Any]:
    """bootstrap_servers plus the security options for an aiokafka client of this process."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": protocol,
    }
    if protocol == "PLAINTEXT":
        return options
    options.update(
        sasl_mechanism=settings.kafka_sasl_mechanism,
        sasl_plain_username=settings.kafka_sasl_username,
        sasl_plain_password=sasl_password(settings),
    )
    if protocol == "SASL_SSL":
        options["ssl_context"] = ssl_context(settings)
    return options
